//! A mailbox deleted and re-created under the same name (new UIDVALIDITY): the rescan keeps
//! the rows (and cached bodies) of messages found again by Message-ID, even when the first
//! rescan is killed midway.

use std::sync::Arc;

use mailsync_imap_sync::{SyncCounts, SyncOptions, fetch_body, sync_account};
use mailsync_store::{bodies, emails, mailboxes};
use mailsync_testkit::{Generator, Profile};

use crate::common::*;

#[tokio::test]
async fn recreated_mailbox_is_rescanned_and_rematched_by_message_id() -> anyhow::Result<()> {
    let user = fresh_user("uidv");
    let u = user.user.clone();
    let cfg = dovecot(&user);
    let g = Generator::with_profile(Profile::small(), 21);
    append(&cfg, &user, "Box", (0..20).map(|i| g.message(i)).collect()).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let boxrow = mailboxes::find_by_name(db.store.conn(), account, "Box")
        .await?
        .expect("Box");
    let old_uv = boxrow.status.uidvalidity.expect("uidvalidity");
    let remote5 = emails::imap_remote_id(boxrow.id, u32::try_from(old_uv)?, 5);
    let e5 = emails::find_by_remote_id(db.store.conn(), account, &remote5)
        .await?
        .expect("uid 5");
    let body = limit(30, fetch_body(&mut conn, &db.store, e5.id)).await?;
    assert!(
        body.text
            .as_deref()
            .is_some_and(|t| t.contains(&g.expected(4).token))
    );
    assert!(bodies::get(db.store.conn(), e5.id).await?.is_some());

    // Another client deletes and re-creates Box: 15 of the old messages come back (same
    // Message-IDs, new UIDs), 2 are new, 5 are gone.
    let d = |args: &[&str]| -> Vec<String> { args.iter().map(|s| (*s).to_owned()).collect() };
    doveadm(d(&["mailbox", "delete", "-u", &u, "Box"])).await?;
    doveadm(d(&["mailbox", "create", "-u", &u, "Box"])).await?;
    let mut again: Vec<Vec<u8>> = (0..15).map(|i| g.message(i)).collect();
    again.extend((30..32).map(|i| g.message(i)));
    append(&cfg, &user, "Box", again).await?;

    // The first rescan is killed after its first committed batch.
    let opts = SyncOptions::default()
        .with_batch_size(4)
        .with_progress(Arc::new(|_p: &mailsync_imap_sync::SyncProgress| {
            panic!("killed midway")
        }));
    let store2 = db.store.clone();
    let cfg2 = cfg.clone();
    let killed = tokio::spawn(async move {
        let mut c = Connection::connect(&cfg2).await.expect("connect");
        let _ = sync_account(&mut c, &store2, account, &opts).await;
    })
    .await;
    assert!(killed.is_err(), "the sync was expected to be killed");

    // A new run converges.
    let mut conn = connect(&cfg).await;
    let report = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let boxrow = mailboxes::find_by_name(db.store.conn(), account, "Box")
        .await?
        .expect("Box");
    let new_uv = boxrow.status.uidvalidity.expect("uidvalidity");
    assert_ne!(new_uv, old_uv);
    let in_box = emails::list(
        db.store.conn(),
        &emails::EmailFilter {
            mailbox: Some(boxrow.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(in_box.len(), 17, "{report:?}");
    // Same row, new identity, body still cached.
    let again5 = emails::get(db.store.conn(), e5.id).await?;
    assert_eq!(again5.message_id, e5.message_id);
    assert_eq!(
        again5.remote_id,
        emails::imap_remote_id(boxrow.id, u32::try_from(new_uv)?, 5)
    );
    assert!(
        bodies::get(db.store.conn(), e5.id).await?.is_some(),
        "cached body lost"
    );
    let members = emails::memberships(db.store.conn(), e5.id).await?;
    assert_eq!(members.first().and_then(|m| m.uid), Some(5));
    assert_eq!(members.first().and_then(|m| m.uidvalidity), Some(new_uv));
    // Every message of the new numbering exactly once; the vanished five are gone.
    let mut mids: Vec<String> = in_box
        .iter()
        .filter_map(|s| s.email.message_id.clone())
        .collect();
    mids.sort();
    let mut want: Vec<String> = (0..15)
        .chain(30..32)
        .filter_map(|i| g.expected(i).message_id)
        .collect();
    want.sort();
    assert_eq!(mids, want);
    assert_eq!(emails::count(db.store.conn(), account).await?, 17);

    let quiet = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(quiet.totals, SyncCounts::default());
    Ok(())
}

use mailsync_imap_sync::Connection;
