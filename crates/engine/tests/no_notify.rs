//! Without NOTIFY: IDLE on INBOX and on the most useful other mailbox (the default budget of 3
//! connections leaves one for that), and a STATUS round over the rest every few seconds.
//! Cyrus IMAP (pool `rt`) has no NOTIFY; Dovecot has it, and the engine is told to ignore it
//! (`WorkerPolicy::without_imap_extension`), so the latencies of an IDLEd and of a polled
//! mailbox are measured on the same server that serves the NOTIFY tests.

mod common;

use std::time::{Duration, Instant};

use mailsync_engine::Engine;
use mailsync_engine::worker::WorkerPolicy;
use mailsync_store::{emails, mailboxes};
use mailsync_testkit::accounts::REALTIME;
use mailsync_testkit::{CYRUS_POOL_PASSWORD, Generator, ImapClient, Servers, imap_append_bulk};

type R = Result<(), Box<dyn std::error::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_other_mailboxes_are_seen_within_the_poll_interval() -> R {
    let servers = Servers::load()?;
    let user = REALTIME.user(2);
    let (host, port) = (servers.cyrus_host(), servers.cyrus_imap_port());
    let mut other = ImapClient::login(host, port, &user, CYRUS_POOL_PASSWORD)?;
    assert!(
        !other.capabilities()?.iter().any(|c| c == "NOTIFY"),
        "this test needs a server without NOTIFY"
    );
    let _ = other.command_any("CREATE Folder");
    for b in ["INBOX", "Folder"] {
        if other.select(b)? > 0 {
            other.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
            other.command("EXPUNGE")?;
        }
    }
    other.command("UNSELECT")?;
    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let poll = Duration::from_secs(2);
    let engine = Engine::with_policy(
        db.store.clone(),
        WorkerPolicy::default().with_poll_interval(poll),
    );
    let mut new = common::dovecot_account(&servers, &user, CYRUS_POOL_PASSWORD);
    if let Some(imap) = new.imap.as_mut() {
        imap.port = port;
    }
    let acc = engine.add_account(new).await?;
    let _events = common::start_synced(&engine, &db.store, acc.id).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let folder = mailboxes::find_by_remote_id(db.store.conn(), acc.id, "Folder")
        .await?
        .ok_or("Folder synced")?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let t0 = Instant::now();
    imap_append_bulk(
        host,
        port,
        &user,
        CYRUS_POOL_PASSWORD,
        "Folder",
        [Generator::new(seed).message(0)],
        1,
    )?;
    let filter = emails::EmailFilter {
        mailbox: Some(folder.id),
        ..Default::default()
    };
    while emails::list(db.store.conn(), &filter).await?.is_empty() {
        assert!(
            t0.elapsed() < poll + Duration::from_secs(3),
            "new mail in Folder not synced within the poll interval (+3 s)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "without NOTIFY, new mail outside INBOX stored after {:?} (poll interval {poll:?})",
        t0.elapsed()
    );
    other.logout();
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "clean shutdown"
    );
    Ok(())
}

