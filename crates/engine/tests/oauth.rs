//! OAuth 2 accounts on the real Dovecot (its `oauth2` passdb, users `o_*`, asking the test's
//! own issuer through the introspection relay) and the SMTP sink (XOAUTH2 checked against the
//! same issuer): a worker that outlives several short-lived access tokens keeps syncing and
//! sending; a token the server refuses early is replaced once; a revoked refresh token, an
//! unreachable or garbage-speaking token endpoint fail the add with one line and store nothing;
//! a rotated refresh token is handed to the store command; no token reaches the database.
//!
//! The servers' config changed for this (oauth2 passdb, relay): run against an instance
//! started from this tree, e.g. `MAILSYNC_SERVERS_ROOT=/dev/shm/oauth`.

mod common;
mod fake_jmap;

use std::path::Path;
use std::time::{Duration, Instant};

use mailsync_engine::Engine;
use mailsync_engine::classify::{Disposition, classify};
use mailsync_outbox::OutgoingMessage;
use mailsync_store::accounts::{Endpoint, NewAccount, OAuth};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, Address, BodyPolicy, SecretRef, Security, emails, sync_log};
use mailsync_testkit::{Servers, TokenEndpoint, doveadm_with_input, wait_for_sink_message};

use common::E;

/// An IMAP+SMTP account for `user` on the test Dovecot and sink, whose refresh token is read
/// from `token_file` by command (so the database holds the command, never the token).
fn oauth_account(servers: &Servers, user: &str, token_file: &Path) -> NewAccount {
    NewAccount {
        name: format!("oauth-{user}"),
        secret_ref: SecretRef::Command(format!("cat {}", token_file.display())),
        smtp: Some(Endpoint {
            host: servers.smtp_host().into(),
            port: servers.smtp_port(),
            security: Security::Plain,
        }),
        ..common::dovecot_account(servers, user, "unused")
    }
}

fn oauth_settings(token_url: String, store_cmd: Option<String>) -> OAuth {
    OAuth {
        token_url,
        client_id: "mailsync-test".into(),
        client_secret_ref: None,
        scopes: vec!["https://mail.example.test/".into(), "offline_access".into()],
        refresh_store_cmd: store_cmd,
    }
}

fn deliver(servers: &Servers, user: &str, subject: &str) -> Result<(), E> {
    let msg = format!(
        "From: a@example.test\r\nTo: {user}@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\nhi\r\n"
    );
    doveadm_with_input(
        servers.dovecot_conf(),
        &["save", "-u", user, "-m", "INBOX"],
        Some(msg.as_bytes()),
    )?;
    Ok(())
}

async fn wait_for_email(
    engine: &Engine,
    account: &mailsync_store::accounts::Account,
    mid: &str,
) -> Result<(), E> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if !emails::find_by_message_id(engine.store().conn(), account.id, mid)
            .await?
            .is_empty()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{mid} never synced").into())
}

/// Every file of the SQLite database (main file, WAL, journal) as bytes.
fn database_bytes(db: &TempDb) -> Vec<u8> {
    let path = db
        .url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-journal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
            all.extend(b);
        }
    }
    assert!(!all.is_empty(), "database file {path} not found");
    all
}

fn assert_no_token_in(haystack: &[u8], tokens: &[String], what: &str) {
    for t in tokens {
        assert!(
            !haystack.windows(t.len()).any(|w| w == t.as_bytes()),
            "a token appears in {what}"
        );
    }
}

fn message(user: &str, subject: &str) -> OutgoingMessage {
    OutgoingMessage {
        from: Address {
            name: None,
            email: format!("{user}@example.test"),
        },
        to: vec![Address {
            name: None,
            email: "bob@example.test".into(),
        }],
        subject: subject.into(),
        text: "sent with an OAuth 2 token".into(),
        ..Default::default()
    }
}

/// An OAuth-only Dovecot user with its own token issuer, and an engine with the account added.
struct Setup {
    servers: Servers,
    issuer: TokenEndpoint,
    user: String,
    /// Holds the refresh token file.
    dir: tempfile::TempDir,
    token_file: std::path::PathBuf,
    db: TempDb,
    engine: Engine,
    account: mailsync_store::accounts::Account,
}

