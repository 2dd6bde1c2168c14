//! `attachment list|save` and `account edit` end to end on both protocols: Dovecot (IMAP,
//! `BODY.PEEK[part]` decoded from base64 and quoted-printable) and Cyrus (JMAP blob download,
//! pool `at1`..). Saved files are compared byte for byte with what the test generated; a 40 MB
//! attachment is saved while the CLI's peak RSS (VmHWM) is watched; bad input changes nothing.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{Env, Out, R, deliver, unique};
use mailsync_testkit::Servers;
use mailsync_testkit::accounts::ATTACH;
use serde_json::Value;

/// The large attachment: big enough that holding it in memory would show in RSS.
const LARGE: usize = 40 << 20;

/// Deterministic bytes that do not compress to a pattern (every byte value occurs).
fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Quoted-printable for a text with `=`, long lines and trailing blanks (soft line breaks).
fn qp(text: &str) -> String {
    let mut out = String::new();
    for line in text.split("\r\n") {
        let mut cur = String::new();
        for c in line.chars() {
            let enc = match c {
                '=' => "=3D".to_owned(),
                c if c.is_ascii() && !c.is_ascii_control() => c.to_string(),
                c => c.to_string().bytes().map(|b| format!("={b:02X}")).collect(),
            };
            if cur.len() + enc.len() > 75 {
                out.push_str(&cur);
                out.push_str("=\r\n");
                cur.clear();
            }
            cur.push_str(&enc);
        }
        if cur.ends_with(' ') {
            cur.pop();
            cur.push_str("=20");
        }
        out.push_str(&cur);
        out.push_str("\r\n");
    }
    out
}

