//! The JMAP driver's push path. Cyrus 3.6 in Debian has no EventSource (it answers 204), so
//! this test runs a small spec-following JMAP Session + EventSource endpoint (RFC 8620 §7.3)
//! on loopback: the driver's wait returns when a `StateChange` arrives, and falls back to
//! polling when the endpoint answers 204 like Cyrus.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailsync_engine::jmap_driver::JmapDriver;
use mailsync_engine::worker::AccountDriver;
use mailsync_outbox::Outbox;
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, BodyPolicy, SecretRef};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

type R = Result<(), Box<dyn std::error::Error>>;

fn session(port: u16) -> String {
    serde_json::json!({
        "capabilities": {
            "urn:ietf:params:jmap:core": {"maxSizeUpload": 1000000, "maxConcurrentUpload": 2,
                "maxSizeRequest": 1000000, "maxConcurrentRequests": 2, "maxCallsInRequest": 8,
                "maxObjectsInGet": 100, "maxObjectsInSet": 100, "collationAlgorithms": []},
            "urn:ietf:params:jmap:mail": {}
        },
        "accounts": {"u1": {"name": "u1", "isPersonal": true, "isReadOnly": false,
                            "accountCapabilities": {"urn:ietf:params:jmap:mail": {}}}},
        "primaryAccounts": {"urn:ietf:params:jmap:mail": "u1"},
        "username": "u1",
        "apiUrl": format!("http://127.0.0.1:{port}/api"),
        "downloadUrl": "/download/{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": "/upload/{accountId}",
        "eventSourceUrl": "/events?types={types}&closeafter={closeafter}&ping={ping}",
        "state": "s1"
    })
    .to_string()
}

/// Serves the Session, and on `/events` either an SSE stream (a ping, then a StateChange after
/// `delay`) or 204 like Cyrus. Counts EventSource connections.
async fn serve(listener: TcpListener, push: bool, delay: Duration, hits: Arc<AtomicUsize>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let hits = hits.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            if r.read_line(&mut line).await.is_err() {
                return;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            loop {
                let mut h = String::new();
                match r.read_line(&mut h).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if h == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            if target.starts_with("/events") {
                hits.fetch_add(1, Ordering::SeqCst);
                if !push {
                    let _ = w
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let _ = w
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
                    .await;
                let _ = w
                    .write_all(b"event: ping\ndata: {\"interval\":30}\n\n")
                    .await;
                tokio::time::sleep(delay).await;
                let ev = "event: state\nid: e1\ndata: {\"@type\":\"StateChange\",\"changed\":{\"u1\":{\"Email\":\"s2\"}}}\n\n";
                let _ = w.write_all(ev.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            } else {
                let body = session(port);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = w.write_all(resp.as_bytes()).await;
            }
        });
    }
}

async fn driver(
    db: &TempDb,
    port: u16,
    name: &str,
) -> Result<JmapDriver, Box<dyn std::error::Error>> {
    let account = accounts::create(
        db.store.conn(),
        NewAccount {
            name: name.into(),
            kind: AccountKind::Jmap,
            email: "u1@example.test".into(),
            display_name: None,
            username: "u1".into(),
            secret_ref: SecretRef::Command("printf %s pw".into()),
            imap: None,
            smtp: None,
            jmap_session_url: Some(format!("http://127.0.0.1:{port}/jmap")),
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::None,
        },
    )
    .await?;
    Ok(JmapDriver::new(
        db.store.clone(),
        Arc::new(Outbox::new(db.store.clone())),
        account,
    )
    .with_poll_interval(Duration::from_millis(300)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_state_change_ends_the_wait() -> R {
    let db = TempDb::sqlite().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    tokio::spawn(serve(
        listener,
        true,
        Duration::from_millis(700),
        hits.clone(),
    ));
    let mut d = driver(&db, port, "push").await?;
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "returned on the StateChange, not before: {waited:?}"
    );
    assert!(!d.push_unavailable());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_push_falls_back_to_polling() -> R {
    let db = TempDb::sqlite().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    tokio::spawn(serve(listener, false, Duration::ZERO, hits.clone()));
    let mut d = driver(&db, port, "poll").await?;
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    assert!(d.push_unavailable(), "204 means no push");
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "waited one poll interval"
    );
    // Later waits poll without asking for push again.
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    db.cleanup().await?;
    Ok(())
}