/// Appends one message to `mailbox` as another client and returns how long until the engine
/// stored it (at most `limit`).
async fn deliver(
    servers: &Servers,
    user: &mailsync_testkit::Account,
    store: &mailsync_store::Store,
    mailbox: mailsync_store::MailboxId,
    seed: u64,
    limit: Duration,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let filter = emails::EmailFilter {
        mailbox: Some(mailbox),
        ..Default::default()
    };
    let before = emails::list(store.conn(), &filter).await?.len();
    let t0 = Instant::now();
    imap_append_bulk(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
        &mailboxes::get(store.conn(), mailbox).await?.remote_id,
        [Generator::new(seed).message(0)],
        1,
    )?;
    while emails::list(store.conn(), &filter).await?.len() == before {
        if t0.elapsed() > limit {
            return Err(format!("new mail not stored within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = t0.elapsed();
    // Past the worker's minimum time between two server-triggered cycles (1 s), so the next
    // delivery measures the wait, not that guard.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    Ok(t)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_without_notify_idles_on_the_busiest_mailbox_and_polls_the_rest() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("nn");
    let mut other = ImapClient::login(
        servers.dovecot_host(),
        servers.dovecot_imap_port(),
        &user.user,
        &user.password,
    )?;
    assert!(
        other.capabilities()?.iter().any(|c| c == "NOTIFY"),
        "Dovecot offers NOTIFY; the engine is told to ignore it"
    );
    other.create_mailbox("Alpha")?;
    other.create_mailbox("Beta")?;
    other.logout();
    let db = mailsync_store::testing::TempDb::sqlite().await?;
    let status_interval = Duration::from_secs(3);
    let engine = Engine::with_policy(
        db.store.clone(),
        WorkerPolicy::default()
            .without_imap_extension("NOTIFY")
            .with_status_interval(status_interval),
    );
    // Through a proxy that counts the connections the engine opens (the budget).
    let proxy =
        mailsync_testkit::FaultProxy::start(servers.dovecot_host(), servers.dovecot_imap_port())?;
    let mut new = common::dovecot_account(&servers, &user.user, &user.password);
    if let Some(imap) = new.imap.as_mut() {
        imap.port = proxy.port();
    }
    let acc = engine.add_account(new).await?;
    // Adding the account tested its login; count from here.
    let before = proxy.connections();
    let _events = common::start_synced(&engine, &db.store, acc.id).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = &db.store;
    let id = |name: &'static str| async move {
        mailboxes::find_by_remote_id(store.conn(), acc.id, name)
            .await
            .map(|m| m.map(|m| m.id))
    };
    let (inbox, alpha, beta) = (
        id("INBOX").await?.ok_or("INBOX")?,
        id("Alpha").await?.ok_or("Alpha")?,
        id("Beta").await?.ok_or("Beta")?,
    );
    // Generous bounds: an IDLEd mailbox is seen at once (the machine is shared and loaded);
    // a polled one within a STATUS round plus a cycle.
    let idled = Duration::from_millis(2500);
    let polled = status_interval + Duration::from_secs(3);
    let mut seed = 100;
    let mut next = || {
        seed += 1;
        seed
    };

    let mut t_inbox = Vec::new();
    for _ in 0..3 {
        t_inbox.push(deliver(&servers, &user, store, inbox, next(), idled).await?);
    }
    // Nothing happened elsewhere yet: the extra IDLE goes to a folder without a role, by name.
    let mut t_alpha = Vec::new();
    for _ in 0..3 {
        t_alpha.push(deliver(&servers, &user, store, alpha, next(), idled).await?);
    }
    // Beta is only looked at by the STATUS round...
    let t_beta_polled = deliver(&servers, &user, store, beta, next(), polled).await?;
    // ...and, being the most recently active now, gets the extra IDLE; Alpha is polled.
    let mut t_beta = Vec::new();
    for _ in 0..3 {
        t_beta.push(deliver(&servers, &user, store, beta, next(), idled).await?);
    }
    let t_alpha_polled = deliver(&servers, &user, store, alpha, next(), polled).await?;
    println!(
        "without NOTIFY (Dovecot): INBOX {t_inbox:?}, Alpha idled {t_alpha:?}, Beta polled \
         {t_beta_polled:?}, Beta idled {t_beta:?}, Alpha polled {t_alpha_polled:?}"
    );
    // The sync connection and one extra IDLE (3 in all with the on-demand one, unused here),
    // each opened once and kept across waits.
    assert_eq!(proxy.connections() - before, 2, "connections opened");
    let (m_inbox, m_alpha, m_beta) = (
        median(&mut t_inbox),
        median(&mut t_alpha),
        median(&mut t_beta),
    );
    for (what, m) in [("INBOX", m_inbox), ("Alpha", m_alpha), ("Beta", m_beta)] {
        assert!(
            m < Duration::from_millis(1500),
            "median latency into IDLEd {what}: {m:?}"
        );
    }
    assert!(
        engine.shutdown(Duration::from_secs(10)).await,
        "clean shutdown"
    );
    Ok(())
}
