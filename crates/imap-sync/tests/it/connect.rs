//! Connecting: plaintext, STARTTLS, implicit TLS with the test CA, certificate rejection,
//! authentication failures with their response code, unreachable servers.

use mailsync_imap_sync::{Auth, Connection, Error, ImapConfig, ResponseCode, Timeouts};
use mailsync_store::Security;
use mailsync_testkit::Account;

use crate::common::*;

#[tokio::test]
async fn plaintext_starttls_and_tls_connect_and_enable_qresync() {
    let s = servers();
    let user = fresh_user("conn");
    let plain = dovecot(&user);
    let mut starttls = dovecot(&user).with_ca_file(s.tls_ca());
    starttls.security = Security::Starttls;
    let mut tls = dovecot(&user).with_ca_file(s.tls_ca());
    tls.security = Security::Tls;
    tls.port = s.dovecot_imaps_port();
    for cfg in [plain, starttls, tls] {
        let mut c = connect(&cfg).await;
        assert!(
            c.qresync_enabled(),
            "{:?}: QRESYNC not enabled",
            cfg.security
        );
        assert!(c.condstore_enabled());
        assert!(c.has_capability("idle") && c.has_capability("UIDPLUS"));
        limit(10, c.noop()).await.expect("noop");
        assert!(c.is_usable());
        c.logout().await;
    }
}

#[tokio::test]
async fn tls_without_the_test_ca_is_refused() {
    let s = servers();
    let mut cfg = dovecot(&fresh_user("noca"));
    cfg.security = Security::Tls;
    cfg.port = s.dovecot_imaps_port();
    let err = limit(30, Connection::connect(&cfg))
        .await
        .expect_err("self-signed accepted");
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.is_connection());
}

#[tokio::test]
async fn bad_password_is_an_auth_error_with_its_code() {
    let user = Account::new(fresh_user("badpw").user, "wrong");
    // AUTHENTICATE PLAIN and LOGIN, concurrently: Dovecot delays failed logins from one IP by
    // seconds (its auth penalty), whatever `auth_failure_delay` says.
    let plain = dovecot(&user);
    let mut login = dovecot(&user);
    login.auth = Auth::Login("wrong".into());
    let (a, b) = tokio::join!(
        limit(40, Connection::connect(&plain)),
        limit(40, Connection::connect(&login))
    );
    for r in [a, b] {
        let err = r.expect_err("logged in");
        assert!(err.is_auth(), "{err:?}");
        assert_eq!(
            err.response_code(),
            Some(&ResponseCode::AuthenticationFailed),
            "{err:?}"
        );
    }
    // Cyrus answers LOGIN failures the same way.
    let mut cfg = cyrus(&Account::new("is1", "wrong"));
    cfg.auth = Auth::Login("wrong".into());
    let err = limit(30, Connection::connect(&cfg))
        .await
        .expect_err("logged in");
    assert!(err.is_auth(), "{err:?}");
}

/// Dovecot offers XOAUTH2 and OAUTHBEARER (its oauth2 passdb serves `o_*` users); a token it
/// does not accept is a typed authentication failure, whichever mechanism carried it. (A
/// mechanism the server does not offer: `sasl.rs`.)
#[tokio::test]
async fn a_refused_oauth_token_is_an_auth_error() {
    for auth in [
        Auth::XOAuth2("token".into()),
        Auth::OAuthBearer("token".into()),
        Auth::Bearer("token".into()),
    ] {
        let mut cfg = dovecot(&fresh_user("oauth"));
        cfg.auth = auth;
        let err = limit(30, Connection::connect(&cfg))
            .await
            .expect_err("not a valid token");
        assert!(err.is_auth(), "{err:?}");
    }
}

#[tokio::test]
async fn unreachable_and_plaintext_policy() {
    let cfg = ImapConfig::new(
        "127.0.0.1",
        1,
        Security::Plain,
        "x",
        Auth::Password("y".into()),
    );
    let err = limit(30, Connection::connect(&cfg))
        .await
        .expect_err("port 1 answered");
    assert!(
        matches!(err, Error::Unreachable { .. }) && err.is_connection(),
        "{err:?}"
    );
    let cfg = ImapConfig::new(
        "mail.example.invalid",
        143,
        Security::Plain,
        "x",
        Auth::Password("y".into()),
    );
    let err = limit(30, Connection::connect(&cfg))
        .await
        .expect_err("plaintext allowed");
    assert!(matches!(err, Error::PlaintextRefused { .. }), "{err:?}");
}

