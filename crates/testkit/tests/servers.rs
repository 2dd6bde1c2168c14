//! The loaders and helpers against the real test servers (`cargo xtask servers up`): counts are
//! checked over IMAP, on fresh Dovecot users and on fresh mailboxes of a Cyrus pool user.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mailsync_testkit::accounts::BENCH;
use mailsync_testkit::{
    Account, Generator, ImapClient, Profile, Servers, generate, imap_append_bulk, lmtp_deliver,
    maildir_populate, unique_name, wait_for_sink_message,
};

fn servers() -> Servers {
    Servers::load().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn bulk_append_1000_into_a_fresh_dovecot_user() {
    let s = servers();
    let user = s.fresh_dovecot_user("tk_append");
    let seed = 1000;
    let t = Instant::now();
    let n = imap_append_bulk(
        s.dovecot_host(),
        s.dovecot_imap_port(),
        &user.user,
        &user.password,
        "INBOX",
        (0..1000).map(|i| generate(seed, i)),
        500,
    )
    .unwrap();
    eprintln!("dovecot: 1000 messages appended in {:?}", t.elapsed());
    assert_eq!(n, 1000);
    let mut c = ImapClient::login(
        s.dovecot_host(),
        s.dovecot_imap_port(),
        &user.user,
        &user.password,
    )
    .unwrap();
    assert_eq!(c.message_count("INBOX").unwrap(), 1000);
    // the bytes arrive unchanged: fetch one back and compare
    c.select("INBOX").unwrap();
    let r = c.command("UID FETCH 7 (BODY.PEEK[])").unwrap();
    let fetched = r
        .untagged
        .iter()
        .find(|l| l.starts_with(b"* "))
        .expect("FETCH response");
    let original = generate(seed, 6);
    assert!(
        fetched
            .windows(original.len())
            .any(|w| w == original.as_slice()),
        "message 6 changed on the way"
    );
    c.logout();
    // doveadm sees the same count ("another client")
    let status = s
        .doveadm(&["mailbox", "status", "-u", &user.user, "messages", "INBOX"])
        .unwrap();
    assert!(status.trim().ends_with("messages=1000"), "{status}");
}

#[test]
fn bulk_append_creates_a_non_ascii_mailbox() {
    let s = servers();
    let user = s.fresh_dovecot_user("tk_box");
    let n = imap_append_bulk(
        s.dovecot_host(),
        s.dovecot_imap_port(),
        &user.user,
        &user.password,
        "Projekte/Entwürfe",
        Generator::with_profile(Profile::small(), 3).messages(0..25),
        10,
    )
    .unwrap();
    assert_eq!(n, 25);
    let mut c = ImapClient::login(
        s.dovecot_host(),
        s.dovecot_imap_port(),
        &user.user,
        &user.password,
    )
    .unwrap();
    assert_eq!(c.message_count("Projekte/Entwürfe").unwrap(), 25);
    c.logout();
}

#[test]
fn bulk_append_1000_into_a_cyrus_pool_user() {
    let s = servers();
    let account = Account::cyrus_pool(BENCH, 3);
    let mailbox = unique_name("tk");
    // unique bytes per run: Cyrus dedupes identical messages into one Email
    let seed = std::process::id() as u64 * 1_000_003 + 17;
    let t = Instant::now();
    let n = imap_append_bulk(
        s.cyrus_host(),
        s.cyrus_imap_port(),
        &account.user,
        &account.password,
        &mailbox,
        (0..1000).map(|i| generate(seed, i)),
        500,
    )
    .unwrap();
    eprintln!("cyrus: 1000 messages appended in {:?}", t.elapsed());
    assert_eq!(n, 1000);
    let mut c = ImapClient::login(
        s.cyrus_host(),
        s.cyrus_imap_port(),
        &account.user,
        &account.password,
    )
    .unwrap();
    assert_eq!(c.message_count(&mailbox).unwrap(), 1000);
    c.delete_mailbox(&mailbox).unwrap();
    c.logout();
}

#[test]
fn lmtp_delivers_to_cyrus_inbox() {
    let s = servers();
    let account = Account::cyrus_pool(BENCH, 2);
    let mut c = ImapClient::login(
        s.cyrus_host(),
        s.cyrus_imap_port(),
        &account.user,
        &account.password,
    )
    .unwrap();
    let before = c.message_count("INBOX").unwrap();
    let seed = std::process::id() as u64 * 7_919 + 3;
    let n = lmtp_deliver(
        s.cyrus_lmtp(),
        &account.user,
        (0..20).map(|i| generate(seed, i)),
    )
    .unwrap();
    assert_eq!(n, 20);
    // other tests may deliver to this user concurrently: assert on the delta, at least ours
    let after = c.message_count("INBOX").unwrap();
    assert!(after >= before + 20, "INBOX went from {before} to {after}");
    c.logout();
}

#[test]
fn lmtp_errors_name_the_command_and_reply() {
    let s = servers();
    // lmtpd autocreates unknown users, but refuses an invalid mailbox name with 451
    let err = lmtp_deliver(s.cyrus_lmtp(), "no/such/user", [generate(1, 1)]);
    let text = err
        .expect_err("an invalid mailbox name must fail")
        .to_string();
    assert!(
        text.contains("RCPT TO:<no/such/user>") && text.contains("451"),
        "{text}"
    );
}

#[test]
fn imap_errors_name_the_server_answer() {
    let s = servers();
    let err = ImapClient::login(s.dovecot_host(), s.dovecot_imap_port(), "alice", "wrong")
        .expect_err("wrong password must fail");
    let text = err.to_string();
    assert!(
        text.contains("LOGIN alice") && text.contains("NO"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "password leaked into {text}");
}

#[test]
fn maildir_populate_then_index() {
    let s = servers();
    let user = s.fresh_dovecot_user("tk_maildir");
    let t = Instant::now();
    let n = maildir_populate(
        s.dovecot_conf(),
        s.dovecot_mail_root(),
        &user.user,
        "Archive",
        Generator::new(77).messages(0..300),
    )
    .unwrap();
    eprintln!("maildir: 300 messages in {:?}", t.elapsed());
    assert_eq!(n, 300);
    let mut c = ImapClient::login(
        s.dovecot_host(),
        s.dovecot_imap_port(),
        &user.user,
        &user.password,
    )
    .unwrap();
    assert_eq!(c.message_count("Archive").unwrap(), 300);
    // UIDs follow the iteration order
    c.select("Archive").unwrap();
    let r = c
        .command("UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        .unwrap();
    let all: Vec<u8> = r.untagged.concat();
    let id = Generator::new(77)
        .expected(0)
        .message_id
        .expect("index 0 has a Message-ID");
    assert!(String::from_utf8_lossy(&all).contains(&id));
    c.logout();
}

#[test]
fn sink_keeps_message_and_envelope() {
    let s = servers();
    let id = format!("{}@testkit.test", unique_name("sink"));
    let body = format!(
        "From: a@example.test\r\nTo: b@example.test\r\nSubject: sink\r\nMessage-ID: <{id}>\r\n\r\n.leading dot\r\nbye\r\n"
    );
    let stream = TcpStream::connect((s.smtp_host(), s.smtp_port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut reply = |w: &mut TcpStream, send: &str, code: &str| {
        if !send.is_empty() {
            w.write_all(send.as_bytes()).unwrap();
        }
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "sent {send:?}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    reply(&mut w, "", "220");
    reply(&mut w, "EHLO testkit\r\n", "250");
    reply(&mut w, "MAIL FROM:<a@example.test>\r\n", "250");
    reply(&mut w, "RCPT TO:<b@example.test>\r\n", "250");
    reply(&mut w, "RCPT TO:<c@example.test>\r\n", "250");
    reply(&mut w, "DATA\r\n", "354");
    let stuffed = body.replace("\r\n.", "\r\n..");
    reply(&mut w, &format!("{stuffed}.\r\n"), "250");
    reply(&mut w, "QUIT\r\n", "221");
    let m = wait_for_sink_message(s.smtp_sink_dir(), Duration::from_secs(10), |m| {
        m.message_id().as_deref() == Some(id.as_str())
    })
    .unwrap();
    assert_eq!(m.raw, body.as_bytes());
    assert_eq!(m.mail_from, "a@example.test");
    assert_eq!(m.rcpt_tos, ["b@example.test", "c@example.test"]);
}

#[test]
fn connection_details_are_consistent() {
    let s = servers();
    assert!(s.jmap_session_url().starts_with("http://"));
    assert!(
        s.jmap_session_url()
            .contains(&s.cyrus_http_port().to_string())
    );
    assert!(
        s.tls_ca_pem()
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE-----")
    );
    assert!(s.dovecot_conf().is_file());
    assert!(s.pg_url().starts_with("postgres://"));
    // every port answers
    for port in [
        s.dovecot_imap_port(),
        s.dovecot_imaps_port(),
        s.cyrus_imap_port(),
        s.cyrus_http_port(),
        s.smtp_port(),
    ] {
        TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("port {port}: {e}"));
    }
}
