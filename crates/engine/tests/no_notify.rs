//! Without NOTIFY (Cyrus IMAP, pool `rt`), IDLE sees INBOX only: the wait ends after the poll
//! interval so new mail in another mailbox is at most that late (it used to wait for INBOX
//! activity or the 25-minute IDLE re-issue).

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
