//! Sending through the real SMTP sink started by `cargo xtask servers up`: plaintext to loopback
//! with AUTH, STARTTLS verified against the test CA, Bcc only in the envelope, typed failures.

use std::time::Duration;

use mailsync_engine::compose::{self, Draft, DraftAttachment};
use mailsync_engine::secret::Secret;
use mailsync_engine::smtp::{self, SmtpConfig, SmtpError};
use mailsync_store::accounts::Endpoint;
use mailsync_store::{Address, Security};
use mailsync_testkit::{Servers, unique_name, wait_for_sink_message};

fn addr(e: &str) -> Address {
    Address {
        name: None,
        email: e.into(),
    }
}

fn draft(tag: &str) -> Draft {
    Draft {
        message_id: format!("{}@mailsync.test", unique_name(tag)),
        from: Address {
            name: Some("Test Sender".into()),
            email: "sender@example.test".into(),
        },
        to: vec![addr("to@example.test")],
        cc: vec![addr("cc@example.test")],
        bcc: vec![addr("hidden@example.test")],
        subject: format!("smtp test {tag}"),
        text: "body text".into(),
        html: Some("<p>body</p>".into()),
        attachments: vec![DraftAttachment {
            file_name: "x.txt".into(),
            mime_type: "text/plain".into(),
            content: b"attached".to_vec(),
        }],
        ..Default::default()
    }
}

fn config(servers: &Servers, security: Security, ca: bool) -> SmtpConfig {
    SmtpConfig {
        endpoint: Endpoint {
            host: if security == Security::Plain {
                "127.0.0.1".into()
            } else {
                "localhost".into()
            },
            port: servers.smtp_port(),
            security,
        },
        username: Some("sender".into()),
        password: Some(Secret::new("any")),
        bearer: false,
        ca_pem: ca.then(|| servers.tls_ca_pem().expect("CA pem")),
        allow_plaintext: false,
    }
}

async fn send_and_check(security: Security) {
    let servers = Servers::load().expect("test servers: run `cargo xtask servers up`");
    let d = draft(&format!("{security}"));
    let built = compose::build(&d).expect("build");
    smtp::send(&config(&servers, security, true), &built)
        .await
        .expect("send");
    let want = d.message_id.clone();
    let msg = wait_for_sink_message(servers.smtp_sink_dir(), Duration::from_secs(10), |m| {
        m.message_id().as_deref() == Some(want.as_str())
    })
    .expect("message reached the sink");
    assert_eq!(msg.mail_from, "sender@example.test");
    let mut rcpt = msg.rcpt_tos.clone();
    rcpt.sort();
    assert_eq!(
        rcpt,
        vec!["cc@example.test", "hidden@example.test", "to@example.test"]
    );
    assert!(msg.header("Bcc").is_none(), "no Bcc header on the wire");
    assert_eq!(msg.auth_user.as_deref(), Some("sender"));
    assert!(
        msg.header("Subject")
            .is_some_and(|s| s.contains("smtp test"))
    );
}

#[tokio::test]
async fn plaintext_loopback_with_auth_reaches_the_sink() {
    send_and_check(Security::Plain).await;
}

#[tokio::test]
async fn starttls_verified_against_the_test_ca_reaches_the_sink() {
    send_and_check(Security::Starttls).await;
}

#[tokio::test]
async fn starttls_without_the_ca_fails_certificate_verification() {
    let servers = Servers::load().expect("test servers");
    let built = compose::build(&draft("noca")).expect("build");
    let err = smtp::send(&config(&servers, Security::Starttls, false), &built).await;
    assert!(matches!(err, Err(SmtpError::Tls { .. })), "{err:?}");
}

#[tokio::test]
async fn unreachable_server_is_a_connect_error() {
    let built = compose::build(&draft("down")).expect("build");
    let cfg = SmtpConfig {
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
            security: Security::Plain,
        },
        username: None,
        password: None,
        bearer: false,
        ca_pem: None,
        allow_plaintext: false,
    };
    let err = smtp::send(&cfg, &built).await;
    assert!(matches!(err, Err(SmtpError::Connect { .. })), "{err:?}");
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
}

#[tokio::test]
async fn plaintext_to_a_remote_host_is_refused_without_opt_in() {
    let built = compose::build(&draft("remote")).expect("build");
    let cfg = SmtpConfig {
        endpoint: Endpoint {
            host: "smtp.example.com".into(),
            port: 25,
            security: Security::Plain,
        },
        username: None,
        password: None,
        bearer: false,
        ca_pem: None,
        allow_plaintext: false,
    };
    let err = smtp::send(&cfg, &built).await;
    assert!(matches!(err, Err(SmtpError::Tls { .. })), "{err:?}");
}
