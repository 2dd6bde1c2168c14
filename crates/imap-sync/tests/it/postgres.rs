//! The same sync on PostgreSQL: first sync, incremental change, UIDVALIDITY rescan.

use mailsync_imap_sync::{SyncCounts, SyncOptions, sync_account};
use mailsync_store::testing::TempDb;
use mailsync_store::{emails, mailboxes};
use mailsync_testkit::{Generator, Profile};

use crate::common::*;

#[tokio::test]
async fn sync_on_postgres() -> anyhow::Result<()> {
    let user = fresh_user("pg");
    let u = user.user.clone();
    let cfg = dovecot(&user);
    let g = Generator::new(81);
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
        "Box",
        (300..320)
            .map(|i| Generator::with_profile(Profile::small(), 81).message(i))
            .collect(),
    )
    .await?;
    let db = TempDb::postgres().await?;
    let result = async {
        let account = add_account(&db).await?;
        let mut conn = connect(&cfg).await;
        let r = limit(
            60,
            sync_account(
                &mut conn,
                &db.store,
                account,
                &SyncOptions::default().with_batch_size(128),
            ),
        )
        .await?;
        assert_eq!(r.totals.added, 320);
        let inbox = mailboxes::find_by_remote_id(db.store.conn(), account, "INBOX")
            .await?
            .expect("inbox");
        crate::sync_dovecot::verify_against_generator(&db, account, inbox.id, &g, 0..300, true)
            .await?;
        let d = |args: &[&str]| -> Vec<String> { args.iter().map(|s| (*s).to_owned()).collect() };
        doveadm(d(&[
            "flags", "add", "-u", &u, "\\Seen", "mailbox", "INBOX", "uid", "1:10",
        ]))
        .await?;
        doveadm(d(&[
            "expunge", "-u", &u, "mailbox", "INBOX", "uid", "20:24",
        ]))
        .await?;
        doveadm(d(&["mailbox", "delete", "-u", &u, "Box"])).await?;
        doveadm(d(&["mailbox", "create", "-u", &u, "Box"])).await?;
        append(
            &cfg,
            &user,
            "Box",
            (300..310)
                .map(|i| Generator::with_profile(Profile::small(), 81).message(i))
                .collect(),
        )
        .await?;
        let r = limit(
            60,
            sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
        )
        .await?;
        assert_eq!(
            r.totals,
            SyncCounts {
                added: 0,
                updated: 10 + 10,
                removed: 5 + 10
            },
            "{r:?}"
        );
        assert_eq!(emails::count(db.store.conn(), account).await?, 300 - 5 + 10);
        anyhow::Ok(())
    }
    .await;
    db.cleanup().await?;
    result
}
