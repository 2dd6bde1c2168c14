//! Behaviour against scripted HTTP servers: the EventSource push stream (a spec-following
//! SSE endpoint, since Cyrus 3.6 has none), non-JMAP answers, request-level errors, TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mailsync_jmap_client::*;
use serde_json::json;

use crate::fake::{FakeServer, Reply, session_json};
use crate::servers::within;

fn sse(chunks: &[(u64, &str)], hang: bool) -> Reply {
    Reply::Stream {
        status: 200,
        headers: vec![
            ("Content-Type", "text/event-stream".into()),
            ("Cache-Control", "no-cache".into()),
        ],
        chunks: chunks
            .iter()
            .map(|(ms, s)| (Duration::from_millis(*ms), s.as_bytes().to_vec()))
            .collect(),
        hang,
    }
}

fn change(state: &str) -> String {
    json!({"@type": "StateChange", "changed": {"u1": {"Email": state}}}).to_string()
}

async fn connect(server: &FakeServer) -> Client {
    Client::builder()
        .credentials(Credentials::basic("u1", "pw"))
        .connect(&server.url("/session"))
        .await
        .unwrap()
}

#[tokio::test]
async fn push_stream_parses_events_detects_dead_streams_and_resumes_with_last_event_id() {
    within(60, async {
        let first = format!("retry: 50\n\n: comment\nevent: state\nid: 1\ndata: {}\n\nevent: ping\ndata: {{\"interval\":1}}\n\n", change("s1"));
        let second = format!("event: state\r\nid: 2\r\ndata: {}\r\n\r\n", change("s2"));
        let server = FakeServer::start(move |req, _| {
            if req.target == "/session" {
                return Reply::json(200, &session_json(true, 1000, "0"));
            }
            match req.header("Last-Event-ID") {
                // First connection: two events, then a clean close.
                None => sse(&[(0, &first[..40]), (20, &first[40..])], false),
                // Resumed after id 1: one event, then silence (no pings): a dead stream.
                Some("1") => sse(&[(0, &second)], true),
                // Resumed after id 2: the server no longer offers push.
                _ => Reply::Full { status: 204, headers: vec![], body: vec![] },
            }
        })
        .await;
        let client = connect(&server).await;
        let config = PushConfig::default()
            .types(["Email", "Mailbox"])
            .ping_interval(Duration::from_secs(1))
            .missed_pings(1)
            .backoff(Duration::from_millis(20), Duration::from_millis(100));
        let mut stream = client.event_source(config).unwrap();
        let mut seen = Vec::new();
        let started = Instant::now();
        let mut dead_detected_after = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(PushEvent::Connected) => seen.push("connected".to_owned()),
                Ok(PushEvent::StateChange(c)) => {
                    let state = c.state_of(&AccountId::new("u1"), "Email").unwrap().to_string();
                    seen.push(format!("state {state}"));
                }
                Ok(PushEvent::Disconnected { error, retry_in }) => {
                    assert!(retry_in <= Duration::from_millis(100), "{retry_in:?}");
                    match &error {
                        Error::Transport(t) if t.kind() == TransportErrorKind::Timeout => {
                            dead_detected_after = Some(started.elapsed());
                            seen.push("dead".into());
                        }
                        Error::Transport(t) if t.kind() == TransportErrorKind::Body => seen.push("closed".into()),
                        other => panic!("unexpected disconnect: {other:?}"),
                    }
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::PushUnavailable { reason: PushUnavailableReason::NoContent }) => seen.push("unavailable".into()),
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(
            seen,
            ["connected", "state s1", "closed", "connected", "state s2", "dead", "unavailable"]
        );
        // ping 1 s, one missed ping allowed: declared dead after ~2 s of silence.
        let dead = dead_detected_after.unwrap();
        assert!(dead >= Duration::from_secs(2) && dead < Duration::from_secs(10), "{dead:?}");

        let reqs = server.requests();
        let es: Vec<_> = reqs.iter().filter(|r| r.target.starts_with("/events")).collect();
        assert_eq!(es.len(), 3);
        assert_eq!(es[0].target, "/events?types=Email%2CMailbox&closeafter=no&ping=1");
        assert_eq!(es[0].header("Accept"), Some("text/event-stream"));
        assert!(es[0].header("Authorization").unwrap().starts_with("Basic "));
        assert_eq!(es[1].header("Last-Event-ID"), Some("1"));
        assert_eq!(es[2].header("Last-Event-ID"), Some("2"));
    })
    .await;
}