impl Setup {
    /// Tokens live `lifetime`; with `rotate`, every grant rotates the refresh token and the
    /// account stores the new one back into its token file.
    async fn new(tag: &str, lifetime: Duration, rotate: bool) -> Result<Setup, E> {
        let servers = Servers::load()?;
        let issuer = TokenEndpoint::start(lifetime)?;
        issuer.set_rotate(rotate);
        let user = TokenEndpoint::fresh_user(tag);
        let dir = tempfile::tempdir()?;
        let token_file = dir.path().join("refresh");
        std::fs::write(&token_file, issuer.refresh_token_for(&user))?;
        let store_cmd = rotate.then(|| format!("cat > {}", token_file.display()));
        let db = TempDb::sqlite().await?;
        let engine = Engine::new(db.store.clone());
        let account = engine
            .add_account_with(
                oauth_account(&servers, &user, &token_file),
                Some(oauth_settings(issuer.token_url(), store_cmd)),
            )
            .await?;
        Ok(Setup {
            servers,
            issuer,
            user,
            dir,
            token_file,
            db,
            engine,
            account,
        })
    }

    /// Waits for the sink to receive `subject`.
    async fn sent(&self, subject: &str) -> Result<mailsync_testkit::SinkMessage, E> {
        let sink = self.servers.smtp_sink_dir().to_path_buf();
        let subject = subject.to_owned();
        Ok(tokio::task::spawn_blocking(move || {
            wait_for_sink_message(&sink, Duration::from_secs(20), |m| {
                m.header("Subject").as_deref() == Some(subject.as_str())
            })
        })
        .await??)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_outlives_its_access_tokens_and_keeps_syncing_and_sending() -> Result<(), E> {
    let t = Setup::new("i20w", Duration::from_secs(3), false).await?;
    let (servers, issuer, user, engine, account) =
        (&t.servers, &t.issuer, &t.user, &t.engine, &t.account);
    assert_eq!(
        engine.test_account(account).await?,
        "IMAP OAUTHBEARER, SMTP XOAUTH2"
    );
    let grants_at_start = issuer.grants();
    let started = Instant::now();
    engine.start(account.clone());
    // Four rounds, each after the previous token expired: Dovecot drops the connection (as a
    // server does when a session outlives its token), a message arrives, one is sent.
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(3200)).await;
        doveadm_with_input(servers.dovecot_conf(), &["kick", user], None)?;
        let subject = format!("{user}-in-{round}");
        deliver(servers, user, &subject)?;
        let sent_subject = format!("{user}-out-{round}");
        engine
            .send(account.id, message(user, &sent_subject))
            .await?;
        wait_for_email(engine, account, &format!("{subject}@example.test")).await?;
        let got = t.sent(&sent_subject).await?;
        assert_eq!(
            got.auth_user.as_deref(),
            Some(user.as_str()),
            "XOAUTH2 user"
        );
    }
    let lived = started.elapsed();
    assert!(lived > Duration::from_secs(12), "{lived:?}");
    assert!(
        issuer.grants() >= grants_at_start + 3,
        "tokens refreshed: {} grants",
        issuer.grants()
    );
    // Every request asked for the configured client and scopes.
    let req = issuer.requests().pop().ok_or("no token request")?;
    assert_eq!(
        req.get("client_id").map(String::as_str),
        Some("mailsync-test")
    );
    assert_eq!(
        req.get("scope").map(String::as_str),
        Some("https://mail.example.test/ offline_access")
    );
    assert!(engine.shutdown(Duration::from_secs(10)).await);
    // No cycle asked the user to sign in again.
    for row in sync_log::list(engine.store().conn(), Some(account.id), 100).await? {
        if let Some(m) = &row.error {
            assert!(!m.to_lowercase().contains("auth"), "sync log: {m}");
        }
    }
    assert_no_token_in(&database_bytes(&t.db), &issuer.issued(), "the database");
    Ok(())
}

