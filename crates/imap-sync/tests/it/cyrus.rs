//! Cyrus (shared pool users `is1`..`is10`): lower-case special-use roles, sync of a fresh
//! mailbox of generated messages, changes by another client, mutations. Deltas only: the pool
//! users keep their mail between runs.

use mailsync_imap_sync::{
    ImapMutation, MailboxResult, MutationOutcome, SyncCounts, SyncOptions, apply, sync_account,
};
use mailsync_store::{Role, emails, mailboxes};
use mailsync_testkit::{Account, Generator, unique_name};

use crate::common::*;
use crate::sync_dovecot::verify_against_generator;

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

#[tokio::test]
async fn cyrus_roles_sync_and_changes_by_another_client() -> anyhow::Result<()> {
    let user = Account::new("is2", "testpw");
    let cfg = cyrus(&user);
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    assert!(conn.qresync_enabled());
    let base = limit(
        120,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    for (name, role) in [
        ("INBOX", Role::Inbox),
        ("Sent", Role::Sent),
        ("Drafts", Role::Drafts),
        ("Trash", Role::Trash),
        ("Junk", Role::Junk),
        ("Archive", Role::Archive),
    ] {
        let m = mailboxes::find_by_remote_id(db.store.conn(), account, name).await?;
        assert_eq!(m.and_then(|m| m.role), Some(role), "{name}: {base:?}");
    }

    let boxname = format!("T{}", unique_name("cy"));
    let g = Generator::new(seed());
    append(
        &cfg,
        &user,
        &boxname,
        (0..60).map(|i| g.message(i)).collect(),
    )
    .await?;
    let report = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let mb = mailboxes::find_by_remote_id(db.store.conn(), account, &boxname)
        .await?
        .expect("new box");
    let outcome = report
        .mailboxes
        .iter()
        .find(|o| o.mailbox == mb.id)
        .expect("outcome");
    assert!(
        matches!(
            outcome.result,
            MailboxResult::Synced(SyncCounts {
                added: 60,
                removed: 0,
                ..
            })
        ),
        "{outcome:?}"
    );
    verify_against_generator(&db, account, mb.id, &g, 0..60, false).await?;

    // Another IMAP client flags one, expunges one, adds one.
    other_client(
        &cfg,
        &user,
        vec![
            format!("SELECT {boxname}"),
            "UID STORE 1 +FLAGS (\\Flagged)".into(),
            "UID STORE 2 +FLAGS (\\Deleted)".into(),
            "UID EXPUNGE 2".into(),
        ],
    )
    .await?;
    append(&cfg, &user, &boxname, vec![g.message(100)]).await?;
    let report = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let outcome = report
        .mailboxes
        .iter()
        .find(|o| o.mailbox == mb.id)
        .expect("outcome");
    assert!(
        matches!(
            outcome.result,
            MailboxResult::Synced(SyncCounts {
                added: 1,
                updated: 1,
                removed: 1
            })
        ),
        "{outcome:?}"
    );

    // Mutations on Cyrus: move into Archive, then delete (to Trash).
    let archive = mailboxes::find_by_role(db.store.conn(), account, Role::Archive)
        .await?
        .expect("archive");
    let out = limit(
        30,
        apply(
            &mut conn,
            &db.store,
            &[
                ImapMutation::Move {
                    from: mb.id,
                    uidvalidity: uv_of(&db, mb.id).await?,
                    uids: vec![3],
                    to: archive.id,
                },
                ImapMutation::Move {
                    from: mb.id,
                    uidvalidity: uv_of(&db, mb.id).await?,
                    uids: vec![4],
                    to: mailboxes::find_by_role(db.store.conn(), account, Role::Trash)
                        .await?
                        .expect("trash")
                        .id,
                },
                ImapMutation::Move {
                    from: mb.id,
                    uidvalidity: uv_of(&db, mb.id).await?,
                    uids: vec![5],
                    to: mailsync_store::MailboxId(-1),
                },
            ],
        ),
    )
    .await;
    assert!(out[0].is_ok() && out[1].is_ok(), "{out:?}");
    assert!(
        matches!(out[2], MutationOutcome::Permanent { .. }),
        "{out:?}"
    );

    // Clean up the pool user: delete the mailbox; the next sync removes it locally.
    other_client(&cfg, &user, vec![format!("DELETE {boxname}")]).await?;
    let report = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert!(report.mailboxes_removed >= 1, "{report:?}");
    assert!(
        mailboxes::find_by_remote_id(db.store.conn(), account, &boxname)
            .await?
            .is_none()
    );
    let _ = emails::count(db.store.conn(), account).await?;
    Ok(())
}