#[tokio::test]
async fn push_transient_errors_back_off_and_auth_failure_is_final() {
    within(30, async {
        let server = FakeServer::start(|req, _| {
            if req.target == "/session" {
                return Reply::json(200, &session_json(true, 1000, "0"));
            }
            Reply::json(503, &json!({"type": "about:blank"}))
        })
        .await;
        let client = connect(&server).await;
        let config =
            PushConfig::default().backoff(Duration::from_millis(10), Duration::from_millis(40));
        let mut stream = client.event_source(config).unwrap();
        for _ in 0..4 {
            match stream.next().await {
                Some(Ok(PushEvent::Disconnected { error, retry_in })) => {
                    assert_eq!(error.http_status(), Some(503));
                    assert!(retry_in <= Duration::from_millis(40));
                }
                other => panic!("{other:?}"),
            }
        }

        let server = FakeServer::start(|req, _| {
            if req.target == "/session" {
                return Reply::json(200, &session_json(true, 1000, "0"));
            }
            Reply::Full {
                status: 401,
                headers: vec![],
                body: vec![],
            }
        })
        .await;
        let client = connect(&server).await;
        let mut stream = client.event_source(PushConfig::default()).unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Err(Error::Unauthorized { .. }))
        ));
        assert!(stream.next().await.is_none());

        let server =
            FakeServer::start(|_, _| Reply::json(200, &session_json(false, 1000, "0"))).await;
        let client = connect(&server).await;
        assert!(matches!(
            client.event_source(PushConfig::default()),
            Err(Error::PushUnavailable {
                reason: PushUnavailableReason::NoEventSourceUrl
            })
        ));
    })
    .await;
}

#[tokio::test]
async fn not_jmap_answers_are_told_apart() {
    within(30, async {
        let server = FakeServer::start(|req, _| match req.target.as_str() {
            "/html" => Reply::Full {
                status: 200,
                headers: vec![("Content-Type", "text/html; charset=utf-8".into())],
                body: b"<!doctype html><title>Login</title>".to_vec(),
            },
            "/html-untyped" => Reply::Full {
                status: 200,
                headers: vec![],
                body: b"  <html></html>".to_vec(),
            },
            "/json" => Reply::json(200, &json!({"hello": "world"})),
            "/text" => Reply::Full {
                status: 200,
                headers: vec![("Content-Type", "text/plain".into())],
                body: b"OK".to_vec(),
            },
            "/gone" => Reply::Full {
                status: 410,
                headers: vec![],
                body: vec![],
            },
            _ => Reply::Full {
                status: 404,
                headers: vec![],
                body: vec![],
            },
        })
        .await;
        let attempt = |path: &'static str| {
            let url = server.url(path);
            async move { Client::builder().connect(&url).await.unwrap_err() }
        };
        assert!(matches!(
            attempt("/html").await,
            Error::NotJmap {
                reason: NotJmapReason::HtmlPage,
                ..
            }
        ));
        assert!(matches!(
            attempt("/html-untyped").await,
            Error::NotJmap {
                reason: NotJmapReason::HtmlPage,
                ..
            }
        ));
        assert!(matches!(
            attempt("/json").await,
            Error::NotJmap {
                reason: NotJmapReason::InvalidSession(_),
                ..
            }
        ));
        match attempt("/text").await {
            Error::NotJmap {
                reason: NotJmapReason::NotJson { content_type },
                source,
                ..
            } => {
                assert_eq!(content_type.as_deref(), Some("text/plain"));
                assert!(source.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            attempt("/gone").await,
            Error::NotJmap {
                reason: NotJmapReason::Status(410),
                ..
            }
        ));
        assert!(matches!(
            attempt("/missing").await,
            Error::NotJmap {
                reason: NotJmapReason::Status(404),
                ..
            }
        ));
    })
    .await;
}