#[tokio::test]
async fn cyrus_connects_with_qresync() {
    let user = Account::new("is1", "testpw");
    let c = connect(&cyrus(&user)).await;
    assert!(c.qresync_enabled());
    c.logout().await;
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        // Accept and say nothing.
        let (_sock, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    });
    let mut cfg = ImapConfig::new(
        "127.0.0.1",
        port,
        Security::Plain,
        "x",
        Auth::Password("y".into()),
    );
    cfg.timeouts = cfg
        .timeouts
        .with_connect(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    let err = limit(10, Connection::connect(&cfg))
        .await
        .expect_err("greeting from nowhere");
    assert!(
        matches!(err, Error::Timeout { .. }) && err.is_connection(),
        "{err:?}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(3));
    hold.abort();
}

#[tokio::test]
async fn config_from_a_stored_account() -> anyhow::Result<()> {
    use mailsync_store::accounts::{self, Endpoint, NewAccount};
    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let a = accounts::create(
        db.store.conn(),
        NewAccount {
            name: "x".into(),
            kind: mailsync_store::AccountKind::Imap,
            email: "me@example.test".into(),
            display_name: None,
            username: "me".into(),
            secret_ref: mailsync_store::SecretRef::Env("PW".into()),
            imap: Some(Endpoint {
                host: "imap.example.test".into(),
                port: 993,
                security: Security::Tls,
            }),
            smtp: None,
            jmap_session_url: None,
            ca_file: Some("/tmp/ca.pem".into()),
            allow_plaintext: false,
            body_policy: mailsync_store::BodyPolicy::None,
        },
    )
    .await?;
    let cfg = ImapConfig::from_account(&a, Auth::Password("pw".into())).expect("imap endpoint");
    assert_eq!(
        (cfg.host.as_str(), cfg.port, cfg.security),
        ("imap.example.test", 993, Security::Tls)
    );
    assert_eq!(
        cfg.ca_file.as_deref(),
        Some(std::path::Path::new("/tmp/ca.pem"))
    );
    assert!(
        !format!("{cfg:?}").contains("pw\""),
        "secret in Debug output"
    );
    Ok(())
}

/// A server that sends `greeting_start` and then `chunk` every `every`, forever.
async fn endless_server(
    chunk: Vec<u8>,
    every: std::time::Duration,
) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        if sock.write_all(b"* OK ").await.is_err() {
            return;
        }
        loop {
            if sock.write_all(&chunk).await.is_err() {
                return;
            }
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
        }
    });
    (port, task)
}

fn plain(port: u16) -> ImapConfig {
    ImapConfig::new(
        "127.0.0.1",
        port,
        Security::Plain,
        "x",
        Auth::Password("y".into()),
    )
}

#[tokio::test]
async fn an_endless_line_is_cut_at_the_size_limit() {
    let (port, task) = endless_server(vec![b'a'; 64 * 1024], std::time::Duration::ZERO).await;
    let mut cfg = plain(port);
    // A smaller limit keeps the test fast in a debug build (the default is 4 MiB).
    cfg.timeouts.max_line_bytes = 1 << 20;
    let t = std::time::Instant::now();
    let err = limit(60, Connection::connect(&cfg))
        .await
        .expect_err("no line ends");
    assert!(matches!(err, Error::ResponseTooLarge { .. }), "{err:?}");
    println!("endless line refused after {:?}: {err}", t.elapsed());
    task.abort();
}

