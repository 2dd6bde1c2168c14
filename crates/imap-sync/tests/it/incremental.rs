//! Incremental sync after "another client" changed the account, in the three change-detection
//! modes: QRESYNC, CONDSTORE only, and neither (the client ignores the extensions with
//! `ImapConfig::disabled_extensions`; the harness has one Dovecot, which offers both), and with
//! QRESYNC on a connection that kept INBOX selected while the other client worked (the sync
//! then catches INBOX up without selecting it again).

use std::time::Duration;

use mailsync_imap_sync::{
    IdleOutcome, ImapConfig, MailboxResult, SyncCounts, SyncOptions, idle, sync_account,
};
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::{AccountId, Role, mailboxes};
use mailsync_testkit::{Generator, Profile};

use crate::common::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Qresync,
    QresyncSelected,
    CondstoreOnly,
    Neither,
}

fn configure(cfg: ImapConfig, mode: Mode) -> ImapConfig {
    match mode {
        Mode::Qresync | Mode::QresyncSelected => cfg,
        Mode::CondstoreOnly => cfg.disable_extension("QRESYNC"),
        Mode::Neither => cfg
            .disable_extension("QRESYNC")
            .disable_extension("CONDSTORE"),
    }
}

async fn flags_of(
    db: &mailsync_store::testing::TempDb,
    account: AccountId,
    mailbox: mailsync_store::MailboxId,
) -> anyhow::Result<Vec<(i64, bool, bool)>> {
    let mut out = Vec::new();
    for s in emails::list(
        db.store.conn(),
        &EmailFilter {
            mailbox: Some(mailbox),
            account: Some(account),
            ..EmailFilter::default()
        },
    )
    .await?
    {
        let m = emails::memberships(db.store.conn(), s.email.id).await?;
        let uid = m.first().and_then(|m| m.uid).unwrap_or(-1);
        out.push((uid, s.email.flags.seen, s.email.flags.flagged));
    }
    out.sort();
    Ok(out)
}