#[tokio::test]
async fn request_level_errors_carry_status_problem_and_retry_after() {
    within(30, async {
        let server = FakeServer::start(|req, i| match (req.target.as_str(), i) {
            ("/session", _) => Reply::json(200, &session_json(false, 10, "0")),
            ("/api", 1) => Reply::Full {
                status: 429,
                headers: vec![
                    ("Content-Type", "application/problem+json".into()),
                    ("Retry-After", "7".into()),
                ],
                body: serde_json::to_vec(&json!({"type": "urn:ietf:params:jmap:error:limit", "limit": "maxConcurrentRequests", "status": 429})).unwrap(),
            },
            ("/api", 2) => Reply::Full {
                status: 500,
                headers: vec![("Content-Type", "text/html".into())],
                body: b"<h1>oops</h1>".to_vec(),
            },
            ("/api", 3) => Reply::json(200, &json!({"not": "a response"})),
            ("/api", 4) => Reply::Full { status: 200, headers: vec![], body: b"\xff\xfe garbage".to_vec() },
            _ => Reply::json(400, &json!({"type": "urn:ietf:params:jmap:error:notRequest", "detail": "?"})),
        })
        .await;
        let client = connect(&server).await;
        let account = client.mail_account_id().unwrap();
        let call = || client.call(Get::<Mailbox>::new(&account));

        let e = call().await.unwrap_err();
        match &e {
            Error::Http { status: 429, problem: Some(p), retry_after } => {
                assert_eq!(p.problem_type, ProblemType::Limit);
                assert_eq!(p.limit.as_deref(), Some("maxConcurrentRequests"));
                assert_eq!(*retry_after, Some(Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(matches!(call().await.unwrap_err(), Error::Http { status: 500, problem: None, retry_after: None }));
        assert!(matches!(call().await.unwrap_err(), Error::Decode { .. }));
        assert!(matches!(call().await.unwrap_err(), Error::Decode { .. }));
        match call().await.unwrap_err() {
            Error::Http { status: 400, problem: Some(p), .. } => assert_eq!(p.problem_type, ProblemType::NotRequest),
            other => panic!("{other:?}"),
        }

        // Uploads over maxSizeUpload (10 bytes here) are refused before or while sending.
        let before = server.requests().len();
        let e = client.upload_bytes(&account, "text/plain", vec![0u8; 20]).await.unwrap_err();
        assert!(matches!(e, Error::UploadTooLarge { size: 20, max: 10 }), "{e:?}");
        assert_eq!(server.requests().len(), before, "nothing was sent");
        let e = client
            .upload(&account, "text/plain", std::io::Cursor::new(vec![0u8; 100_000]), None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::UploadTooLarge { max: 10, .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn session_state_change_refreshes_the_session_and_redirects_to_plain_http_are_refused() {
    within(30, async {
        let server = FakeServer::start(|req, _| match req.target.as_str() {
            "/session" => Reply::json(200, &session_json(false, 1000, "0")),
            "/api" => Reply::json(
                200,
                &json!({"methodResponses": [["Mailbox/get", {"accountId": "u1", "state": "1", "list": [], "notFound": []}, "c0"]],
                        "sessionState": "changed"}),
            ),
            "/evil" => Reply::Full {
                status: 302,
                headers: vec![("Location", "http://mail.example.com/.well-known/jmap".into())],
                body: vec![],
            },
            _ => Reply::Full { status: 404, headers: vec![], body: vec![] },
        })
        .await;
        let client = connect(&server).await;
        let account = client.mail_account_id().unwrap();
        let r = client.call(Get::<Mailbox>::new(&account)).await.unwrap();
        assert!(r.list.is_empty());
        let api: Vec<_> = server.requests().into_iter().filter(|r| r.target == "/api").collect();
        assert_eq!(api[0].method, "POST");
        assert_eq!(api[0].header("Content-Type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&api[0].body).unwrap();
        assert_eq!(body["using"], json!(["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]));
        assert_eq!(body["methodCalls"][0][0], "Mailbox/get");
        let sessions = server.requests().iter().filter(|r| r.target == "/session").count();
        assert_eq!(sessions, 2, "a changed sessionState triggers a session refetch");

        let e = Client::builder().connect(&server.url("/evil")).await.unwrap_err();
        assert!(matches!(&e, Error::InsecureUrl { url } if url.starts_with("http://mail.example.com")), "{e:?}");
    })
    .await;
}

fn tls_server_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/");
    let certs = CertificateDer::pem_file_iter(format!("{dir}leaf.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}leaf.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn https_needs_a_trusted_certificate_and_extra_roots_work() {
    within(30, async {
        let server =
            FakeServer::start_tls(tls_server_config(), |req, _| match req.target.as_str() {
                "/session" => Reply::json(200, &session_json(false, 1000, "0")),
                _ => Reply::Full {
                    status: 404,
                    headers: vec![],
                    body: vec![],
                },
            })
            .await;
        let url = format!("https://localhost:{}/session", server.addr.port());
        let e = Client::builder().connect(&url).await.unwrap_err();
        match &e {
            Error::Transport(t) => assert_eq!(t.kind(), TransportErrorKind::Tls, "{e:?}"),
            other => panic!("{other:?}"),
        }
        let ca = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tls/ca.pem"
        ))
        .unwrap();
        let client = Client::builder()
            .add_root_certificates_pem(&ca)
            .connect(&url)
            .await
            .unwrap();
        assert_eq!(
            client.session().api_url().as_str(),
            format!("https://localhost:{}/api", server.addr.port())
        );
    })
    .await;
}

#[tokio::test]
async fn changes_loop_stops_when_the_server_state_does_not_advance() {
    within(30, async {
        let server = FakeServer::start(|req, _| match req.target.as_str() {
            "/session" => Reply::json(200, &session_json(false, 1000, "0")),
            _ => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let since = body["methodCalls"][0][1]["sinceState"].as_str().unwrap().to_owned();
                // s0 -> s1 with more changes, then stuck at s1 while still claiming more.
                let new = "s1";
                Reply::json(
                    200,
                    &json!({"methodResponses": [["Email/changes", {"accountId": "u1", "oldState": since, "newState": new,
                        "hasMoreChanges": true, "created": ["M1"], "updated": [], "destroyed": []}, "c0"]], "sessionState": "0"}),
                )
            }
        })
        .await;
        let client = Client::builder()
            .credentials(Credentials::bearer("tok-123"))
            .connect(&server.url("/session"))
            .await
            .unwrap();
        let account = client.mail_account_id().unwrap();
        let mut pager = ChangesPager::<Email>::new(&client, &account, &State::new("s0"));
        let first = pager.next_page().await.unwrap().unwrap();
        assert_eq!(first.changes.created, [EmailId::new("M1")]);
        assert_eq!(pager.state(), &State::new("s1"));
        match pager.next_page().await {
            Err(Error::StateNotAdvancing { method, state }) => {
                assert_eq!(method, "Email/changes");
                assert_eq!(state, State::new("s1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(server.requests().iter().all(|r| r.header("Authorization") == Some("Bearer tok-123")));
    })
    .await;
}

/// A server answering an API call with an endless body (here 64 MiB in 64 KiB chunks, no
/// Content-Length, then hanging): the client stops at its limit with a typed error instead of
/// holding the body in memory; a declared Content-Length over the limit is refused at once.
#[tokio::test]
async fn an_oversized_api_response_is_refused_without_being_read() {
    within(60, async {
        let server = FakeServer::start(|req, _| {
            if req.target == "/session" {
                return Reply::json(200, &session_json(false, 1000, "0"));
            }
            Reply::Stream {
                status: 200,
                headers: vec![("Content-Type", "application/json".into())],
                chunks: (0..1024)
                    .map(|_| (Duration::ZERO, vec![b' '; 64 * 1024]))
                    .collect(),
                hang: true,
            }
        })
        .await;
        let client = Client::builder()
            .credentials(Credentials::basic("u1", "pw"))
            .max_response_size(1 << 20)
            .connect(&server.url("/session"))
            .await
            .unwrap();
        let acc = client.mail_account_id().unwrap();
        let t = Instant::now();
        let err = client
            .call(Get::<Mailbox>::new(&acc))
            .await
            .expect_err("too large");
        assert!(
            matches!(err, Error::ResponseTooLarge { limit } if limit == 1 << 20),
            "{err:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

        let server = FakeServer::start(|req, _| {
            if req.target == "/session" {
                return Reply::json(200, &session_json(false, 1000, "0"));
            }
            Reply::Full {
                status: 200,
                headers: vec![("Content-Type", "application/json".into())],
                body: vec![b' '; 2 << 20],
            }
        })
        .await;
        let client = Client::builder()
            .credentials(Credentials::basic("u1", "pw"))
            .max_response_size(1 << 20)
            .connect(&server.url("/session"))
            .await
            .unwrap();
        let err = client
            .call(Get::<Mailbox>::new(&client.mail_account_id().unwrap()))
            .await
            .expect_err("too large");
        assert!(matches!(err, Error::ResponseTooLarge { .. }), "{err:?}");
    })
    .await;
}

/// A connection cut in the middle of the response headers is the same fact as a cut in the
/// middle of the body (the network failed), not "invalid HTTP": one classification, one exit
/// code.
#[tokio::test]
async fn a_cut_mid_headers_is_a_transfer_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(30, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: applic")
                    .await;
                drop(sock);
            }
        });
        let err = Client::builder()
            .credentials(Credentials::basic("u1", "pw"))
            .connect(&format!("http://127.0.0.1:{port}/session"))
            .await
            .expect_err("cut");
        match &err {
            Error::Transport(t) => assert_eq!(t.kind(), TransportErrorKind::Body, "{err:?}"),
            other => panic!("{other:?}"),
        }
        task.abort();
    })
    .await;
}
