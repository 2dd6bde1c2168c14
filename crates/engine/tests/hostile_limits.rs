//! Limits on what a server sends (issue 19), against servers inside the test: a JMAP account
//! listing more mailboxes than the limit, API responses of 2 GB (declared or streamed), and
//! a body that never completes each end in a one-line typed error, quickly, with nothing
//! written and the process's peak memory under 100 MiB; a silent server, a body that stops
//! and a body that trickles each end as a network failure within 60 s.

mod common;
mod fake_jmap;

use std::time::{Duration, Instant};

use mailsync_engine::classify::{Disposition, classify};
use mailsync_engine::{Engine, EngineError};
use mailsync_store::testing::TempDb;
use mailsync_store::{emails, mailboxes};
use mailsync_testkit::{HostileServer, Script, Then};

use common::{E, jmap_account};
use fake_jmap::FakeJmap;

/// One sync of a fresh account at `url`: its error, after checking nothing was written.
async fn sync_fails(url: String) -> Result<(EngineError, Duration), E> {
    let db = TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let account = mailsync_store::accounts::create(db.store.conn(), jmap_account("hostile", url))
        .await?
        .id;
    let t = Instant::now();
    let res = engine.sync_once(account).await;
    let took = t.elapsed();
    assert_eq!(emails::count(db.store.conn(), account).await?, 0);
    assert!(mailboxes::list(db.store.conn(), account).await?.is_empty());
    match res {
        Ok(c) => Err(format!("the sync succeeded: {c:?}").into()),
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "one line: {e}");
            Ok((e, took))
        }
    }
}

fn session(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}");
    serde_json::json!({
        "capabilities": {
            "urn:ietf:params:jmap:core": {
                "maxSizeUpload": 50_000_000, "maxConcurrentUpload": 4,
                "maxSizeRequest": 10_000_000, "maxConcurrentRequests": 4,
                "maxCallsInRequest": 16, "maxObjectsInGet": 500, "maxObjectsInSet": 500,
                "collationAlgorithms": []
            },
            "urn:ietf:params:jmap:mail": {}
        },
        "accounts": {"a1": {
            "name": "x", "isPersonal": true, "isReadOnly": false,
            "accountCapabilities": {"urn:ietf:params:jmap:mail": {
                "maxMailboxesPerEmail": null, "maxMailboxDepth": null,
                "maxSizeMailboxName": 100, "maxSizeAttachmentsPerEmail": 50_000_000,
                "emailQuerySortOptions": ["receivedAt"], "mayCreateTopLevelMailbox": true
            }}
        }},
        "primaryAccounts": {"urn:ietf:params:jmap:mail": "a1"},
        "username": "x",
        "apiUrl": format!("{url}/api/"),
        "downloadUrl": format!("{url}/d/{{accountId}}/{{blobId}}/{{name}}?type={{type}}"),
        "uploadUrl": format!("{url}/u/{{accountId}}/"),
        "eventSourceUrl": format!("{url}/es/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"),
        "state": "s1"
    })
    .to_string()
}

fn http(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{head}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// A JMAP server with a valid Session whose API answers with `api` and then `then`.
fn jmap_server(api: impl Fn() -> Vec<u8> + Send + 'static, then: Then) -> Result<HostileServer, E> {
    Ok(HostileServer::start_with(move |port| {
        let s = session(port);
        Script::replies(
            http(&format!("Content-Length: {}\r\n", s.len()), s.as_bytes()),
            vec![api()],
            then,
        )
    })?)
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Every case in one test, so the peak memory measured is theirs alone (test servers
/// included: they run in this process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_jmap_servers_end_in_typed_errors_in_bounded_time_and_memory() -> Result<(), E> {
    // A 2 GB body, declared: refused before reading it.
    let server = jmap_server(
        || http("Content-Length: 2000000000\r\n", b"{\"methodResponses\":["),
        Then::Flood { byte: b' ' },
    )?;
    let url = format!("http://127.0.0.1:{}/jmap/", server.port());
    let (err, took) = sync_fails(url).await?;
    eprintln!("2 GB declared: {:?} in {took:?}: {err}", classify(&err));
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A 2 GB body, streamed without a length: cut at the limit (64 MiB), never held whole.
    let server = jmap_server(
        || http("Connection: close\r\n", b"{\"methodResponses\":["),
        Then::Flood { byte: b' ' },
    )?;
    let url = format!("http://127.0.0.1:{}/jmap/", server.port());
    let (err, took) = sync_fails(url).await?;
    eprintln!("2 GB streamed: {:?} in {took:?}: {err}", classify(&err));
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    assert!(took < Duration::from_secs(60), "{took:?}");

    let peak = peak_rss_mib().unwrap_or(0);
    eprintln!("peak RSS: {peak} MiB");
    assert!(peak <= 100, "peak RSS {peak} MiB");

    // 10,001 mailboxes (the fake follows the spec otherwise). After the memory check: the
    // fake runs in this process and holds them.
    let fake = FakeJmap::start().await?;
    {
        let mut w = fake.world();
        for i in 0..=mailsync_engine::jmap_sync::MAX_MAILBOXES {
            w.add_mailbox(&format!("box{i}"), None, None);
        }
    }
    let (err, took) = sync_fails(fake.session_url()).await?;
    eprintln!("10,001 mailboxes: {:?} in {took:?}: {err}", classify(&err));
    assert!(
        matches!(
            &err,
            EngineError::JmapSync(mailsync_engine::jmap_sync::Error::TooManyMailboxes { .. })
        ),
        "{err:?}"
    );
    assert_eq!(classify(&err), Disposition::Reject);

    // No useful progress, three ways, at once (each waits out the default stall window): a
    // session request never answered, an API body that stops, an API body that trickles a
    // byte every 200 ms. Each ends as a network failure within 60 s.
    let silent = HostileServer::start(Script::send(Vec::new()).then(Then::Stall))?;
    let stopped = jmap_server(
        || http("Content-Length: 100000\r\n", b"{\"methodResponses\":["),
        Then::Stall,
    )?;
    let trickle = jmap_server(
        || http("Content-Length: 100000\r\n", b"{\"methodResponses\":["),
        Then::Trickle {
            byte: b' ',
            every: Duration::from_millis(200),
        },
    )?;
    let url = |s: &HostileServer| format!("http://127.0.0.1:{}/jmap/", s.port());
    let (a, b, c) = tokio::join!(
        sync_fails(url(&silent)),
        sync_fails(url(&stopped)),
        sync_fails(url(&trickle))
    );
    for (name, r) in [("silent", a), ("stopped body", b), ("trickled body", c)] {
        let (err, took) = r?;
        eprintln!("{name}: {:?} in {took:?}: {err}", classify(&err));
        assert_eq!(classify(&err), Disposition::Offline, "{name}: {err}");
        assert!(took < Duration::from_secs(60), "{name}: {took:?}");
    }
    Ok(())
}
