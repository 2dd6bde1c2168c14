//! XOAUTH2 and OAUTHBEARER exchanges, against a scripted loopback server (neither test
//! server offers these mechanisms): initial response with and without SASL-IR, the error
//! challenge answered as each mechanism requires, typed auth failures.

use base64::Engine as _;
use mailsync_imap_sync::{Auth, Connection, ImapConfig, ResponseCode};
use mailsync_store::Security;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::common::limit;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_default()
}

/// Serves one connection; returns the decoded SASL initial response and the client's reply
/// to the error challenge (if any).
async fn fake_server(
    listener: TcpListener,
    sasl_ir: bool,
    accept_token: &'static str,
) -> (Vec<u8>, Option<String>) {
    fake_server_offering(
        listener,
        sasl_ir,
        accept_token,
        "AUTH=XOAUTH2 AUTH=OAUTHBEARER",
    )
    .await
}

/// [`fake_server`] advertising the mechanisms `mechs`.
async fn fake_server_offering(
    listener: TcpListener,
    sasl_ir: bool,
    accept_token: &'static str,
    mechs: &'static str,
) -> (Vec<u8>, Option<String>) {
    let (sock, _) = listener.accept().await.expect("accept");
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    let ir = if sasl_ir { " SASL-IR" } else { "" };
    w.write_all(format!("* OK [CAPABILITY IMAP4rev1{ir} {mechs}] fake\r\n").as_bytes())
        .await
        .expect("greet");
    let line = lines.next_line().await.expect("read").expect("command");
    let mut parts = line.split(' ');
    let tag = parts.next().unwrap_or_default().to_owned();
    assert_eq!(parts.next(), Some("AUTHENTICATE"));
    let _mech = parts.next();
    let initial = match parts.next() {
        Some(b) => unb64(b),
        None => {
            w.write_all(b"+ \r\n").await.expect("continue");
            unb64(&lines.next_line().await.expect("read").expect("initial"))
        }
    };
    let text = String::from_utf8_lossy(&initial).into_owned();
    let mut error_reply = None;
    if text.contains(&format!("auth=Bearer {accept_token}\x01")) {
        w.write_all(format!("{tag} OK [CAPABILITY IMAP4rev1] welcome\r\n").as_bytes())
            .await
            .expect("ok");
    } else {
        let challenge = b64(br#"{"status":"401","schemes":"bearer","scope":"mail"}"#);
        w.write_all(format!("+ {challenge}\r\n").as_bytes())
            .await
            .expect("challenge");
        error_reply = Some(lines.next_line().await.expect("read").expect("reply"));
        w.write_all(format!("{tag} NO [AUTHENTICATIONFAILED] invalid token\r\n").as_bytes())
            .await
            .expect("no");
        return (initial, error_reply);
    }
    // LOGOUT
    if let Ok(Some(l)) = lines.next_line().await {
        let t = l.split(' ').next().unwrap_or_default().to_owned();
        let _ = w
            .write_all(format!("* BYE bye\r\n{t} OK done\r\n").as_bytes())
            .await;
    }
    (initial, error_reply)
}

/// Connects with `auth` to a fresh fake server; returns the outcome, the decoded initial
/// response and the client's reply to the error challenge.
async fn run(
    auth: Auth,
    sasl_ir: bool,
) -> (
    Result<&'static str, mailsync_imap_sync::Error>,
    Vec<u8>,
    Option<String>,
) {
    run_offering(auth, sasl_ir, "AUTH=XOAUTH2 AUTH=OAUTHBEARER").await
}

/// [`run`] against a server advertising `mechs`; a success gives the mechanism used.
async fn run_offering(
    auth: Auth,
    sasl_ir: bool,
    mechs: &'static str,
) -> (
    Result<&'static str, mailsync_imap_sync::Error>,
    Vec<u8>,
    Option<String>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(fake_server_offering(listener, sasl_ir, "good", mechs));
    let cfg = ImapConfig::new("127.0.0.1", port, Security::Plain, "me@example.test", auth);
    let outcome = match limit(10, Connection::connect(&cfg)).await {
        Ok(c) => {
            let m = c.mechanism();
            c.logout().await;
            Ok(m)
        }
        Err(e) => Err(e),
    };
    let (initial, reply) = limit(10, server).await.expect("server task");
    (outcome, initial, reply)
}

#[tokio::test]
async fn xoauth2_success_and_failure() {
    for sasl_ir in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(fake_server(listener, sasl_ir, "good"));
        let cfg = ImapConfig::new(
            "127.0.0.1",
            port,
            Security::Plain,
            "me@example.test",
            Auth::XOAuth2("good".into()),
        );
        let conn = limit(10, Connection::connect(&cfg))
            .await
            .expect("xoauth2 login");
        conn.logout().await;
        let (initial, reply) = limit(10, server).await.expect("server");
        assert_eq!(
            initial,
            b"user=me@example.test\x01auth=Bearer good\x01\x01".to_vec()
        );
        assert_eq!(reply, None);
    }
    let (r, _, reply) = run(Auth::XOAuth2("bad".into()), true).await;
    let err = r.expect_err("bad token accepted");
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(
        err.response_code(),
        Some(&ResponseCode::AuthenticationFailed)
    );
    // XOAUTH2: the error challenge is answered with an empty line.
    assert_eq!(reply.as_deref(), Some(""));
}

#[tokio::test]
async fn oauthbearer_success_and_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(fake_server(listener, true, "good"));
    let cfg = ImapConfig::new(
        "127.0.0.1",
        port,
        Security::Plain,
        "me@example.test",
        Auth::OAuthBearer("good".into()),
    );
    let conn = limit(10, Connection::connect(&cfg))
        .await
        .expect("oauthbearer login");
    conn.logout().await;
    let (initial, _) = limit(10, server).await.expect("server");
    assert_eq!(
        String::from_utf8_lossy(&initial),
        format!(
            "n,a=me@example.test,\x01host=127.0.0.1\x01port={port}\x01auth=Bearer good\x01\x01"
        )
    );
    let (r, _, reply) = run(Auth::OAuthBearer("bad".into()), false).await;
    let err = r.expect_err("bad token accepted");
    assert!(err.is_auth(), "{err:?}");
    // RFC 7628: the client answers the error challenge with %x01.
    assert_eq!(reply.as_deref(), Some("AQ=="));
}

#[tokio::test]
async fn bearer_prefers_oauthbearer_and_falls_back_to_xoauth2() {
    for (mechs, expected) in [
        ("AUTH=XOAUTH2 AUTH=OAUTHBEARER", "OAUTHBEARER"),
        ("AUTH=XOAUTH2", "XOAUTH2"),
    ] {
        let (r, initial, _) = run_offering(Auth::Bearer("good".into()), true, mechs).await;
        assert_eq!(r.ok(), Some(expected));
        let text = String::from_utf8_lossy(&initial).into_owned();
        assert_eq!(
            text.starts_with("n,a="),
            expected == "OAUTHBEARER",
            "{text:?}"
        );
    }
    // Neither offered: a typed missing capability, nothing sent.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _server = tokio::spawn(fake_server_offering(listener, true, "good", "AUTH=PLAIN"));
    let cfg = ImapConfig::new(
        "127.0.0.1",
        port,
        Security::Plain,
        "me@example.test",
        Auth::Bearer("good".into()),
    );
    let err = limit(10, Connection::connect(&cfg))
        .await
        .expect_err("no OAuth mechanism offered");
    assert!(
        matches!(&err, mailsync_imap_sync::Error::MissingCapability { capability } if capability.contains("OAUTHBEARER")),
        "{err:?}"
    );
}
