//! JMAP sync against a spec-following server that is not Cyrus (the scripted [`fake_jmap`]):
//! the full listing sorts only by what RFC 8621 and the session allow; a stored state the server
//! rejects (`invalidArguments` on `/changes`) leads to one full listing of that type, never a
//! loop; every flush `Email/set` carries `ifInState` and a `stateMismatch` is resynced and
//! retried in the same cycle; a push reconnection triggers one sync; the default sender comes
//! from the server's identities and a refused send leaves no draft behind; an email whose id
//! is not one RFC 8620 allows (20,000 bytes) is left out and the sync into PostgreSQL completes.

mod fake_jmap;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_jmap::{FakeJmap, Sse};
use mailsync_engine::classify::{Disposition, StateRejection, classify};
use mailsync_engine::error::EngineError;
use mailsync_engine::jmap_driver::{self, JmapDriver};
use mailsync_engine::jmap_sync;
use mailsync_engine::worker::{AccountDriver, run_cycle};
use mailsync_jmap_client::MethodErrorType;
use mailsync_outbox::{Change, Outbox};
use mailsync_store::accounts::{self, Account, NewAccount};
use mailsync_store::sync_log;
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, BodyPolicy, SecretRef, emails};
use tokio_util::sync::CancellationToken;

type R = Result<(), Box<dyn std::error::Error>>;
type E = Box<dyn std::error::Error>;

async fn account(db: &TempDb, fake: &FakeJmap, name: &str) -> Result<Account, E> {
    Ok(accounts::create(
        db.store.conn(),
        NewAccount {
            name: name.into(),
            kind: AccountKind::Jmap,
            email: "u1@fake.test".into(),
            display_name: None,
            username: "u1".into(),
            secret_ref: SecretRef::Command("printf %s pw".into()),
            imap: None,
            smtp: None,
            jmap_session_url: Some(fake.session_url()),
            ca_file: None,
            allow_plaintext: false,
            body_policy: BodyPolicy::None,
        },
    )
    .await?)
}

/// A mailbox with `n` emails, many sharing one `receivedAt` (ties across page boundaries).
fn seed(fake: &FakeJmap, n: usize) -> String {
    let mut w = fake.world();
    let inbox = w.add_mailbox("Inbox", None, Some("inbox"));
    w.add_mailbox("Archive", None, Some("archive"));
    for i in 0..n {
        let day = 1 + (i / 400) % 28;
        w.add_email(
            &inbox,
            &format!("2024-01-{day:02}T10:00:00Z"),
            &format!("m{i}"),
        );
    }
    inbox
}

async fn sync(db: &TempDb, acc: &Account) -> Result<jmap_sync::JmapCounts, EngineError> {
    let client = jmap_driver::connect(acc).await?;
    let jacc = client.mail_account_id()?;
    jmap_sync::sync_mailboxes(&client, &db.store, acc.id, &jacc).await?;
    Ok(jmap_sync::sync_emails(&client, &db.store, acc.id, &jacc, BodyPolicy::None).await?)
}