async fn scenario(mode: Mode) -> anyhow::Result<()> {
    let user = fresh_user(match mode {
        Mode::Qresync => "incq",
        Mode::QresyncSelected => "incs",
        Mode::CondstoreOnly => "incc",
        Mode::Neither => "incn",
    });
    let u = user.user.clone();
    let base = dovecot(&user);
    let g = Generator::with_profile(Profile::small(), 11);
    append(
        &base,
        &user,
        "INBOX",
        (0..40).map(|i| g.message(i)).collect(),
    )
    .await?;
    append(
        &base,
        &user,
        "Work",
        (40..70).map(|i| g.message(i)).collect(),
    )
    .await?;
    append(
        &base,
        &user,
        "Old",
        (70..73).map(|i| g.message(i)).collect(),
    )
    .await?;
    doveadm(vec![
        "flags".into(),
        "add".into(),
        "-u".into(),
        u.clone(),
        "\\Seen".into(),
        "mailbox".into(),
        "INBOX".into(),
        "uid".into(),
        "4:6".into(),
    ])
    .await?;

    let cfg = configure(base.clone(), mode);
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    let qresync = matches!(mode, Mode::Qresync | Mode::QresyncSelected);
    assert_eq!(conn.qresync_enabled(), qresync);
    assert_eq!(conn.condstore_enabled(), mode != Mode::Neither);
    let first = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(first.totals.added, 73, "{first:?}");
    let inbox = mailboxes::find_by_role(db.store.conn(), account, Role::Inbox)
        .await?
        .expect("inbox");
    let work = mailboxes::find_by_name(db.store.conn(), account, "Work")
        .await?
        .expect("work");
    assert!(
        mailboxes::find_by_name(db.store.conn(), account, "Old")
            .await?
            .is_some()
    );
    if mode == Mode::QresyncSelected {
        // What a daemon's wait leaves behind: INBOX selected on the sync connection, with the
        // other client's changes arriving as unsolicited responses to the next commands.
        let out = idle(
            &mut conn,
            &inbox,
            std::future::ready(()),
            Duration::from_secs(5),
        )
        .await?;
        assert_eq!(out, IdleOutcome::Woken);
    }
    let before = flags_of(&db, account, inbox.id).await?;
    assert_eq!(before.iter().filter(|f| f.1).count(), 3, "{before:?}");

    // Another client: a second IMAP connection adds mail; doveadm flags, unflags, moves,
    // expunges and deletes a mailbox.
    append(
        &base,
        &user,
        "INBOX",
        (100..102).map(|i| g.message(i)).collect(),
    )
    .await?;
    let d = |args: &[&str]| -> Vec<String> { args.iter().map(|s| (*s).to_owned()).collect() };
    doveadm(d(&[
        "flags",
        "add",
        "-u",
        &u,
        "\\Flagged",
        "mailbox",
        "INBOX",
        "uid",
        "1:3",
    ]))
    .await?;
    doveadm(d(&[
        "flags", "remove", "-u", &u, "\\Seen", "mailbox", "INBOX", "uid", "4",
    ]))
    .await?;
    doveadm(d(&[
        "move", "-u", &u, "Work", "mailbox", "INBOX", "uid", "10",
    ]))
    .await?;
    doveadm(d(&[
        "expunge", "-u", &u, "mailbox", "INBOX", "uid", "11:12",
    ]))
    .await?;
    doveadm(d(&["mailbox", "delete", "-u", &u, "Old"])).await?;

    let second = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(
        second.totals,
        SyncCounts {
            added: 3,
            updated: 4,
            removed: 3
        },
        "{mode:?}: {second:?}"
    );
    assert_eq!(second.mailboxes_removed, 1);
    assert!(
        mailboxes::find_by_name(db.store.conn(), account, "Old")
            .await?
            .is_none()
    );
    assert_eq!(
        emails::count(db.store.conn(), account).await?,
        73 + 2 - 2 - 3
    );
    let after = flags_of(&db, account, inbox.id).await?;
    assert_eq!(after.len(), 39);
    let flagged: Vec<i64> = after.iter().filter(|f| f.2).map(|f| f.0).collect();
    assert_eq!(flagged, vec![1, 2, 3]);
    let seen: Vec<i64> = after.iter().filter(|f| f.1).map(|f| f.0).collect();
    assert_eq!(seen, vec![5, 6]);
    assert!(!after.iter().any(|f| f.0 == 10 || f.0 == 11 || f.0 == 12));
    let work_flags = flags_of(&db, account, work.id).await?;
    assert_eq!(work_flags.len(), 31);

    // Converged: nothing left to do.
    let third = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(third.totals, SyncCounts::default(), "{mode:?}: {third:?}");
    if mode != Mode::Neither {
        assert!(
            third
                .mailboxes
                .iter()
                .all(|m| matches!(m.result, MailboxResult::Skipped)),
            "{third:?}"
        );
    }
    // A fresh connection sees the same (checkpoints, not connection state, drive the sync).
    let mut conn2 = connect(&cfg).await;
    let fourth = limit(
        60,
        sync_account(&mut conn2, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(fourth.totals, SyncCounts::default(), "{mode:?}: {fourth:?}");
    Ok(())
}

#[tokio::test]
async fn incremental_with_qresync() -> anyhow::Result<()> {
    scenario(Mode::Qresync).await
}

#[tokio::test]
async fn incremental_with_qresync_on_the_still_selected_inbox() -> anyhow::Result<()> {
    scenario(Mode::QresyncSelected).await
}

#[tokio::test]
async fn incremental_with_condstore_only() -> anyhow::Result<()> {
    scenario(Mode::CondstoreOnly).await
}

#[tokio::test]
async fn incremental_without_condstore_or_qresync_still_converges() -> anyhow::Result<()> {
    scenario(Mode::Neither).await
}