#[tokio::test]
async fn a_token_refused_before_its_expiry_is_replaced_once() -> Result<(), E> {
    let t = Setup::new("i20r", Duration::from_secs(600), false).await?;
    let (servers, issuer, user, engine, account) =
        (&t.servers, &t.issuer, &t.user, &t.engine, &t.account);
    engine.sync_once(account.id).await?;
    let before = issuer.grants();
    // The provider invalidates every access token (password change); the cached one still
    // looks valid for ten minutes.
    issuer.revoke_access_tokens();
    deliver(servers, user, &format!("{user}-after-revoke"))?;
    engine.sync_once(account.id).await?;
    assert_eq!(issuer.grants(), before + 1, "exactly one fresh token");
    assert_eq!(
        emails::find_by_message_id(
            engine.store().conn(),
            account.id,
            &format!("{user}-after-revoke@example.test")
        )
        .await?
        .len(),
        1
    );
    // Again, with a send queued: SMTP (and IMAP) log in with the one fresh token.
    issuer.revoke_access_tokens();
    let before = issuer.grants();
    let subject = format!("{user}-sent-after-revoke");
    engine.send(account.id, message(user, &subject)).await?;
    engine.sync_once(account.id).await?;
    assert_eq!(issuer.grants(), before + 1, "exactly one fresh token");
    let got = t.sent(&subject).await?;
    assert_eq!(got.auth_user.as_deref(), Some(user.as_str()));
    // SMTP on its own (no IMAP login before it to refresh the token): the sink refuses the
    // revoked token, one fresh token, accepted.
    issuer.revoke_access_tokens();
    let before = issuer.grants();
    let session = mailsync_engine::imap_driver::smtp_connect(account).await?;
    assert_eq!(session.mechanism(), "XOAUTH2");
    session.quit().await;
    assert_eq!(issuer.grants(), before + 1, "exactly one fresh token");
    // Revoked for good (refresh token too): "needs the user", after exactly one more try.
    issuer.revoke_access_tokens();
    for t in issuer.valid_refresh_tokens() {
        issuer.revoke_refresh(&t);
    }
    let err = engine
        .sync_once(account.id)
        .await
        .expect_err("revoked refresh token");
    assert_eq!(classify(&err), Disposition::NeedsUser, "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_rotated_refresh_token_is_handed_to_the_store_command() -> Result<(), E> {
    let t = Setup::new("i20s", Duration::from_secs(1), true).await?;
    let (servers, issuer, engine, account, token_file, dir, db) = (
        &t.servers,
        &t.issuer,
        &t.engine,
        &t.account,
        &t.token_file,
        t.dir.path(),
        &t.db,
    );
    // The first refresh token was rotated by the add's login and stored back.
    let first = issuer.issued()[0].clone();
    let stored = std::fs::read_to_string(token_file)?;
    assert_ne!(stored.trim(), first, "the rotated token was stored");
    assert_eq!(
        issuer.valid_refresh_tokens(),
        vec![stored.trim().to_owned()]
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    engine.sync_once(account.id).await?;
    assert_eq!(
        issuer.valid_refresh_tokens(),
        vec![std::fs::read_to_string(token_file)?.trim().to_owned()],
        "rotated again, stored again"
    );
    // A store command that fails: the rotated token is still used (in memory) and the sync
    // goes on; the user is warned to store it.
    let user2 = TokenEndpoint::fresh_user("i20s2");
    let file2 = dir.join("refresh2");
    std::fs::write(&file2, issuer.refresh_token_for(&user2))?;
    let second = engine
        .add_account_with(
            oauth_account(servers, &user2, &file2),
            Some(oauth_settings(issuer.token_url(), Some("exit 3".into()))),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    engine.sync_once(second.id).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    engine.sync_once(second.id).await?;
    assert_no_token_in(&database_bytes(db), &issuer.issued(), "the database");
    Ok(())
}

#[tokio::test]
async fn bad_token_endpoints_fail_the_add_with_one_line_and_store_nothing() -> Result<(), E> {
    let servers = Servers::load()?;
    let issuer = TokenEndpoint::start(Duration::from_secs(60))?;
    let user = TokenEndpoint::fresh_user("i20b");
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("refresh");
    let rt = issuer.refresh_token_for(&user);
    std::fs::write(&token_file, &rt)?;
    let db = TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let add = |url: String| {
        engine.add_account_with(
            oauth_account(&servers, &user, &token_file),
            Some(oauth_settings(url, None)),
        )
    };
    // Unreachable: nothing listens on a port just freed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead_url = format!("http://127.0.0.1:{}/token", dead.local_addr()?.port());
    drop(dead);
    let err = add(dead_url).await.expect_err("unreachable endpoint");
    assert_eq!(classify(&err), Disposition::Offline, "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    // Garbage: an HTML page with 200 OK.
    issuer.set_garbage(true);
    let err = add(issuer.token_url()).await.expect_err("garbage");
    assert_eq!(classify(&err), Disposition::NeedsUser, "{err}");
    assert!(err.to_string().contains("HTML"), "{err}");
    issuer.set_garbage(false);
    // Revoked refresh token.
    issuer.revoke_refresh(&rt);
    let err = add(issuer.token_url()).await.expect_err("revoked");
    assert_eq!(classify(&err), Disposition::NeedsUser, "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    assert!(
        mailsync_store::accounts::list(engine.store().conn())
            .await?
            .is_empty(),
        "nothing stored"
    );
    Ok(())
}

/// JMAP with `Authorization: Bearer` against the spec-following fake (Cyrus has no OAuth): a
/// driver that lives across token lifetimes rebuilds its client with each new token before the
/// old one expires (no 401 at all), and a token the server refuses early is replaced once.
#[tokio::test]
async fn jmap_bearer_tokens_are_refreshed_ahead_and_after_a_refusal() -> Result<(), E> {
    use fake_jmap::{BearerCheck, FakeJmap};
    use mailsync_engine::jmap_driver::JmapDriver;
    use mailsync_engine::worker::run_cycle;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let issuer = Arc::new(TokenEndpoint::start(Duration::from_secs(2))?);
    let fake = FakeJmap::start().await?;
    let check = issuer.clone();
    {
        let mut w = fake.world();
        w.bearer = Some(BearerCheck(Arc::new(move |t| check.is_active(t))));
        let inbox = w.add_mailbox("Inbox", None, Some("inbox"));
        w.add_email(&inbox, "2024-01-01T10:00:00Z", "first");
    }
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("refresh");
    std::fs::write(&token_file, issuer.refresh_token_for("u1"))?;
    let db = TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let account = engine
        .add_account_with(
            NewAccount {
                name: "jmap-oauth".into(),
                kind: AccountKind::Jmap,
                email: "u1@fake.test".into(),
                display_name: None,
                username: "u1".into(),
                secret_ref: SecretRef::Command(format!("cat {}", token_file.display())),
                imap: None,
                smtp: None,
                jmap_session_url: Some(fake.session_url()),
                ca_file: None,
                allow_plaintext: false,
                body_policy: BodyPolicy::None,
            },
            Some(oauth_settings(issuer.token_url(), None)),
        )
        .await?;
    assert_eq!(engine.test_account(&account).await?, "JMAP Bearer");
    let mut driver = JmapDriver::new(db.store.clone(), engine.outbox().clone(), account.clone());
    let cancel = CancellationToken::new();
    let (events, _) = tokio::sync::broadcast::channel(16);
    run_cycle(&db.store, account.id, &mut driver, &cancel, &events).await?;
    // Three token lifetimes, one cycle each, with new mail each time.
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        {
            let mut w = fake.world();
            let inbox = w.mailboxes.keys().next().cloned().ok_or("inbox")?;
            w.add_email(&inbox, "2024-01-02T10:00:00Z", &format!("later {i}"));
        }
        run_cycle(&db.store, account.id, &mut driver, &cancel, &events).await?;
    }
    assert_eq!(emails::count(db.store.conn(), account.id).await?, 4);
    assert_eq!(fake.world().unauthorized, 0, "refreshed ahead of expiry");
    assert!(fake.world().auth_schemes.iter().all(|s| s == "Bearer"));
    // Revoked early (the cached token still looks valid): one 401, one fresh token, success.
    let issuer_grants = issuer.grants();
    issuer.revoke_access_tokens();
    run_cycle(&db.store, account.id, &mut driver, &cancel, &events).await?;
    assert_eq!(fake.world().unauthorized, 1);
    assert_eq!(issuer.grants(), issuer_grants + 1);
    assert_no_token_in(&database_bytes(&db), &issuer.issued(), "the database");
    Ok(())
}