fn query_calls(fake: &FakeJmap) -> Vec<serde_json::Value> {
    fake.world()
        .calls
        .iter()
        .filter(|(n, _)| n == "Email/query")
        .map(|(_, a)| a.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_listing_sorts_only_by_spec_properties_and_misses_nothing() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    seed(&fake, 1234);
    let acc = account(&db, &fake, "sort").await?;
    let counts = sync(&db, &acc).await?;
    assert!(counts.full);
    assert_eq!(counts.added, 1234);
    assert_eq!(
        emails::remote_ids(db.store.conn(), acc.id).await?.len(),
        1234
    );
    let queries = query_calls(&fake);
    // Slow start (a network that cuts long responses still lets pages through): 50, doubling.
    let limits: Vec<u64> = queries.iter().filter_map(|q| q["limit"].as_u64()).collect();
    assert_eq!(
        limits,
        [50, 100, 200, 400, 500],
        "pages of 50 doubling to 500"
    );
    for q in &queries {
        assert_eq!(
            q["sort"],
            serde_json::json!([{"property": "receivedAt", "isAscending": false}])
        );
    }

    // A server whose emailQuerySortOptions lacks receivedAt gets no sort at all.
    let fake2 = FakeJmap::start().await?;
    seed(&fake2, 30);
    fake2.world().sort_options = vec!["size".into()];
    let acc2 = account(&db, &fake2, "nosort").await?;
    assert_eq!(sync(&db, &acc2).await?.added, 30);
    assert!(query_calls(&fake2).iter().all(|q| q.get("sort").is_none()));
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_state_leads_to_one_full_listing_of_that_type() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    let inbox = seed(&fake, 20);
    let acc = account(&db, &fake, "rejected").await?;
    sync(&db, &acc).await?;
    // The server forgets every state it gave so far (a rebuilt index), then mail arrives.
    {
        let mut w = fake.world();
        w.add_email(&inbox, "2024-02-01T10:00:00Z", "new");
        w.add_mailbox("Later", None, None);
        w.forget_email_below = w.email_state;
        w.forget_mailbox_below = w.mailbox_state;
        w.calls.clear();
    }
    let counts = sync(&db, &acc).await?;
    assert!(counts.full, "listed again");
    assert_eq!(
        counts.email_state_rejected,
        Some(StateRejection::Method(MethodErrorType::InvalidArguments))
    );
    assert_eq!(counts.added, 1);
    assert_eq!(emails::remote_ids(db.store.conn(), acc.id).await?.len(), 21);
    let names = fake.world().call_names();
    assert_eq!(names.iter().filter(|n| *n == "Email/query").count(), 1);
    assert_eq!(names.iter().filter(|n| *n == "Mailbox/get").count(), 1);
    assert_eq!(
        mailsync_store::mailboxes::list(db.store.conn(), acc.id)
            .await?
            .len(),
        3
    );
    // The next sync starts from the fresh states: no listing.
    fake.world().calls.clear();
    let counts = sync(&db, &acc).await?;
    assert!(!counts.full);
    assert!(!fake.world().call_names().iter().any(|n| n == "Email/query"));
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_rejecting_its_own_fresh_state_fails_the_cycle_instead_of_looping() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    seed(&fake, 5);
    let acc = account(&db, &fake, "broken").await?;
    sync(&db, &acc).await?;
    fake.world().forget_email_below = u64::MAX;
    fake.world().forget_mailbox_below = u64::MAX;
    fake.world().calls.clear();
    let mut d = JmapDriver::new(
        db.store.clone(),
        Arc::new(Outbox::new(db.store.clone())),
        acc.clone(),
    );
    let (events, _) = tokio::sync::broadcast::channel(16);
    let err = run_cycle(
        &db.store,
        acc.id,
        &mut d,
        &CancellationToken::new(),
        &events,
    )
    .await
    .expect_err("the cycle fails");
    assert!(
        matches!(
            err,
            EngineError::JmapSync(jmap_sync::Error::StateRejectedAgain {
                data_type: "Mailbox",
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(classify(&err), Disposition::Reject, "no resync loop");
    let names = fake.world().call_names();
    assert_eq!(
        names.iter().filter(|n| *n == "Mailbox/get").count(),
        1,
        "listed once: {names:?}"
    );
    let log = sync_log::list(db.store.conn(), Some(acc.id), 10).await?;
    let last = &log[0];
    assert!(
        last.error
            .as_deref()
            .unwrap_or("")
            .contains("rejects its own fresh Mailbox state"),
        "{last:?}"
    );
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_is_guarded_by_if_in_state_and_retried_after_a_mismatch() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    seed(&fake, 3);
    let acc = account(&db, &fake, "guard").await?;
    let outbox = Arc::new(Outbox::new(db.store.clone()));
    let mut d = JmapDriver::new(db.store.clone(), outbox.clone(), acc.clone());
    let cancel = CancellationToken::new();
    d.cycle(&cancel).await?;
    let (ours, theirs) = {
        let w = fake.world();
        (w.order[0].clone(), w.order[1].clone())
    };
    let local = emails::find_by_remote_id(db.store.conn(), acc.id, &ours)
        .await?
        .ok_or("synced")?;
    outbox
        .enqueue(acc.id, Change::flagged(local.id, true))
        .await?;
    // Another client changes an email between our sync and our flush.
    let synced_state = {
        let mut w = fake.world();
        let s = format!("e{}", w.email_state);
        w.set_keyword(&theirs, "$seen", true);
        w.calls.clear();
        s
    };
    let counts = d.cycle(&cancel).await?;
    assert_eq!(counts.changes_flushed, 1);
    let (sets, flagged, seen) = {
        let w = fake.world();
        let sets: Vec<serde_json::Value> = w
            .calls
            .iter()
            .filter(|(n, _)| n == "Email/set")
            .map(|(_, a)| a.clone())
            .collect();
        (
            sets,
            w.emails[&ours].keywords.get("$flagged").copied(),
            w.emails[&theirs].keywords.get("$seen").copied(),
        )
    };
    assert_eq!(sets.len(), 2, "refused once, then retried: {sets:?}");
    assert_eq!(sets[0]["ifInState"], serde_json::json!(synced_state));
    assert_ne!(sets[1]["ifInState"], sets[0]["ifInState"]);
    assert!(sets[1]["ifInState"].is_string());
    assert_eq!(flagged, Some(true), "ours landed");
    assert_eq!(seen, Some(true), "theirs kept");
    assert!(outbox.pending(acc.id).await?.is_empty());
    let theirs_local = emails::find_by_remote_id(db.store.conn(), acc.id, &theirs)
        .await?
        .ok_or("synced")?;
    assert!(theirs_local.flags.seen);
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reconnection_triggers_one_sync() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    seed(&fake, 2);
    // First connection: a ping counted in milliseconds, then the stream drops; the second
    // connection only pings. No StateChange is ever sent: what changed meanwhile is missed.
    fake.world().sse.push_back(vec![
        Sse::Send("event: ping\ndata: {\"interval\":30000}\n\n".into()),
        Sse::Sleep(Duration::from_millis(300)),
        Sse::Close,
    ]);
    let acc = account(&db, &fake, "push").await?;
    let mut d = JmapDriver::new(
        db.store.clone(),
        Arc::new(Outbox::new(db.store.clone())),
        acc.clone(),
    );
    d.cycle(&CancellationToken::new()).await?;
    // Delivered while the stream is (about to be) down: no StateChange will ever tell.
    let missed = {
        let mut w = fake.world();
        let inbox = w.mailboxes.keys().next().cloned().ok_or("inbox")?;
        w.add_email(&inbox, "2024-05-01T10:00:00Z", "missed")
    };
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), d.wait_for_change()).await??;
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "not on the first connect"
    );
    assert_eq!(
        fake.world().sse_connections,
        2,
        "returned on the reconnection"
    );
    // The sync the reconnection asked for picks it up.
    let counts = d.cycle(&CancellationToken::new()).await?;
    assert_eq!(counts.emails_added, 1);
    assert!(
        emails::find_by_remote_id(db.store.conn(), acc.id, &missed)
            .await?
            .is_some()
    );
    // The stream stays up: the next wait does not return on its own (only pings).
    assert!(
        tokio::time::timeout(Duration::from_millis(2500), d.wait_for_change())
            .await
            .is_err()
    );
    db.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_comes_from_identities_and_a_refused_send_leaves_no_draft() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    {
        let mut w = fake.world();
        w.add_mailbox("Inbox", None, Some("inbox"));
        w.add_mailbox("Drafts", None, Some("drafts"));
        w.add_mailbox("Sent", None, Some("sent"));
        w.identities
            .push(("i1".into(), "U One".into(), "u.one@real.example".into()));
    }
    // `--user u1` (no address): the identity's address, not u1@host.
    let sender = mailsync_engine::sender::jmap_default_sender(
        &fake.session_url(),
        "u1",
        mailsync_engine::oauth::Creds {
            name: "send",
            secret_ref: &SecretRef::Command("printf %s pw".into()),
            oauth: None,
            allow_plaintext: false,
            ca_file: None,
        },
    )
    .await?;
    assert_eq!(sender.as_deref(), Some("u.one@real.example"));

    let acc = account(&db, &fake, "send").await?;
    sync(&db, &acc).await?;
    let client = jmap_driver::connect(&acc).await?;
    let mut draft = mailsync_engine::compose::Draft {
        message_id: "m1@test".into(),
        from: mailsync_store::Address {
            name: None,
            email: "u1@127.0.0.1".into(),
        },
        to: vec![mailsync_store::Address {
            name: None,
            email: "bob@example.test".into(),
        }],
        subject: "refused".into(),
        text: "hi".into(),
        ..Default::default()
    };
    let before = fake.world().emails.len();
    let err = mailsync_engine::jmap_send::send(&client, &db.store, acc.id, &draft, None)
        .await
        .expect_err("forbiddenFrom");
    assert!(err.to_string().contains("forbiddenFrom"), "{err}");
    assert_eq!(fake.world().emails.len(), before, "no draft left behind");
    // From the identity's address the same send goes out.
    draft.from.email = "u.one@real.example".into();
    draft.message_id = "m2@test".into();
    mailsync_engine::jmap_send::send(&client, &db.store, acc.id, &draft, None).await?;
    assert_eq!(
        fake.world().submitted,
        vec!["u.one@real.example".to_owned()]
    );
    db.cleanup().await?;
    Ok(())
}

/// EventSource reconnection sends `Last-Event-ID` with the id of the last event received
/// (RFC 8620 §7.3), so a server that keeps its event log can replay what was missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_source_reconnection_sends_last_event_id() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    seed(&fake, 1);
    fake.world().sse.push_back(vec![
        Sse::Send("event: ping\ndata: {\"interval\":1}\n\n".into()),
        Sse::Sleep(Duration::from_millis(200)),
        Sse::Send(
            "id: 42\nevent: state\ndata: {\"@type\":\"StateChange\",\"changed\":{\"u1\":{\"Email\":\"e9\"}}}\n\n"
                .into(),
        ),
        Sse::Sleep(Duration::from_millis(100)),
        Sse::Close,
    ]);
    let acc = account(&db, &fake, "lei").await?;
    let mut d = JmapDriver::new(
        db.store.clone(),
        Arc::new(Outbox::new(db.store.clone())),
        acc,
    );
    d.cycle(&CancellationToken::new()).await?;
    // The StateChange ends the first wait; the second ends on the reconnection.
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    assert_eq!(
        fake.world().last_event_ids,
        [None, Some("42".to_owned())],
        "the reconnection names the last event"
    );
    db.cleanup().await?;
    Ok(())
}

/// Where the Session offers WebSocket push (RFC 8887), the driver uses it instead of
/// EventSource: push enabled for Email and Mailbox with the client's credentials, a delivery
/// ends the wait at once; after the server drops the connection, the reconnection resumes
/// with the last `pushState`, the server reports the change made meanwhile, and the cycle the
/// reconnection asks for stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_socket_push_is_preferred_and_resumes_with_push_state() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    let inbox = seed(&fake, 1);
    fake.world().websocket = true;
    let acc = account(&db, &fake, "ws").await?;
    let mut d = JmapDriver::new(
        db.store.clone(),
        Arc::new(Outbox::new(db.store.clone())),
        acc.clone(),
    );
    d.cycle(&CancellationToken::new()).await?;
    let t0 = Instant::now();
    let deliver = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        fake.world()
            .add_email(&inbox, "2024-05-02T10:00:00Z", "pushed");
        Instant::now()
    };
    let (r, delivered) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()),
        deliver
    );
    r??;
    let latency = delivered.elapsed();
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "woken by the delivery"
    );
    assert!(
        latency < Duration::from_secs(1),
        "StateChange after {latency:?}"
    );
    assert!(d.push_is_web_socket());
    let first_state = {
        let w = fake.world();
        assert_eq!(
            w.sse_connections, 0,
            "no EventSource where WebSocket is offered"
        );
        assert_eq!(w.ws_connections, 1);
        assert_eq!(
            w.ws_enables[0]["dataTypes"],
            serde_json::json!(["Email", "Mailbox"])
        );
        assert!(w.ws_enables[0].get("pushState").is_none());
        assert!(
            w.ws_authorization[0].starts_with("Basic "),
            "credentials on the upgrade"
        );
        push_state_of(&w)
    };
    assert_eq!(d.cycle(&CancellationToken::new()).await?.emails_added, 1);

    // The server drops the connection; mail arrives while it is down.
    let missed = {
        let mut w = fake.world();
        w.ws_drop = true;
        w.add_email(&inbox, "2024-05-03T10:00:00Z", "missed")
    };
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    // The wait ends on the reconnection; the enable sent right after may still be in flight.
    let t = Instant::now();
    while fake.world().ws_enables.len() < 2 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let w = fake.world();
        assert_eq!(w.ws_connections, 2, "reconnected");
        assert_eq!(
            w.ws_enables[1]["pushState"],
            serde_json::json!(first_state),
            "resumed from the last pushState"
        );
    }
    assert_eq!(d.cycle(&CancellationToken::new()).await?.emails_added, 1);
    assert!(
        emails::find_by_remote_id(db.store.conn(), acc.id, &missed)
            .await?
            .is_some()
    );
    db.cleanup().await?;
    Ok(())
}

