//! IDLE: returns within a second of a delivery, on wake, on timeout; NOOP polling without IDLE.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsync_imap_sync::{IdleOutcome, SyncOptions, idle, sync_account};
use mailsync_store::{Role, mailboxes};
use mailsync_testkit::generate;
use tokio::sync::Notify;

use crate::common::*;

async fn setup(
    tag: &str,
    disable_idle: bool,
) -> anyhow::Result<(
    mailsync_testkit::Account,
    mailsync_imap_sync::ImapConfig,
    mailsync_store::testing::TempDb,
    mailsync_store::mailboxes::Mailbox,
    mailsync_imap_sync::Connection,
)> {
    let user = fresh_user(tag);
    let mut cfg = dovecot(&user);
    if disable_idle {
        cfg = cfg.disable_extension("IDLE");
        cfg.timeouts = cfg.timeouts.with_poll_interval(Duration::from_millis(200));
    }
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let inbox = mailboxes::find_by_role(db.store.conn(), account, Role::Inbox)
        .await?
        .expect("inbox");
    Ok((user, cfg, db, inbox, conn))
}

#[tokio::test]
async fn idle_returns_within_a_second_of_a_delivery() -> anyhow::Result<()> {
    let (user, _cfg, db, inbox, mut conn) = setup("idle", false).await?;
    let account = inbox.account_id;
    let delivered = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let d2 = delivered.clone();
    let u = user.user.clone();
    let deliver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let msg = generate(31, 0);
        let r = blocking(move || {
            mailsync_testkit::doveadm_with_input(
                servers().dovecot_conf(),
                &["save", "-u", &u, "-m", "INBOX"],
                Some(&msg),
            )
        })
        .await;
        *d2.lock().expect("lock") = Some(Instant::now());
        r
    });
    let outcome = limit(
        20,
        idle(
            &mut conn,
            &inbox,
            std::future::pending(),
            Duration::from_secs(15),
        ),
    )
    .await?;
    let returned = Instant::now();
    deliver.await??;
    assert_eq!(outcome, IdleOutcome::Changed);
    let at = delivered.lock().expect("lock").expect("delivered");
    let lag = returned.saturating_duration_since(at);
    println!(
        "TIMING idle returned {} ms after doveadm save finished",
        lag.as_millis()
    );
    assert!(
        lag < Duration::from_secs(1),
        "IDLE returned {lag:?} after the delivery"
    );
    // The connection is still usable after DONE, and syncing the (still selected) mailbox
    // picks up the delivery.
    limit(10, conn.noop()).await?;
    assert!(conn.is_usable());
    let counts = limit(
        30,
        mailsync_imap_sync::sync_mailbox(
            &mut conn,
            &db.store,
            account,
            &inbox,
            &SyncOptions::default(),
        ),
    )
    .await?;
    assert_eq!(counts.added, 1, "{counts:?}");
    Ok(())
}

#[tokio::test]
async fn idle_wakes_and_times_out() -> anyhow::Result<()> {
    let (_user, _cfg, _db, inbox, mut conn) = setup("idlew", false).await?;
    let notify = Arc::new(Notify::new());
    let n2 = notify.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        n2.notify_one();
    });
    let t = Instant::now();
    let o = limit(
        20,
        idle(
            &mut conn,
            &inbox,
            notify.notified(),
            Duration::from_secs(15),
        ),
    )
    .await?;
    assert_eq!(o, IdleOutcome::Woken);
    assert!(t.elapsed() < Duration::from_secs(5));
    let t = Instant::now();
    let o = limit(
        20,
        idle(
            &mut conn,
            &inbox,
            std::future::pending(),
            Duration::from_millis(700),
        ),
    )
    .await?;
    assert_eq!(o, IdleOutcome::Timeout);
    assert!(t.elapsed() >= Duration::from_millis(700));
    limit(10, conn.noop()).await?;
    Ok(())
}

#[tokio::test]
async fn idle_is_reissued_and_still_sees_changes() -> anyhow::Result<()> {
    // Re-issue every 300 ms: a change after several rounds is still reported.
    let (user, mut cfg, db, inbox, _c) = setup("idler", false).await?;
    cfg.timeouts = cfg.timeouts.with_idle_reissue(Duration::from_millis(300));
    let mut conn = connect(&cfg).await;
    let _ = db;
    let u = user.user.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let msg = generate(32, 1);
        let _ = blocking(move || {
            mailsync_testkit::doveadm_with_input(
                servers().dovecot_conf(),
                &["save", "-u", &u, "-m", "INBOX"],
                Some(&msg),
            )
        })
        .await;
    });
    let t = Instant::now();
    let o = limit(
        20,
        idle(
            &mut conn,
            &inbox,
            std::future::pending(),
            Duration::from_secs(15),
        ),
    )
    .await?;
    assert_eq!(o, IdleOutcome::Changed);
    assert!(t.elapsed() >= Duration::from_millis(1_000));
    Ok(())
}

#[tokio::test]
async fn noop_polling_without_idle() -> anyhow::Result<()> {
    let (user, cfg, _db, inbox, mut conn) = setup("idlen", true).await?;
    assert!(!conn.has_capability("IDLE") && cfg.disabled_extensions.contains(&"IDLE".to_string()));
    let u = user.user.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let msg = generate(33, 2);
        let _ = blocking(move || {
            mailsync_testkit::doveadm_with_input(
                servers().dovecot_conf(),
                &["save", "-u", &u, "-m", "INBOX"],
                Some(&msg),
            )
        })
        .await;
    });
    let t = Instant::now();
    let o = limit(
        20,
        idle(
            &mut conn,
            &inbox,
            std::future::pending(),
            Duration::from_secs(10),
        ),
    )
    .await?;
    assert_eq!(o, IdleOutcome::Changed);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    Ok(())
}