#[tokio::test]
async fn a_trickled_line_is_cut_for_no_useful_progress() {
    // One byte every 20 ms: never inactive, never done.
    let (port, task) = endless_server(vec![b'a'], std::time::Duration::from_millis(20)).await;
    let mut cfg = plain(port);
    cfg.timeouts.response_grace = std::time::Duration::from_secs(1);
    let t = std::time::Instant::now();
    let err = limit(30, Connection::connect(&cfg))
        .await
        .expect_err("no line ends");
    assert!(
        matches!(err, Error::Timeout { .. }) && err.is_connection(),
        "{err:?}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    task.abort();
}

#[tokio::test]
async fn a_line_trickled_fast_enough_still_ends_at_the_line_deadline() {
    // 6.4 KB/s: above the minimum rate, so only the line deadline ends it (the size limit
    // would take 11 minutes).
    let (port, task) = endless_server(vec![b'a'; 64], std::time::Duration::from_millis(10)).await;
    let mut cfg = plain(port);
    cfg.timeouts.response_grace = std::time::Duration::from_secs(1);
    cfg.timeouts.max_line_duration = std::time::Duration::from_secs(2);
    let t = std::time::Instant::now();
    let err = limit(30, Connection::connect(&cfg))
        .await
        .expect_err("no line ends");
    assert!(
        matches!(err, Error::Timeout { .. }) && err.is_connection(),
        "{err:?}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        t.elapsed()
    );
    task.abort();
}

/// The error of connecting to a server that greets with `greeting` and then stalls, and
/// sending a NOOP.
async fn refusal(greeting: Vec<u8>) -> Error {
    use mailsync_testkit::{HostileServer, Script, Then};
    let server =
        HostileServer::start(Script::greet(greeting, Then::Stall)).expect("hostile server");
    let cfg = plain(server.port());
    limit(30, async {
        let mut c = Connection::connect(&cfg).await?;
        c.noop().await
    })
    .await
    .expect_err("refused")
}

/// A BODYSTRUCTURE nested `depth` multiparts deep, as an unsolicited FETCH after the greeting.
fn nested_fetch(depth: usize) -> Vec<u8> {
    nested_after("* 1 FETCH (BODYSTRUCTURE ", depth)
}

/// The greeting, then `start` and a body structure `depth` multiparts deep.
fn nested_after(start: &str, depth: usize) -> Vec<u8> {
    let mut s = format!("* OK ready\r\n{start}");
    s.push_str(&"(".repeat(depth));
    s.push_str("(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)");
    s.push_str(&" \"mixed\")".repeat(depth));
    s.push_str(")\r\n");
    s.into_bytes()
}

#[tokio::test]
async fn a_bodystructure_nested_too_deep_is_refused_not_a_stack_overflow() {
    use mailsync_testkit::{HostileServer, Script, Then};
    // 5,000 levels overflowed the parser's stack and aborted the whole process.
    let err = refusal(nested_fetch(5_000)).await;
    assert!(
        matches!(err, Error::NestingTooDeep { limit: 32 }),
        "{err:?}"
    );
    assert!(!err.to_string().contains('\n'));

    // Just under the limit (29 multiparts: 31 levels with the FETCH and the leaf) the parser
    // copes, on a default 2 MiB thread stack.
    let server =
        HostileServer::start(Script::greet(nested_fetch(29), Then::Stall)).expect("hostile server");
    let cfg = plain(server.port()).with_timeouts(
        Timeouts::default()
            .with_read(std::time::Duration::from_secs(2))
            .with_connect(std::time::Duration::from_secs(2)),
    );
    let res = limit(30, async {
        let mut c = Connection::connect(&cfg).await?;
        c.noop().await
    })
    .await;
    assert!(!matches!(res, Err(Error::NestingTooDeep { .. })), "{res:?}");
}

/// A BODYSTRUCTURE the transport cannot see: a malformed FLAGS value (`"` is no flag) makes
/// imap-proto skip it up to the first `)` without reading strings, while the transport's count
/// takes the `"` for the start of a string that hides the 5,000 levels after it (fuzzing found
/// this shape). The patched parser (vendor/imap-proto) stops at its own bound.
#[tokio::test]
async fn a_bodystructure_hidden_from_the_nesting_count_is_refused_not_a_stack_overflow() {
    let err = refusal(nested_after(
        "* 1 FETCH (FLAGS (\\Seen \"x) BODYSTRUCTURE ",
        5_000,
    ))
    .await;
    assert!(matches!(err, Error::Unparsable { .. }), "{err:?}");
    assert!(!err.to_string().contains('\n'), "{err}");
}