/// `<email>.<mailbox>` states, as the fake's StateChange `pushState`.
fn push_state_of(w: &fake_jmap::World) -> String {
    format!("{}.{}", w.email_state, w.mailbox_state)
}

/// A Session that advertises WebSocket push whose endpoint refuses the upgrade: the driver
/// falls back to EventSource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_web_socket_falls_back_to_event_source() -> R {
    let db = TempDb::sqlite().await?;
    let fake = FakeJmap::start().await?;
    seed(&fake, 1);
    {
        let mut w = fake.world();
        w.websocket = true;
        w.ws_refuse = true;
        w.sse.push_back(vec![
            Sse::Send("event: ping\ndata: {\"interval\":1}\n\n".into()),
            Sse::Sleep(Duration::from_millis(300)),
            Sse::Send(
                "event: state\ndata: {\"@type\":\"StateChange\",\"changed\":{\"u1\":{\"Email\":\"e9\"}}}\n\n"
                    .into(),
            ),
        ]);
    }
    let acc = account(&db, &fake, "wsno").await?;
    let mut d = JmapDriver::new(
        db.store.clone(),
        Arc::new(Outbox::new(db.store.clone())),
        acc,
    );
    d.cycle(&CancellationToken::new()).await?;
    // The refusal ends the first wait (a cycle covers the switch); the next uses EventSource.
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    tokio::time::timeout(Duration::from_secs(10), d.wait_for_change()).await??;
    assert!(!d.push_is_web_socket());
    assert!(!d.push_unavailable());
    let w = fake.world();
    assert_eq!(w.ws_authorization.len(), 1, "one refused upgrade");
    assert_eq!(w.sse_connections, 1);
    Ok(())
}

