//! Access to the real test servers (users `jc1`..`jc10`, one per test) of `cargo xtask servers up` through `mailsync-testkit`,
//! plus "another client" actions (LMTP delivery, IMAP flag change and expunge, bulk
//! MULTIAPPEND) run on blocking threads, since testkit's clients are synchronous.

use std::future::Future;
use std::time::Duration;

use mailsync_jmap_client::{Client, Credentials};
use mailsync_testkit::{CYRUS_POOL_PASSWORD, ImapClient, SinkMessage};

/// Connection details; panics with instructions when the servers were never started.
pub struct Servers(pub mailsync_testkit::Servers);

impl Servers {
    pub fn load() -> Servers {
        match mailsync_testkit::Servers::load() {
            Ok(s) => Servers(s),
            Err(e) => panic!("test servers not available ({e}): run `cargo xtask servers up`"),
        }
    }

    pub fn session_url(&self) -> &str {
        self.0.jmap_session_url()
    }

    /// A connected client for a pool user.
    pub async fn client(&self, user: &str) -> Client {
        Client::builder()
            .credentials(Credentials::basic(user, CYRUS_POOL_PASSWORD))
            .connect(self.session_url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Cyrus JMAP as {user}: {e} ({e:?})"))
    }
}

/// Runs a network test with a deadline, so a hung server fails the test instead of hanging CI.
pub async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs} s"))
}

/// A token unique across processes and calls (Cyrus dedupes identical message bytes).
pub fn unique(tag: &str) -> String {
    mailsync_testkit::unique_name(tag)
}

/// A small RFC 5322 message; the unique Message-ID keeps its bytes unique.
pub fn message(from: &str, to: &str, subject: &str, mid: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody of {subject}.\r\n.leading dot line\r\n"
    )
    .into_bytes()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking test helper panicked")
}

/// Delivers messages over LMTP to one user, like an MTA would.
pub async fn lmtp_deliver(servers: &Servers, user: &str, messages: Vec<Vec<u8>>) {
    let addr = servers.0.cyrus_lmtp().to_owned();
    let user = user.to_owned();
    let n = messages.len();
    let delivered = blocking(move || mailsync_testkit::lmtp_deliver(&addr, &user, messages))
        .await
        .unwrap_or_else(|e| panic!("LMTP delivery failed: {e}"));
    assert_eq!(delivered, n);
}

/// Appends messages to a (new or existing) mailbox with MULTIAPPEND.
pub async fn imap_append(servers: &Servers, user: &str, mailbox: &str, messages: Vec<Vec<u8>>) {
    let (host, port) = (
        servers.0.cyrus_host().to_owned(),
        servers.0.cyrus_imap_port(),
    );
    let (user, mailbox) = (user.to_owned(), mailbox.to_owned());
    let n = messages.len();
    let appended = blocking(move || {
        mailsync_testkit::imap_append_bulk(
            &host,
            port,
            &user,
            CYRUS_POOL_PASSWORD,
            &mailbox,
            messages,
            200,
        )
    })
    .await
    .unwrap_or_else(|e| panic!("IMAP append failed: {e}"));
    assert_eq!(appended, n);
}

/// Runs IMAP commands in INBOX on the message with this Message-ID (`{uid}` in each command
/// is replaced by its UID), as a second client would.
pub async fn imap_on_message(servers: &Servers, user: &str, mid: &str, commands: &[&str]) {
    let (host, port) = (
        servers.0.cyrus_host().to_owned(),
        servers.0.cyrus_imap_port(),
    );
    let (user, mid) = (user.to_owned(), mid.to_owned());
    let commands: Vec<String> = commands.iter().map(|c| (*c).to_owned()).collect();
    blocking(move || {
        let mut imap = ImapClient::login(&host, port, &user, CYRUS_POOL_PASSWORD).unwrap();
        imap.select("INBOX").unwrap();
        let search = imap
            .command(&format!("UID SEARCH HEADER Message-ID \"{mid}\""))
            .unwrap();
        let uids: Vec<u32> = search
            .lines()
            .filter_map(|l| l.strip_prefix("* SEARCH").map(str::to_owned))
            .flat_map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        assert_eq!(uids.len(), 1, "UIDs for {mid}: {uids:?}");
        for c in commands {
            imap.command(&c.replace("{uid}", &uids[0].to_string()))
                .unwrap();
        }
        imap.logout();
    })
    .await;
}

/// Waits for the message with this Message-ID in the SMTP sink.
pub async fn sink_message(servers: &Servers, mid: &str) -> SinkMessage {
    let dir = servers.0.smtp_sink_dir().to_owned();
    let mid = mid.to_owned();
    blocking(move || {
        mailsync_testkit::wait_for_sink_message(&dir, Duration::from_secs(15), |m| {
            m.message_id().is_some_and(|id| id.contains(&mid))
        })
    })
    .await
    .unwrap_or_else(|e| panic!("submission never reached the SMTP sink: {e}"))
}
