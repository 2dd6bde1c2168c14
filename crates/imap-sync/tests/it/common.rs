//! Shared helpers: server details, configurations, temporary stores, "another client".

use std::future::Future;
use std::time::Duration;

use mailsync_imap_sync::{Auth, Connection, ImapConfig, Timeouts};
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountId, AccountKind, BodyPolicy, SecretRef, Security};
use mailsync_testkit::{Account, Servers};

/// The test servers; a clear failure when they are not running.
pub fn servers() -> Servers {
    match Servers::load() {
        Ok(s) => s,
        Err(e) => panic!("test servers unavailable, run `cargo xtask servers up`: {e}"),
    }
}

/// Timeouts short enough for tests.
pub fn test_timeouts() -> Timeouts {
    Timeouts::default()
        .with_connect(Duration::from_secs(10))
        .with_read(Duration::from_secs(30))
}

/// Dovecot over loopback plaintext.
pub fn dovecot(user: &Account) -> ImapConfig {
    let s = servers();
    ImapConfig::new(
        s.dovecot_host(),
        s.dovecot_imap_port(),
        Security::Plain,
        &user.user,
        Auth::Password(user.password.clone()),
    )
    .with_timeouts(test_timeouts())
}

/// Dovecot through a fault-injecting proxy, over loopback plaintext.
pub fn dovecot_via(proxy: &mailsync_testkit::FaultProxy, user: &Account) -> ImapConfig {
    ImapConfig::new(
        proxy.host(),
        proxy.port(),
        Security::Plain,
        &user.user,
        Auth::Password(user.password.clone()),
    )
    .with_timeouts(test_timeouts())
}

/// Cyrus over loopback plaintext.
pub fn cyrus(user: &Account) -> ImapConfig {
    let s = servers();
    ImapConfig::new(
        s.cyrus_host(),
        s.cyrus_imap_port(),
        Security::Plain,
        &user.user,
        Auth::Password(user.password.clone()),
    )
    .with_timeouts(test_timeouts())
}

/// A fresh Dovecot user.
pub fn fresh_user(tag: &str) -> Account {
    servers().fresh_dovecot_user(tag)
}

/// Runs a future with a limit; a hang is a test failure, not a stuck CI job.
pub async fn limit<F: Future>(secs: u64, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("test step timed out after {secs} s"),
    }
}

/// Runs blocking testkit code (its IMAP client and doveadm are synchronous).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => panic!("blocking task failed: {e}"),
    }
}

/// A temporary SQLite store with one IMAP account.
pub async fn store() -> anyhow::Result<(TempDb, AccountId)> {
    let db = TempDb::sqlite().await?;
    let account = add_account(&db).await?;
    Ok((db, account))
}

/// Adds an IMAP account row to a store.
pub async fn add_account(db: &TempDb) -> anyhow::Result<AccountId> {
    let a = accounts::create(
        db.store.conn(),
        NewAccount {
            name: format!("acct-{}", mailsync_testkit::unique_name("a")),
            kind: AccountKind::Imap,
            email: "test@example.test".into(),
            display_name: None,
            username: "test".into(),
            secret_ref: SecretRef::Env("UNUSED".into()),
            imap: None,
            smtp: None,
            jmap_session_url: None,
            ca_file: None,
            allow_plaintext: true,
            body_policy: BodyPolicy::None,
        },
    )
    .await?;
    Ok(a.id)
}

/// Logs to stderr when `RUST_LOG` is set (e.g. `RUST_LOG=mailsync_imap_sync=debug`).
pub fn init_log() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Connects, failing the test on error.
pub async fn connect(cfg: &ImapConfig) -> Connection {
    init_log();
    match limit(30, Connection::connect(cfg)).await {
        Ok(c) => c,
        Err(e) => panic!("connect to {}:{} failed: {e:?}", cfg.host, cfg.port),
    }
}

/// Appends messages with MULTIAPPEND (creating the mailbox) as "another client".
pub async fn append(
    cfg: &ImapConfig,
    user: &Account,
    mailbox: &str,
    messages: Vec<Vec<u8>>,
) -> anyhow::Result<usize> {
    let (host, port) = (cfg.host.clone(), cfg.port);
    let (u, p, m) = (user.user.clone(), user.password.clone(), mailbox.to_owned());
    let n = blocking(move || {
        mailsync_testkit::imap_append_bulk(&host, port, &u, &p, &m, messages, 500)
    })
    .await?;
    Ok(n)
}

/// Runs doveadm ("another client") for a Dovecot user.
pub async fn doveadm(args: Vec<String>) -> anyhow::Result<String> {
    let out = blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        servers().doveadm(&a)
    })
    .await?;
    Ok(out)
}

/// Runs one command as another IMAP client and returns its untagged lines.
pub async fn other_client(
    cfg: &ImapConfig,
    user: &Account,
    commands: Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let (host, port) = (cfg.host.clone(), cfg.port);
    let (u, p) = (user.user.clone(), user.password.clone());
    let lines = blocking(move || -> Result<Vec<String>, mailsync_testkit::Error> {
        let mut c = mailsync_testkit::ImapClient::login(&host, port, &u, &p)?;
        let mut out = Vec::new();
        for cmd in commands {
            out.extend(c.command(&cmd)?.lines());
        }
        c.logout();
        Ok(out)
    })
    .await?;
    Ok(lines)
}

/// The UIDVALIDITY stored for a mailbox (0 when the sync has not seen one), which every
/// UID-addressed mutation must carry.
pub async fn uv_of(db: &TempDb, mailbox: mailsync_store::MailboxId) -> anyhow::Result<u32> {
    let m = mailsync_store::mailboxes::get(db.store.conn(), mailbox).await?;
    Ok(m.status
        .uidvalidity
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0))
}