/// A message with a text body, a base64 binary attachment (`bin`) and a quoted-printable
/// text attachment (`text`); returns the message and its subject.
fn message_with(bin: &[u8], text: &str) -> (Vec<u8>, String) {
    let subject = unique("att");
    let mid = format!("{}@att.test", unique("m"));
    let b64 = base64::engine::general_purpose::STANDARD.encode(bin);
    let mut m = format!(
        "From: Sender <sender@example.test>\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\
         Date: {}\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nSee the attachments.\r\n--b1\r\n\
         Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes();
    m.reserve(b64.len() + b64.len() / 38 + 1024);
    for line in b64.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(
        format!(
            "--b1\r\nContent-Type: text/plain; charset=utf-8; name=\"notes.txt\"\r\n\
             Content-Disposition: attachment; filename=\"notes.txt\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{}--b1--\r\n",
            qp(text)
        )
        .as_bytes(),
    );
    (m, subject)
}

/// A text whose quoted-printable form has escapes, soft breaks and a kept trailing blank.
fn notes() -> String {
    format!(
        "x=1 and café, naïve\r\n{}\r\ntrailing blank \r\nend",
        "long line ".repeat(20)
    )
}

/// The attachment list of an email, as JSON objects.
fn list(env: &Env, id: i64) -> Vec<Value> {
    env.run(&["attachment", "list", &id.to_string(), "--json"])
        .ok()
        .json_lines()
}

fn part_named(atts: &[Value], name: &str) -> String {
    atts.iter()
        .find(|a| a["file_name"] == name)
        .and_then(|a| a["part"].as_str())
        .unwrap_or_else(|| panic!("no {name} in {atts:#?}"))
        .to_owned()
}

/// Runs the binary itself, polling its /proc status for the peak resident set (VmHWM, which
/// only grows, so the last reading before exit is the peak up to then); returns the output
/// and the peak in KiB.
fn run_measured(env: &Env, args: &[&str]) -> (Out, u64) {
    let mut child = env
        .daemon(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mailsync");
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let start = std::time::Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{args:?} hangs");
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().expect("output");
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    (out, peak)
}

/// Saves the small attachments, then the large one with RSS watched, and checks every file
/// byte for byte; then the bad inputs. Shared by both protocols.
fn save_and_check(env: &Env, id: i64, big: &[u8], text: &str) -> R {
    let atts = list(env, id);
    assert_eq!(atts.len(), 2, "{atts:#?}");
    let bin_part = part_named(&atts, "data.bin");
    let txt_part = part_named(&atts, "notes.txt");
    let bin_row = atts.iter().find(|a| a["file_name"] == "data.bin");
    assert_eq!(
        bin_row.map(|a| a["mime_type"].clone()),
        Some(Value::from("application/octet-stream"))
    );
    // The plain listing names the part and the file.
    let plain = env.run(&["attachment", "list", &id.to_string()]).ok();
    assert!(plain.stdout.contains("data.bin") && plain.stdout.contains("notes.txt"));

    // Quoted-printable text, to the default file name in the current directory.
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd)?;
    env.run_with(&["attachment", "save", &id.to_string(), &txt_part], |c| {
        c.current_dir(&cwd);
    })
    .ok();
    assert_eq!(std::fs::read(cwd.join("notes.txt"))?, text.as_bytes());

    // A small save first, as the baseline of the process's own footprint.
    let small_out = env.path("notes-again.txt");
    let (o, small_peak) = run_measured(
        env,
        &[
            "attachment",
            "save",
            &id.to_string(),
            &txt_part,
            "-o",
            small_out.to_str().unwrap_or_default(),
        ],
    );
    assert_eq!(o.code, 0, "{o:#?}");
    assert!(o.stdout.contains("cached"), "second save is cached: {o:#?}");

    // The 40 MB part, downloaded and decoded as it streams.
    let big_out = env.path("data.bin");
    let t = std::time::Instant::now();
    let (o, big_peak) = run_measured(
        env,
        &[
            "attachment",
            "save",
            &id.to_string(),
            &bin_part,
            "-o",
            big_out.to_str().unwrap_or_default(),
        ],
    );
    assert_eq!(o.code, 0, "{o:#?}");
    let took = t.elapsed();
    let saved = std::fs::read(&big_out)?;
    assert_eq!(saved.len(), big.len());
    assert!(saved == big, "the saved file differs from the attachment");
    eprintln!(
        "{} MB saved in {took:?}; peak RSS {} KiB (small save: {} KiB)",
        big.len() >> 20,
        big_peak,
        small_peak
    );
    // Holding the part (or its encoded form) would add 40-54 MB.
    assert!(
        big_peak < small_peak + 16 * 1024,
        "peak RSS {big_peak} KiB vs {small_peak} KiB for a small save"
    );

    // Bad input: one line, the right code, nothing written.
    let missing_out = env.path("nothing.bin");
    let mo = missing_out.to_str().unwrap_or_default();
    env.run(&["attachment", "save", &id.to_string(), "9.9", "-o", mo])
        .fails(3);
    env.run(&["attachment", "save", "999999", &bin_part, "-o", mo])
        .fails(3);
    env.run(&["attachment", "list", "999999"]).fails(3);
    assert!(!missing_out.exists());
    let unwritable = env.path("no/such/dir/out.bin");
    let o = env
        .run(&[
            "attachment",
            "save",
            &id.to_string(),
            &bin_part,
            "-o",
            unwritable.to_str().unwrap_or_default(),
        ])
        .fails(1);
    assert!(o.stderr.contains("out.bin"), "{o:#?}");
    // No partial file left beside the saved one.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

fn email_id(env: &Env, subject: &str) -> i64 {
    env.email_by_subject(subject)
        .and_then(|e| e["id"].as_i64())
        .unwrap_or_else(|| panic!("email {subject:?} synced"))
}

#[test]
fn imap_attachments_saved_byte_identical_with_bounded_memory() -> R {
    let servers = Servers::load()?;
    let env = Env::new();
    let user = servers.fresh_dovecot_user("i15att").user;
    let big = payload(LARGE, 15);
    let text = notes();
    let (msg, subject) = message_with(&big, &text);
    mailsync_testkit::imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
        "INBOX",
        std::iter::once(&msg),
        1,
    )?;
    drop(msg);
    let imap = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    add_dovecot(&env, &imap, &user);
    env.run(&["sync", "--once"]).ok();
    let id = email_id(&env, &subject);
    // The IMAP part numbers from BODYSTRUCTURE.
    let atts = list(&env, id);
    assert_eq!(part_named(&atts, "data.bin"), "2");
    assert_eq!(part_named(&atts, "notes.txt"), "3");
    save_and_check(&env, id, &big, &text)
}

#[test]
fn jmap_attachments_saved_byte_identical_with_bounded_memory() -> R {
    let servers = Servers::load()?;
    let user = ATTACH.user(1);
    clear_inbox(&servers, &user)?;
    let env = Env::new();
    let big = payload(LARGE, 16);
    let text = notes();
    let (msg, subject) = message_with(&big, &text);
    deliver(&user, vec![msg]);
    env.add_jmap("j", &user).ok();
    env.run(&["account", "edit", "j", "--bodies", "none"]).ok();
    env.run(&["sync", "--once"]).ok();
    let id = email_id(&env, &subject);
    let res = save_and_check(&env, id, &big, &text);
    clear_inbox(&servers, &user)?;
    res
}

/// Empties a Cyrus pool user's INBOX (the 40 MB messages must not pile up run after run).
fn clear_inbox(servers: &Servers, user: &str) -> R {
    let mut c = mailsync_testkit::ImapClient::login(
        servers.cyrus_host(),
        servers.cyrus_imap_port(),
        user,
        mailsync_testkit::CYRUS_POOL_PASSWORD,
    )?;
    if c.select("INBOX")? > 0 {
        c.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
        c.command("EXPUNGE")?;
    }
    Ok(())
}

/// Adds the Dovecot account `d` (its password from a command: the helpers' variable holds
/// the Cyrus pool's).
fn add_dovecot(env: &Env, imap: &str, user: &str) {
    let cmd = format!("printf %s {}", mailsync_testkit::DOVECOT_T_PASSWORD);
    env.run(&[
        "account",
        "add",
        "d",
        "--imap",
        imap,
        "--security",
        "plain",
        "--user",
        user,
        "--password-cmd",
        &cmd,
        "--bodies",
        "none",
    ])
    .ok();
}

/// The account rows as `account list --json` shows them, and the number of emails.
fn snapshot(env: &Env) -> (Vec<Value>, usize) {
    let accounts = env.run(&["account", "list", "--json"]).ok().json_lines();
    (accounts, env.emails().len())
}

#[test]
fn account_edit_keeps_data_and_a_failed_test_changes_nothing() -> R {
    let servers = Servers::load()?;
    // IMAP on Dovecot: the password comes from a command after the edit.
    let env = Env::new();
    let user = servers.fresh_dovecot_user("i15edit").user;
    let (msg, subject) = message_with(b"tiny", "t");
    mailsync_testkit::imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
        "INBOX",
        std::iter::once(&msg),
        1,
    )?;
    let imap = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    add_dovecot(&env, &imap, &user);
    env.run(&["sync", "--once"]).ok();
    let before = snapshot(&env);
    assert_eq!(before.1, 1);
    assert!(env.email_by_subject(&subject).is_some());

    // Rejected edits: wrong password, unreachable server, missing variable. Each one line,
    // its exit code, and the account and its emails exactly as before.
    env.run(&["account", "edit", "d", "--password-cmd", "printf %s wrong"])
        .fails(4);
    env.run(&[
        "account",
        "edit",
        "d",
        "--imap",
        "127.0.0.1:1",
        "--bodies",
        "all",
    ])
    .fails(5);
    env.run(&[
        "account",
        "edit",
        "d",
        "--password-env",
        "MAILSYNC_I15_UNSET_VAR",
    ])
    .fails(4);
    env.run(&["account", "edit", "d", "--jmap", "http://127.0.0.1:1/"])
        .fails(2);
    env.run(&["account", "edit", "nosuch", "--bodies", "all"])
        .fails(3);
    assert_eq!(snapshot(&env), before);

    // A good edit: password reference (now the variable) and body policy; the same account
    // (created_at), its email kept, and it syncs with the new settings.
    let o = env
        .run_with(
            &[
                "account",
                "edit",
                "d",
                "--password-env",
                "MAILSYNC_I15_PW",
                "--bodies",
                "all",
            ],
            |c| {
                c.env("MAILSYNC_I15_PW", mailsync_testkit::DOVECOT_T_PASSWORD);
            },
        )
        .ok();
    assert!(o.stdout.contains("updated"), "{o:#?}");
    let after = snapshot(&env);
    assert_eq!(after.1, 1, "emails kept");
    let (a0, a1) = (&before.0[0], &after.0[0]);
    assert_eq!(a0["created_at"], a1["created_at"]);
    assert_eq!(a1["bodies"], "all", "{a1:#?}");
    assert_eq!(a0["bodies"], "none");
    assert_eq!(a1["password"]["from"], "env");
    assert_eq!(a1["password"]["source"], "MAILSYNC_I15_PW");
    env.run_with(&["sync", "--once"], |c| {
        c.env("MAILSYNC_I15_PW", mailsync_testkit::DOVECOT_T_PASSWORD);
    })
    .ok();
    assert_eq!(env.emails().len(), 1);
    // The new policy is in force: the body was downloaded by that sync.
    let id = email_id(&env, &subject);
    let o = env.run(&["show", &id.to_string()]).ok();
    assert!(o.stdout.contains("See the attachments."), "{o:#?}");

    // JMAP on Cyrus: policy edit kept, wrong password refused with rows kept.
    let user = ATTACH.user(2);
    let jenv = Env::new();
    jenv.add_jmap("j", &user).ok();
    jenv.run(&["sync", "--once"]).ok();
    let jbefore = snapshot(&jenv);
    jenv.run(&["account", "edit", "j", "--password-cmd", "printf %s wrong"])
        .fails(4);
    jenv.run(&["account", "edit", "j", "--imap", "127.0.0.1:1"])
        .fails(2);
    assert_eq!(snapshot(&jenv), jbefore);
    jenv.run(&["account", "edit", "j", "--bodies", "none"]).ok();
    let jafter = snapshot(&jenv);
    assert_eq!(jafter.0[0]["bodies"], "none");
    assert_eq!(jafter.0[0]["created_at"], jbefore.0[0]["created_at"]);
    assert_eq!(jafter.1, jbefore.1);
    // The server given again (discovered and tested), with another policy.
    jenv.run(&[
        "account",
        "edit",
        "j",
        "--jmap",
        servers.jmap_session_url(),
        "--bodies",
        "all",
    ])
    .ok();
    let j2 = snapshot(&jenv);
    assert_eq!(j2.0[0]["bodies"], "all");
    assert_eq!(
        j2.0[0]["jmap_session_url"],
        jbefore.0[0]["jmap_session_url"]
    );
    // A session URL that does not answer: refused, unchanged.
    jenv.run(&["account", "edit", "j", "--jmap", "http://127.0.0.1:1/jmap"])
        .fails(5);
    assert_eq!(snapshot(&jenv), j2);
    Ok(())
}
