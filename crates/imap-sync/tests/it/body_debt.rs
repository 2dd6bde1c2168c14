//! Bodies are a debt: whatever the body policy wants and the cache lacks is fetched by later
//! syncs, so a connection cut during a body download loses nothing (Dovecot, fault proxy).

use mailsync_imap_sync::{MailboxResult, SyncCounts, SyncOptions, sync_account, sync_mailbox};
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountId, BodyPolicy, Role, bodies, mailboxes};
use mailsync_testkit::{Cut, FaultProxy, Generator};

use crate::common::*;

/// (emails, emails with a cached body whose text holds the generator's token).
async fn cached(db: &TempDb, g: &Generator, n: usize) -> anyhow::Result<(usize, usize)> {
    let tokens: Vec<String> = (0..n).map(|i| g.expected(i).token).collect();
    let list = emails::list(db.store.conn(), &EmailFilter::default()).await?;
    let mut with_body = 0;
    for s in &list {
        if let Some(b) = bodies::get(db.store.conn(), s.email.id).await? {
            let text = b.text.unwrap_or_default();
            assert!(
                tokens.iter().any(|t| text.contains(t.as_str())),
                "a cached body is the message's own"
            );
            with_body += 1;
        }
    }
    Ok((list.len(), with_body))
}

/// First sync cut `cut_kb` KB into the body download, then clean syncs. Returns the outcomes.
async fn cut_then_clean(
    tag: &str,
    policy: BodyPolicy,
    batch: usize,
    cut_kb: u64,
) -> anyhow::Result<()> {
    let user = fresh_user(tag);
    let cfg = dovecot(&user);
    let g = Generator::new(61);
    let n = 300;
    append(&cfg, &user, "INBOX", (0..n).map(|i| g.message(i)).collect()).await?;
    let wanted = (0..n)
        .filter(|&i| policy.wants(g.expected(i).size as u64))
        .count();
    assert!(wanted > 100, "enough bodies to cut into");

    let s = servers();
    let proxy = FaultProxy::start(s.dovecot_host(), s.dovecot_imap_port())?;
    let (db, account): (TempDb, AccountId) = store().await?;
    // No server previews: the preview must come from the downloaded body.
    let pcfg = dovecot_via(&proxy, &user).disable_extension("PREVIEW");
    let opts = SyncOptions::default()
        .with_body_policy(policy)
        .with_batch_size(batch);

    proxy.arm(Cut::after_client_sends(b"BODY.PEEK[]", cut_kb * 1024));
    let mut conn = connect(&pcfg).await;
    let first = limit(120, sync_account(&mut conn, &db.store, account, &opts)).await;
    let err = first.expect_err("the cut fails the first sync");
    assert!(err.is_connection(), "{err:?}");
    assert_eq!(proxy.cuts(), 1);
    drop(conn);
    let (_, after_cut) = cached(&db, &g, n).await?;
    assert!(
        after_cut < wanted,
        "the cut came before every body was stored"
    );

    // A clean sync pays the debt.
    let mut conn = connect(&pcfg).await;
    limit(120, sync_account(&mut conn, &db.store, account, &opts)).await?;
    let (stored, with_body) = cached(&db, &g, n).await?;
    assert_eq!(stored, n);
    assert_eq!(
        with_body, wanted,
        "{policy:?}: every wanted body cached after a clean sync"
    );
    let with_preview = emails::list(db.store.conn(), &EmailFilter::default())
        .await?
        .iter()
        .filter(|s| s.email.preview.is_some())
        .count();
    assert!(with_preview >= wanted, "previews come with the bodies");

    // Nothing owed any more: a third sync skips the unchanged mailbox.
    assert!(
        bodies::mailboxes_with_debt(db.store.conn(), account, policy)
            .await?
            .is_empty()
    );
    let third = limit(60, sync_account(&mut conn, &db.store, account, &opts)).await?;
    assert!(
        third
            .mailboxes
            .iter()
            .all(|m| matches!(m.result, MailboxResult::Skipped)),
        "{third:?}"
    );
    assert_eq!(cached(&db, &g, n).await?.1, wanted);
    Ok(())
}

#[tokio::test]
async fn bodies_all_cut_mid_download_then_clean_sync_caches_every_body() -> anyhow::Result<()> {
    cut_then_clean("debtall", BodyPolicy::All, 50, 50).await
}

#[tokio::test]
async fn bodies_by_size_cut_mid_download_then_clean_sync_caches_every_body() -> anyhow::Result<()> {
    cut_then_clean("debtmax", BodyPolicy::MaxBytes(32 * 1024), 1000, 50).await
}

#[tokio::test]
async fn a_policy_raised_later_fetches_the_bodies_of_stored_messages() -> anyhow::Result<()> {
    let user = fresh_user("debtraise");
    let cfg = dovecot(&user);
    let g = Generator::new(62);
    let n = 40;
    append(&cfg, &user, "INBOX", (0..n).map(|i| g.message(i)).collect()).await?;
    append(&cfg, &user, "Other", (0..n).map(|i| g.message(i)).collect()).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    let none = SyncOptions::default();
    limit(60, sync_account(&mut conn, &db.store, account, &none)).await?;
    assert_eq!(cached(&db, &g, n).await?, (2 * n, 0));
    let all = SyncOptions::default().with_body_policy(BodyPolicy::All);
    // One unchanged mailbox on its own: it finds its debt with its own query.
    let inbox = mailboxes::find_by_role(db.store.conn(), account, Role::Inbox)
        .await?
        .expect("inbox");
    let c = limit(
        60,
        sync_mailbox(&mut conn, &db.store, account, &inbox, &all),
    )
    .await?;
    assert_eq!(c, SyncCounts::default());
    assert_eq!(cached(&db, &g, n).await?, (2 * n, n));
    // Nothing changed on the server: every mailbox is skipped, and still gets its bodies.
    let r = limit(60, sync_account(&mut conn, &db.store, account, &all)).await?;
    assert!(r.mailboxes.len() >= 2);
    assert!(
        r.mailboxes
            .iter()
            .all(|m| matches!(m.result, MailboxResult::Skipped)),
        "{r:?}"
    );
    assert_eq!(cached(&db, &g, n).await?, (2 * n, 2 * n));
    Ok(())
}
