//! The engine end to end with a JMAP account on the real Cyrus: `add_account` tests first and
//! stores nothing on failure; a cycle syncs; a local change made offline is flushed by the next
//! cycle; a send reaches the sink once and Sent once; a running worker (polling: Cyrus has no
//! push) picks up a delivery by another client; shutdown is clean.

use std::time::{Duration, Instant};

use mailsync_engine::worker::WorkerPolicy;
use mailsync_engine::{Engine, EngineEvent};
use mailsync_jmap_client as jmap;
use mailsync_jmap_client::{Client, Credentials, Email, Get, Set};
use mailsync_outbox::{Change, OutgoingMessage};
use mailsync_store::accounts::{self, NewAccount};
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::sync_log::{self, CycleStatus};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountKind, Address, BodyPolicy, Role, SecretRef, mailboxes};
use mailsync_testkit::{
    Account, Generator, Servers, accounts::ENGINE, lmtp_deliver, sink_messages, unique_name,
};

type R = Result<(), Box<dyn std::error::Error>>;

fn new_account(servers: &Servers, user: &str, password_cmd: &str) -> NewAccount {
    NewAccount {
        name: format!("jmap-{user}"),
        kind: AccountKind::Jmap,
        email: format!("{user}@example.test"),
        display_name: Some("Engine Three".into()),
        username: user.into(),
        secret_ref: SecretRef::Command(password_cmd.into()),
        imap: None,
        smtp: None,
        jmap_session_url: Some(servers.jmap_session_url().into()),
        ca_file: None,
        allow_plaintext: false,
        body_policy: BodyPolicy::MaxBytes(64 * 1024),
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(3)
}

async fn run(db: &TempDb) -> R {
    let servers = Servers::load()?;
    let who = Account::cyrus_pool(ENGINE, 3);
    let engine = Engine::with_policy(
        db.store.clone(),
        WorkerPolicy::default().with_poll_interval(Duration::from_millis(500)),
    );

    // Wrong password: a typed error, nothing stored. The password comes from a command.
    let bad_cmd = "printf %s wrongpassword";
    let good_cmd = format!("printf %s {}", who.password);
    let err = engine
        .add_account(new_account(&servers, &who.user, bad_cmd))
        .await;
    let msg = err
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.is_err(), "wrong password must fail");
    assert!(
        msg.contains("401") || msg.to_lowercase().contains("auth"),
        "{msg}"
    );
    assert!(
        accounts::list(db.store.conn()).await?.is_empty(),
        "nothing stored"
    );
    assert!(
        !msg.contains("wrongpassword"),
        "the password never appears in errors: {msg}"
    );

    let account = engine
        .add_account(new_account(&servers, &who.user, &good_cmd))
        .await?;
    // Some mail to work with.
    let g = Generator::new(seed());
    lmtp_deliver(servers.cyrus_lmtp(), &who.user, g.messages(0..5))?;
    let counts = engine.sync_once(account.id).await?;
    assert!(counts.mailboxes >= 6);
    let log = sync_log::list(db.store.conn(), Some(account.id), 1).await?;
    assert_eq!(log[0].status, CycleStatus::Ok);

    // A change made "offline" (no worker running): applied locally at once, queued.
    let inbox = mailboxes::find_by_role(db.store.conn(), account.id, Role::Inbox)
        .await?
        .ok_or("inbox")?;
    let unread = emails::list(
        db.store.conn(),
        &EmailFilter {
            mailbox: Some(inbox.id),
            ..Default::default()
        },
    )
    .await?
    .into_iter()
    .find(|s| !s.email.flags.seen)
    .ok_or("an unread email")?;
    engine
        .enqueue(account.id, Change::seen(unread.email.id, true))
        .await?;
    assert!(
        emails::get(db.store.conn(), unread.email.id)
            .await?
            .flags
            .seen,
        "optimistic"
    );
    let status = engine.status().await?;
    assert_eq!(status[0].pending, 1);
    let flushed = engine.sync_once(account.id).await?;
    assert_eq!(flushed.changes_flushed, 1);
    let client = Client::builder()
        .credentials(Credentials::basic(&who.user, &who.password))
        .connect(servers.jmap_session_url())
        .await?;
    let jacc = client.mail_account_id()?;
    let on_server = client
        .call(
            Get::<Email>::new(&jacc)
                .ids(vec![mailsync_jmap_client::EmailId::new(
                    unread.email.remote_id.clone(),
                )])
                .properties(["keywords"]),
        )
        .await?;
    assert!(
        on_server.list[0].has_keyword("$seen"),
        "the server has the change"
    );
    assert_eq!(engine.status().await?[0].pending, 0);

    // Send through the outbox: exactly once to the sink, exactly one copy in Sent.
    let message_id = format!("{}@mailsync.test", unique_name("engsend"));
    engine
        .send(
            account.id,
            OutgoingMessage {
                message_id: message_id.clone(),
                from: Address {
                    name: None,
                    email: format!("{}@example.test", who.user),
                },
                to: vec![Address {
                    name: None,
                    email: "bob@example.test".into(),
                }],
                subject: "engine send".into(),
                text: "hello".into(),
                ..Default::default()
            },
        )
        .await?;
    let after_send = engine.sync_once(account.id).await?;
    assert_eq!(after_send.changes_flushed, 1);
    let copies = sink_messages(servers.smtp_sink_dir())?
        .into_iter()
        .filter(|m| m.message_id().as_deref() == Some(message_id.as_str()))
        .count();
    assert_eq!(copies, 1);
    // The next cycle does not send it again, and the Sent copy is synced.
    engine.sync_once(account.id).await?;
    let sent = mailboxes::find_by_role(db.store.conn(), account.id, Role::Sent)
        .await?
        .ok_or("sent")?;
    let in_sent: Vec<_> =
        emails::find_by_message_id(db.store.conn(), account.id, &message_id).await?;
    assert_eq!(in_sent.len(), 1);
    assert_eq!(
        emails::memberships(db.store.conn(), in_sent[0].id).await?[0].mailbox_id,
        sent.id
    );

    // A move into a mailbox another client deleted meanwhile is refused (evicted, reverted),
    // never applied: Cyrus would accept it and the email would vanish from every mailbox.
    let name = unique_name("doomed");
    let mut create = Set::<jmap::Mailbox>::new(&jacc);
    let cid = create.create(jmap::Mailbox {
        name: Some(name.clone()),
        ..Default::default()
    });
    let created = client.call(create).await?;
    let doomed_id = created
        .created_or_error(&cid)?
        .id
        .clone()
        .ok_or("mailbox id")?;
    engine.sync_once(account.id).await?;
    let doomed = mailboxes::find_by_remote_id(db.store.conn(), account.id, doomed_id.as_str())
        .await?
        .ok_or("synced mailbox")?;
    let mut destroy = Set::<jmap::Mailbox>::new(&jacc);
    destroy.destroy([&doomed_id]);
    client.call(destroy).await?.check()?;
    let victim = emails::list(
        db.store.conn(),
        &EmailFilter {
            mailbox: Some(inbox.id),
            limit: Some(1),
            ..Default::default()
        },
    )
    .await?
    .pop()
    .ok_or("an inbox email")?;
    engine
        .enqueue(account.id, Change::move_to(victim.email.id, doomed.id))
        .await?;
    engine.sync_once(account.id).await?;
    assert_eq!(engine.status().await?[0].failed, 1, "the move was evicted");
    let still = client
        .call(
            Get::<Email>::new(&jacc)
                .ids(vec![mailsync_jmap_client::EmailId::new(
                    victim.email.remote_id.clone(),
                )])
                .properties(["mailboxIds"]),
        )
        .await?;
    let inbox_remote = mailsync_jmap_client::MailboxId::new(inbox.remote_id.clone());
    assert!(
        still.list[0].in_mailbox(&inbox_remote),
        "the email stayed in the inbox on the server"
    );
    let members = emails::memberships(db.store.conn(), victim.email.id).await?;
    assert_eq!(
        members.iter().map(|m| m.mailbox_id).collect::<Vec<_>>(),
        vec![inbox.id],
        "reverted locally"
    );

    // A running worker polls (Cyrus has no push) and picks up a delivery by another client.
    let mut events = engine.subscribe();
    engine.start(accounts::get(db.store.conn(), account.id).await?);
    // Let the worker finish its first cycle, so the delivery below can only be seen by polling.
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await? {
            Some(EngineEvent::Synced { .. }) => break,
            Some(EngineEvent::Failed { message, .. }) => return Err(message.into()),
            _ => {}
        }
    }
    let before = emails::count(db.store.conn(), account.id).await?;
    let t0 = Instant::now();
    lmtp_deliver(
        servers.cyrus_lmtp(),
        &who.user,
        [Generator::new(seed()).message(0)],
    )?;
    loop {
        if emails::count(db.store.conn(), account.id).await? > before {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the worker did not pick up the delivery"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
    }
    println!(
        "JMAP worker saw a delivery after {:?} (polling every 500 ms)",
        t0.elapsed()
    );
    assert!(engine.status().await?[0].running);
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "clean shutdown"
    );
    // Drain: every cycle that started also finished.
    while let Some(ev) = events.try_recv() {
        if let EngineEvent::Failed { message, .. } = ev {
            return Err(format!("a worker cycle failed: {message}").into());
        }
    }
    let log = sync_log::list(db.store.conn(), Some(account.id), 100).await?;
    assert!(
        log.iter().all(|r| r.status != CycleStatus::Running),
        "no cycle left running"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_with_a_jmap_account() -> R {
    let db = TempDb::sqlite().await?;
    let res = tokio::time::timeout(Duration::from_secs(90), run(&db)).await;
    db.cleanup().await?;
    res.map_err(|_| "timed out")?
}
