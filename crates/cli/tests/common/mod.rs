//! Shared support for the CLI end-to-end tests: run the real binary against a temp database.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mailsync");
/// The variable the test accounts read their password from.
pub const PW_VAR: &str = "MAILSYNC_CLI_TEST_PW";

pub type R = Result<(), Box<dyn std::error::Error>>;

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The stdout lines parsed as JSON objects.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }

    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    /// Asserts a failure with `code`: one `error:` line on stderr, no panic, nothing on stdout.
    #[track_caller]
    pub fn fails(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "{self:#?}");
        self
    }
}

/// A temp directory with its own SQLite database.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: String,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("sqlite://{}/x.db?mode=rwc", dir.path().display());
        Self { dir, db }
    }

    pub fn with_db(db: &str) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            db: db.to_owned(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "120", BIN, "--db", &self.db])
            .args(args)
            .env(PW_VAR, mailsync_testkit::CYRUS_POOL_PASSWORD)
            .env_remove("RUST_LOG")
            .env_remove("MAILSYNC_DB")
            .stdin(Stdio::null());
        c
    }

    /// The binary itself (no `timeout` wrapper), for a daemon the test signals directly.
    pub fn daemon(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["--db", &self.db])
            .args(args)
            .env(PW_VAR, mailsync_testkit::CYRUS_POOL_PASSWORD)
            .env_remove("RUST_LOG")
            .env_remove("MAILSYNC_DB")
            .stdin(Stdio::null());
        c
    }

    /// Runs the binary (killed after 120 s).
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, |_| {})
    }

    pub fn run_with(&self, args: &[&str], f: impl FnOnce(&mut Command)) -> Out {
        let mut c = self.command(args);
        f(&mut c);
        let o = c.output().expect("run mailsync");
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert_ne!(out.code, 124, "timed out: mailsync {args:?}: {out:#?}");
        out
    }

    /// Adds a JMAP account on Cyrus for `user` (pool password from the environment).
    pub fn add_jmap(&self, name: &str, user: &str) -> Out {
        let servers =
            mailsync_testkit::Servers::load().expect("test servers (cargo xtask servers up)");
        self.run(&[
            "account",
            "add",
            name,
            "--jmap",
            servers.jmap_session_url(),
            "--user",
            user,
            "--password-env",
            PW_VAR,
            "--email",
            &format!("{user}@example.test"),
        ])
    }

    /// `emails --json` of the whole database.
    pub fn emails(&self) -> Vec<Value> {
        self.run(&["emails", "--json", "--limit", "100000"])
            .ok()
            .json_lines()
    }

    /// The email with this subject, if listed.
    pub fn email_by_subject(&self, subject: &str) -> Option<Value> {
        self.emails().into_iter().find(|e| e["subject"] == subject)
    }
}

/// A spawned daemon, killed when the test ends early (a failed assertion).
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A small message with a unique subject and Message-ID; with an attachment if `attach`.
pub fn message(subject: &str, body: &str, attach: Option<(&str, &str)>) -> (Vec<u8>, String) {
    let mid = format!("{}@cli.test", mailsync_testkit::unique_name("m"));
    let date = chrono::Utc::now().to_rfc2822();
    let head = format!(
        "From: Sender <sender@example.test>\r\nTo: rcpt@example.test\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\n"
    );
    let raw = match attach {
        None => format!("{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"),
        Some((name, content)) => format!(
            "{head}Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--b1\r\n\
             Content-Type: text/plain; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{content}\r\n--b1--\r\n"
        ),
    };
    (raw.into_bytes(), mid)
}

/// Delivers messages to a Cyrus user over LMTP.
pub fn deliver(user: &str, messages: Vec<Vec<u8>>) {
    let servers = mailsync_testkit::Servers::load().expect("test servers (cargo xtask servers up)");
    let n = mailsync_testkit::lmtp_deliver(servers.cyrus_lmtp(), user, messages.iter())
        .expect("LMTP delivery to Cyrus");
    assert_eq!(n, messages.len());
}

/// Polls `f` until it returns Some, at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn unique(tag: &str) -> String {
    mailsync_testkit::unique_name(tag)
}

/// Adds an IMAP account on Dovecot (plain on loopback) sending through the SMTP sink.
pub fn imap_add(
    env: &Env,
    servers: &mailsync_testkit::Servers,
    name: &str,
    user: &str,
    extra: &[&str],
) -> Out {
    let imap = format!("127.0.0.1:{}", servers.dovecot_imap_port());
    let smtp = format!("127.0.0.1:{}", servers.smtp_port());
    let mut args = vec![
        "account",
        "add",
        name,
        "--imap",
        &imap,
        "--security",
        "plain",
        "--smtp",
        &smtp,
        "--smtp-security",
        "plain",
        "--user",
        user,
        "--password-env",
        PW_VAR,
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// Appends messages to a Dovecot user's mailbox.
pub fn append(servers: &mailsync_testkit::Servers, user: &str, mailbox: &str, msgs: Vec<Vec<u8>>) {
    let n = mailsync_testkit::imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        user,
        mailsync_testkit::DOVECOT_T_PASSWORD,
        mailbox,
        msgs.iter(),
        100,
    )
    .expect("append to Dovecot");
    assert_eq!(n, msgs.len());
}
