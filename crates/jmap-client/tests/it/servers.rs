//! Access to the real test servers of `cargo xtask servers up`, plus "another client":
//! raw LMTP delivery and a minimal raw IMAP session (std protocol lines over tokio TCP).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailsync_jmap_client::{Client, Credentials};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Connection details from the environment or `.state/servers.env`.
pub struct Servers {
    vars: HashMap<String, String>,
}

impl Servers {
    /// Loads the details; panics with instructions when the servers were never started.
    pub fn load() -> Servers {
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut dir: Option<&Path> = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
        while let Some(d) = dir {
            let f = d.join(".state/servers.env");
            if let Ok(text) = std::fs::read_to_string(&f) {
                for line in text.lines() {
                    if let Some((k, v)) = line.split_once('=')
                        && !k.trim_start().starts_with('#')
                    {
                        vars.insert(k.trim().to_owned(), v.trim().to_owned());
                    }
                }
                break;
            }
            dir = d.parent();
        }
        for (k, v) in std::env::vars() {
            if k.starts_with("MAILSYNC_") {
                vars.insert(k, v);
            }
        }
        assert!(
            vars.contains_key("MAILSYNC_JMAP_SESSION_URL"),
            "test servers not configured: run `cargo xtask servers up` (or export MAILSYNC_* variables)"
        );
        Servers { vars }
    }

    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the test-server environment"))
    }

    pub fn session_url(&self) -> &str {
        self.get("MAILSYNC_JMAP_SESSION_URL")
    }

    pub fn cyrus_imap(&self) -> String {
        format!(
            "{}:{}",
            self.get("MAILSYNC_CYRUS_HOST"),
            self.get("MAILSYNC_CYRUS_IMAP_PORT")
        )
    }

    pub fn sink_dir(&self) -> PathBuf {
        PathBuf::from(self.get("MAILSYNC_SMTP_SINK_DIR"))
    }

    /// A connected client for a pool user (password `testpw`).
    pub async fn client(&self, user: &str) -> Client {
        Client::builder()
            .credentials(Credentials::basic(user, "testpw"))
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
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A small RFC 5322 message with a unique Message-ID.
pub fn message(from: &str, to: &str, subject: &str, mid: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody of {subject}.\r\n.leading dot line\r\n"
    )
    .into_bytes()
}

async fn read_reply(r: &mut BufReader<TcpStream>) -> String {
    // SMTP/LMTP replies: "250-..." continues, "250 ..." ends.
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).await.unwrap() > 0,
            "LMTP connection closed"
        );
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Delivers a message over LMTP to one user, like an MTA would.
pub async fn lmtp_deliver(servers: &Servers, user: &str, msg: &[u8]) {
    let stream = TcpStream::connect(servers.get("MAILSYNC_CYRUS_LMTP"))
        .await
        .unwrap();
    let mut r = BufReader::new(stream);
    let expect = |reply: String, code: &str| {
        assert!(
            reply.starts_with(code),
            "LMTP: expected {code}, got {reply:?}"
        )
    };
    expect(read_reply(&mut r).await, "220");
    for (cmd, code) in [
        ("LHLO test.example\r\n".to_owned(), "250"),
        ("MAIL FROM:<sender@example.test>\r\n".to_owned(), "250"),
        (format!("RCPT TO:<{user}>\r\n"), "250"),
        ("DATA\r\n".to_owned(), "354"),
    ] {
        r.get_mut().write_all(cmd.as_bytes()).await.unwrap();
        expect(read_reply(&mut r).await, code);
    }
    let mut data = Vec::with_capacity(msg.len() + 8);
    for line in msg.split_inclusive(|b| *b == b'\n') {
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    r.get_mut().write_all(&data).await.unwrap();
    expect(read_reply(&mut r).await, "250");
    r.get_mut().write_all(b"QUIT\r\n").await.unwrap();
}

/// A minimal raw IMAP session (LOGIN, SELECT, UID STORE, UID EXPUNGE, APPEND).
pub struct Imap {
    r: BufReader<TcpStream>,
    tag: u32,
}

impl Imap {
    pub async fn login(servers: &Servers, user: &str) -> Imap {
        let stream = TcpStream::connect(servers.cyrus_imap()).await.unwrap();
        let mut imap = Imap {
            r: BufReader::new(stream),
            tag: 0,
        };
        let mut greeting = String::new();
        imap.r.read_line(&mut greeting).await.unwrap();
        assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting:?}");
        imap.cmd(&format!("LOGIN {user} testpw")).await;
        imap
    }

    /// Sends a command (bytes may contain LITERAL+ literals) and returns the untagged lines;
    /// panics unless the tagged response is OK.
    pub async fn cmd_bytes(&mut self, command: &[u8]) -> Vec<String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        self.r.get_mut().write_all(&line).await.unwrap();
        let mut untagged = Vec::new();
        loop {
            let mut l = String::new();
            assert!(
                self.r.read_line(&mut l).await.unwrap() > 0,
                "IMAP connection closed"
            );
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                assert!(rest.starts_with("OK"), "IMAP command failed: {rest:?}");
                return untagged;
            }
            untagged.push(l);
        }
    }

    pub async fn cmd(&mut self, command: &str) -> Vec<String> {
        self.cmd_bytes(command.as_bytes()).await
    }

    /// UIDs matching a Message-ID in the selected mailbox.
    pub async fn uids_by_message_id(&mut self, mid: &str) -> Vec<u32> {
        let lines = self
            .cmd(&format!("UID SEARCH HEADER Message-ID \"{mid}\""))
            .await;
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    /// Appends many messages in one MULTIAPPEND command (LITERAL+).
    pub async fn append_many(&mut self, mailbox: &str, messages: &[Vec<u8>]) {
        let mut cmd = format!("APPEND \"{mailbox}\"").into_bytes();
        for m in messages {
            cmd.extend_from_slice(format!(" {{{}+}}\r\n", m.len()).as_bytes());
            cmd.extend_from_slice(m);
        }
        self.cmd_bytes(&cmd).await;
    }
}

/// Waits until a file in the SMTP sink contains `needle`; returns its content.
pub async fn sink_message_containing(servers: &Servers, needle: &str) -> String {
    let dir = servers.sink_dir().join("Maildir/new");
    for _ in 0..100 {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(e.path())
                    && text.contains(needle)
                {
                    return text;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no message containing {needle:?} arrived in the SMTP sink {}",
        dir.display()
    );
}
