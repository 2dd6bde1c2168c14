//! A mailbox deleted on the server in the middle of an account sync (after LIST, before its
//! turn) costs that mailbox only: it is reported failed while the others sync, every other
//! checkpoint stays, and the next pass removes it without downloading anything again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mailsync_imap_sync::{MailboxResult, SyncOptions, sync_account};
use mailsync_store::checkpoints::{self, Scope};
use mailsync_store::mailboxes;
use mailsync_testkit::{Generator, Profile};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_deleted_mid_sync_costs_that_mailbox_only() -> anyhow::Result<()> {
    let user = fresh_user("midsync");
    let cfg = dovecot(&user);
    let g = Generator::with_profile(Profile::small(), 91);
    // INBOX is synced first and large enough to take several batches; "Doomed" and "Kept"
    // come after it.
    append(
        &cfg,
        &user,
        "INBOX",
        (0..300).map(|i| g.message(i)).collect(),
    )
    .await?;
    append(
        &cfg,
        &user,
        "Doomed",
        (300..305).map(|i| g.message(i)).collect(),
    )
    .await?;
    append(
        &cfg,
        &user,
        "Kept",
        (305..310).map(|i| g.message(i)).collect(),
    )
    .await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let kept = mailboxes::find_by_remote_id(db.store.conn(), account, "Kept")
        .await?
        .expect("Kept");
    let kept_cp = checkpoints::get(db.store.conn(), account, &Scope::imap_mailbox(kept.id)).await?;

    // New mail in INBOX makes the next pass fetch in batches; at its first batch, another
    // client deletes "Doomed" (already listed by this pass).
    append(
        &cfg,
        &user,
        "INBOX",
        (310..400).map(|i| g.message(i)).collect(),
    )
    .await?;
    // ...and in Doomed, so that this pass must select it.
    append(&cfg, &user, "Doomed", vec![g.message(400)]).await?;
    let fired = Arc::new(AtomicBool::new(false));
    let (f2, u) = (fired.clone(), user.user.clone());
    let opts = SyncOptions::default()
        .with_batch_size(20)
        .with_progress(Arc::new(move |_| {
            if !f2.swap(true, Ordering::SeqCst) {
                servers()
                    .doveadm(&["mailbox", "delete", "-u", &u, "Doomed"])
                    .expect("delete Doomed");
            }
        }));
    let report = limit(60, sync_account(&mut conn, &db.store, account, &opts)).await?;
    assert!(
        fired.load(Ordering::SeqCst),
        "the deletion happened mid-sync"
    );
    let by_name = |n: &str| report.mailboxes.iter().find(|m| m.name == n);
    assert!(
        matches!(
            by_name("Doomed").map(|m| &m.result),
            Some(MailboxResult::Failed(_))
        ),
        "{report:?}"
    );
    assert!(
        matches!(by_name("INBOX").map(|m| &m.result), Some(MailboxResult::Synced(c)) if c.added == 90),
        "{report:?}"
    );
    assert!(!report.complete());
    // Nothing else lost its checkpoint.
    assert_eq!(
        checkpoints::get(db.store.conn(), account, &Scope::imap_mailbox(kept.id)).await?,
        kept_cp
    );
    // The next pass drops the mailbox and downloads nothing again.
    let again = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(again.mailboxes_removed, 1, "{again:?}");
    assert_eq!(again.totals.added, 0, "{again:?}");
    assert!(again.complete());
    assert!(
        mailboxes::find_by_remote_id(db.store.conn(), account, "Doomed")
            .await?
            .is_none()
    );
    Ok(())
}
