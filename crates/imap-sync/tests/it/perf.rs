//! Timings (printed as `TIMING ...`; run with `--nocapture`): first sync of 10,000 messages,
//! no-change resync, 1 %-change resync. Assertions are on correctness and generous bounds;
//! the design targets are in the crate docs.

use std::time::{Duration, Instant};

use mailsync_imap_sync::{MailboxResult, SyncCounts, SyncOptions, sync_account};
use mailsync_store::emails;
use mailsync_store::testing::TempDb;
use mailsync_testkit::{Generator, Profile};

use crate::common::*;

#[tokio::test]
async fn timings_first_sync_10k_nochange_and_one_percent() -> anyhow::Result<()> {
    let n = 10_000usize;
    let user = fresh_user("perf");
    let u = user.user.clone();
    let cfg = dovecot(&user);
    let g = Generator::with_profile(Profile::small(), 71);
    let t = Instant::now();
    append(&cfg, &user, "INBOX", (0..n).map(|i| g.message(i)).collect()).await?;
    println!(
        "TIMING load {n} small messages (MULTIAPPEND): {} ms",
        t.elapsed().as_millis()
    );

    // Cold server (Dovecot parses every message on the first BODYSTRUCTURE fetch).
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    let t = Instant::now();
    let r = limit(
        120,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let cold = t.elapsed();
    assert_eq!(r.totals.added, n as u64);
    // Warm server, fresh database: what the benchmark compares with the raw UID FETCH floor.
    let db2 = TempDb::sqlite().await?;
    let account2 = add_account(&db2).await?;
    let mut conn2 = connect(&cfg).await;
    let t = Instant::now();
    let r = limit(
        120,
        sync_account(&mut conn2, &db2.store, account2, &SyncOptions::default()),
    )
    .await?;
    let warm = t.elapsed();
    assert_eq!(r.totals.added, n as u64);
    assert_eq!(emails::count(db2.store.conn(), account2).await?, n as u64);

    let t = Instant::now();
    let r = limit(
        60,
        sync_account(&mut conn2, &db2.store, account2, &SyncOptions::default()),
    )
    .await?;
    let nochange = t.elapsed();
    assert_eq!(r.totals, SyncCounts::default());
    assert!(
        r.mailboxes
            .iter()
            .all(|m| matches!(m.result, MailboxResult::Skipped))
    );

    // 1 %: another client flags 100 messages and expunges 100 others.
    let d = |args: &[&str]| -> Vec<String> { args.iter().map(|s| (*s).to_owned()).collect() };
    let flag_set: Vec<String> = (0..100).map(|k| (k * 97 + 1).to_string()).collect();
    let gone_set: Vec<String> = (0..100).map(|k| (k * 97 + 50).to_string()).collect();
    doveadm(d(&[
        "flags",
        "add",
        "-u",
        &u,
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        &flag_set.join(","),
    ]))
    .await?;
    doveadm(d(&[
        "expunge",
        "-u",
        &u,
        "mailbox",
        "INBOX",
        "uid",
        &gone_set.join(","),
    ]))
    .await?;
    let t = Instant::now();
    let r = limit(
        60,
        sync_account(&mut conn2, &db2.store, account2, &SyncOptions::default()),
    )
    .await?;
    let change = t.elapsed();
    assert_eq!(
        r.totals,
        SyncCounts {
            added: 0,
            updated: 100,
            removed: 100
        },
        "{r:?}"
    );

    println!(
        "TIMING first sync {n} small msgs, cold server: {} ms",
        cold.as_millis()
    );
    println!(
        "TIMING first sync {n} small msgs, warm server: {} ms",
        warm.as_millis()
    );
    println!(
        "TIMING no-change resync ({n} msgs, QRESYNC): {} ms",
        nochange.as_millis()
    );
    println!(
        "TIMING 1% change resync (100 flagged + 100 expunged of {n}): {} ms",
        change.as_millis()
    );
    // Generous bounds for a loaded 2-core CI machine (targets: 100 ms and well under 1 s).
    assert!(
        nochange < Duration::from_secs(1),
        "no-change resync took {nochange:?}"
    );
    assert!(change < Duration::from_secs(5), "1% resync took {change:?}");
    Ok(())
}

/// A mailbox list of 2,000 (all selectable, empty): listing and storing it stays linear, and a
/// second pass over the unchanged list writes no mailbox row. Printed as TIMING.
#[tokio::test]
async fn timings_many_mailboxes() -> anyhow::Result<()> {
    let n = 2_000usize;
    let user = fresh_user("perfmb");
    let cfg = dovecot(&user);
    let mut args: Vec<String> = vec![
        "mailbox".into(),
        "create".into(),
        "-u".into(),
        user.user.clone(),
    ];
    args.extend((0..n).map(|i| format!("F{}/M{i}", i % 50)));
    doveadm(args).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    let t = Instant::now();
    let first = limit(
        120,
        mailsync_imap_sync::sync_mailboxes(&mut conn, &db.store, account),
    )
    .await?;
    let first_ms = t.elapsed().as_millis();
    assert!(first.mailboxes.len() >= n, "{}", first.mailboxes.len());
    let t = Instant::now();
    let again = limit(
        120,
        mailsync_imap_sync::sync_mailboxes(&mut conn, &db.store, account),
    )
    .await?;
    let again_ms = t.elapsed().as_millis();
    assert_eq!((again.added, again.removed), (0, 0));
    println!(
        "TIMING LIST of {} mailboxes: first {first_ms} ms, unchanged {again_ms} ms",
        first.mailboxes.len()
    );
    assert!(again_ms < 30_000);
    Ok(())
}
