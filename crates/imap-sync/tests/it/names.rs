//! Non-ASCII mailbox names (modified UTF-7) and hierarchy, on Dovecot and Cyrus; user-set roles.

use mailsync_imap_sync::{ImapConfig, ImapMutation, SyncOptions, apply, sync_account, utf7};
use mailsync_store::{Role, emails, mailboxes};
use mailsync_testkit::{Account, Generator, Profile, unique_name};

use crate::common::*;

async fn non_ascii_mailbox(cfg: ImapConfig, user: Account, cleanup: bool) -> anyhow::Result<()> {
    let parent = format!("Entwürfe ✓ {}", unique_name("n"));
    let child = format!("{parent}/Ünterordner 日本");
    let g = Generator::with_profile(Profile::small(), 61);
    append(&cfg, &user, &child, (0..3).map(|i| g.message(i)).collect()).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let m = mailboxes::find_by_name(db.store.conn(), account, &child)
        .await?
        .expect("decoded name");
    assert_eq!(m.remote_id, utf7::encode(&child));
    assert_eq!(
        m.parent_remote_id.as_deref(),
        Some(utf7::encode(&parent).as_str())
    );
    assert_eq!(m.delimiter.as_deref(), Some("/"));
    let inside = emails::list(
        db.store.conn(),
        &emails::EmailFilter {
            mailbox: Some(m.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(inside.len(), 3);
    // Commands work on it: move a message out and back.
    let inbox = mailboxes::find_by_role(db.store.conn(), account, Role::Inbox)
        .await?
        .expect("inbox");
    let out = limit(
        30,
        apply(
            &mut conn,
            &db.store,
            &[ImapMutation::Move {
                from: m.id,
                uidvalidity: uv_of(&db, m.id).await?,
                uids: vec![1],
                to: inbox.id,
            }],
        ),
    )
    .await;
    assert!(out[0].is_ok(), "{out:?}");
    let report = limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(report.totals.added, 0, "{report:?}");
    if cleanup {
        other_client(
            &cfg,
            &user,
            vec![
                format!("DELETE {}", mailsync_testkit::imap::quote_mailbox(&child)),
                format!("DELETE {}", mailsync_testkit::imap::quote_mailbox(&parent)),
            ],
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn non_ascii_names_on_dovecot() -> anyhow::Result<()> {
    let user = fresh_user("utf7");
    non_ascii_mailbox(dovecot(&user), user, false).await
}

#[tokio::test]
async fn non_ascii_names_on_cyrus() -> anyhow::Result<()> {
    let user = Account::new("is4", "testpw");
    non_ascii_mailbox(cyrus(&user), user, true).await
}

#[tokio::test]
async fn user_set_role_is_kept_when_the_server_gives_none() -> anyhow::Result<()> {
    let user = fresh_user("role");
    let cfg = dovecot(&user);
    append(
        &cfg,
        &user,
        "Papierkorb alt",
        vec![Generator::new(62).message(0)],
    )
    .await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let m = mailboxes::find_by_name(db.store.conn(), account, "Papierkorb alt")
        .await?
        .expect("box");
    assert_eq!(m.role, None);
    mailboxes::set_role(db.store.conn(), m.id, Some(Role::Archive)).await?;
    limit(
        60,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let m = mailboxes::get(db.store.conn(), m.id).await?;
    assert_eq!(m.role, Some(Role::Archive));
    // Server-given roles are (re)applied.
    let sent = mailboxes::find_by_remote_id(db.store.conn(), account, "Sent")
        .await?
        .expect("Sent");
    assert_eq!(sent.role, Some(Role::Sent));
    Ok(())
}
