//! A message whose BODYSTRUCTURE carries raw 8-bit (non-UTF-8) parameters makes imap-proto
//! fail, which closes async-imap's stream. The sync must still converge: it reconnects,
//! fetches that message without BODYSTRUCTURE and goes on.

use mailsync_imap_sync::{ImapConfig, SyncCounts, SyncOptions, sync_account};
use mailsync_store::{emails, mailboxes};
use mailsync_testkit::{Account, Generator, Profile, unique_name};

use crate::common::*;

fn latin1_message(mid: &str) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(
        b"From: J\xf6rg <j@x.test>\r\nTo: a@b.test\r\nSubject: caf\xe9 raw latin1\r\n",
    );
    m.extend_from_slice(format!("Message-ID: <{mid}>\r\n").as_bytes());
    m.extend_from_slice(b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nHall\xf6 Welt\r\n--BB\r\nContent-Type: application/pdf; name=\"Gr\xfc\xdfe.pdf\"\r\nContent-Disposition: attachment; filename=\"Gr\xfc\xdfe.pdf\"\r\nContent-Description: d\xe9sc\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--BB--\r\n");
    m
}

async fn converges(cfg: ImapConfig, user: Account, mailbox: &str) -> anyhow::Result<()> {
    let g = Generator::with_profile(Profile::small(), u64::from(std::process::id()));
    let mid = format!("{}@poison.test", unique_name("p"));
    let mut msgs: Vec<Vec<u8>> = (0..5).map(|i| g.message(i)).collect();
    msgs.push(latin1_message(&mid));
    msgs.extend((5..10).map(|i| g.message(i)));
    append(&cfg, &user, mailbox, msgs).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    let report = limit(
        60,
        sync_account(
            &mut conn,
            &db.store,
            account,
            &SyncOptions::default().with_batch_size(3),
        ),
    )
    .await?;
    let mb = mailboxes::find_by_remote_id(db.store.conn(), account, mailbox)
        .await?
        .expect("mailbox");
    let inside = emails::list(
        db.store.conn(),
        &emails::EmailFilter {
            mailbox: Some(mb.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(inside.len(), 11, "{report:?}");
    let bad = emails::find_by_message_id(db.store.conn(), account, &mid).await?;
    let bad = bad.first().expect("the 8-bit message");
    assert_eq!(bad.subject.as_deref(), Some("café raw latin1"));
    assert_eq!(
        bad.from.first().and_then(|a| a.name.as_deref()),
        Some("Jörg")
    );
    assert!(bad.has_attachment);
    let atts = emails::attachments(db.store.conn(), bad.id).await?;
    assert_eq!(atts.len(), 1);
    assert_eq!(
        atts.first().map(|a| a.mime_type.as_str()),
        Some("application/pdf")
    );
    assert!(
        bad.preview.as_deref().is_some_and(|p| p.contains("Welt")),
        "{:?}",
        bad.preview
    );
    let again = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(again.totals, SyncCounts::default(), "{again:?}");
    Ok(())
}

#[tokio::test]
async fn raw_8bit_bodystructure_on_dovecot() -> anyhow::Result<()> {
    let user = fresh_user("poison");
    // (Cyrus is not tested here: it replaces 8-bit header bytes with `X` on APPEND, so its
    // BODYSTRUCTURE never carries them.)
    converges(dovecot(&user), user, "INBOX").await
}