/// An email whose id (and so, in this fake, its `threadId`) is 20,000 bytes long, beside two
/// ordinary ones, synced into PostgreSQL: the sync completes, the malformed one is left out
/// (RFC 8620 §1.2 allows 1-255 octets; the database cannot index it), the others are stored,
/// and the next sync has nothing left to do. Before, PostgreSQL refused the index row and the
/// sync failed every cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_with_a_malformed_id_is_left_out_and_the_sync_completes() -> R {
    let db = TempDb::postgres().await?;
    let fake = FakeJmap::start().await?;
    let inbox = seed(&fake, 2);
    {
        let mut w = fake.world();
        let id = mailsync_testkit::incompressible(20_000, 3);
        w.emails.insert(
            id.clone(),
            fake_jmap::FEmail {
                id: id.clone(),
                received_at: "2024-02-01T10:00:00Z".into(),
                subject: "malformed".into(),
                mailbox_ids: std::collections::BTreeMap::from([(inbox.clone(), true)]),
                keywords: std::collections::BTreeMap::new(),
            },
        );
        w.order.push(id.clone());
        w.email_state += 1;
        let state = w.email_state;
        w.email_log.push((state, id, true, false));
    }
    let acc = account(&db, &fake, "malformed").await?;
    let res = async {
        let counts = sync(&db, &acc).await?;
        assert_eq!(counts.added, 2, "{counts:?}");
        let ids = emails::remote_ids(db.store.conn(), acc.id).await?;
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(|i| i.len() < 256));
        let again = sync(&db, &acc).await?;
        assert_eq!(again.added, 0);
        Ok::<_, E>(())
    }
    .await;
    db.cleanup().await?;
    res
}
