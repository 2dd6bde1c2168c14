//! Mailbox management (CREATE with a special-use role, RENAME, DELETE, SUBSCRIBE/UNSUBSCRIBE)
//! on Dovecot and Cyrus, each checked by a second connection.

use mailsync_imap_sync::{
    Error, ImapConfig, create_mailbox, delete_mailbox, lookup, rename_mailbox, set_subscribed,
};
use mailsync_store::Role;
use mailsync_testkit::{Account, unique_name};

use crate::common::*;

async fn lifecycle(cfg: ImapConfig) -> anyhow::Result<()> {
    let mut conn = connect(&cfg).await;
    let mut other = connect(&cfg).await;
    let parent_name = format!("Projekte ✓ {}", unique_name("m15"));
    let parent = limit(30, create_mailbox(&mut conn, None, &parent_name, None)).await?;
    assert_eq!(parent.name, parent_name);
    let child = limit(
        30,
        create_mailbox(&mut conn, Some(&parent.remote_id), "Kind", None),
    )
    .await?;
    let seen = lookup(&mut other, &child.remote_id)
        .await?
        .expect("child listed");
    assert!(seen.name.starts_with(&parent_name) && seen.name.ends_with("Kind"));

    // A name that exists: the server's NO, nothing else created.
    let again = create_mailbox(&mut conn, None, &parent_name, None).await;
    assert!(matches!(again, Err(Error::No { .. })), "{again:?}");
    // A parent that does not exist.
    let orphan = create_mailbox(&mut conn, Some("no-such-parent-m15"), "x", None).await;
    assert!(matches!(orphan, Err(Error::No { .. })), "{orphan:?}");

    // Rename the child to the top level.
    let moved_name = unique_name("m15-moved");
    let moved = limit(
        30,
        rename_mailbox(&mut conn, &child.remote_id, None, &moved_name),
    )
    .await?;
    assert_eq!(moved.remote_id, moved_name);
    assert!(lookup(&mut other, &child.remote_id).await?.is_none());
    assert!(lookup(&mut other, &moved_name).await?.is_some());

    // Subscribe, then unsubscribe, as another client sees it.
    let s = limit(30, set_subscribed(&mut conn, &moved_name, true)).await?;
    assert_eq!(s.subscribed, Some(true));
    assert_eq!(
        lookup(&mut other, &moved_name)
            .await?
            .and_then(|m| m.subscribed),
        Some(true)
    );
    let s = limit(30, set_subscribed(&mut conn, &moved_name, false)).await?;
    assert_eq!(s.subscribed, Some(false));
    assert_eq!(
        lookup(&mut other, &moved_name)
            .await?
            .and_then(|m| m.subscribed),
        Some(false)
    );

    // Delete both; a second delete is the server's NO.
    limit(30, delete_mailbox(&mut conn, &moved_name)).await?;
    limit(30, delete_mailbox(&mut conn, &parent.remote_id)).await?;
    assert!(lookup(&mut other, &moved_name).await?.is_none());
    assert!(lookup(&mut other, &parent.remote_id).await?.is_none());
    let gone = delete_mailbox(&mut conn, &moved_name).await;
    assert!(matches!(gone, Err(Error::No { .. })), "{gone:?}");
    Ok(())
}

#[tokio::test]
async fn dovecot_mailbox_management() -> anyhow::Result<()> {
    let user = fresh_user("m15");
    let cfg = dovecot(&user);
    lifecycle(cfg.clone()).await?;
    // No CREATE-SPECIAL-USE here: a role is refused before anything is sent.
    let mut conn = connect(&cfg).await;
    assert!(!conn.has_capability("CREATE-SPECIAL-USE"));
    let name = unique_name("m15-archive");
    let r = create_mailbox(&mut conn, None, &name, Some(Role::Archive)).await;
    assert!(
        matches!(&r, Err(Error::MissingCapability { capability }) if capability == "CREATE-SPECIAL-USE"),
        "{r:?}"
    );
    assert!(lookup(&mut conn, &name).await?.is_none());
    Ok(())
}

/// Cyrus (pool user `dr4`) has CREATE-SPECIAL-USE: a role another mailbox holds is refused
/// (`NO [USEATTR]`, RFC 6154 §5.1) with nothing created.
#[tokio::test]
async fn cyrus_mailbox_management_with_role() -> anyhow::Result<()> {
    let cfg = cyrus(&Account::new("dr4", "testpw"));
    lifecycle(cfg.clone()).await?;
    let mut conn = connect(&cfg).await;
    let mut other = connect(&cfg).await;
    assert!(conn.has_capability("CREATE-SPECIAL-USE"));
    if lookup(&mut conn, "Archive").await?.is_none() {
        create_mailbox(&mut conn, None, "Archive", Some(Role::Archive)).await?;
    }
    let name = unique_name("m15-archive");
    let r = create_mailbox(&mut conn, None, &name, Some(Role::Archive)).await;
    assert!(
        matches!(&r, Err(Error::No { code: Some(c), .. }) if c.to_string().contains("USEATTR")),
        "{r:?}"
    );
    assert!(lookup(&mut other, &name).await?.is_none());
    // Deleted, re-created and deleted again within a second: Cyrus's delayed delete answers
    // the second DELETE "NO Mailbox already exists" (the deleted copy's name is taken for that
    // second); it is tried again and goes through.
    let twice = unique_name("m15-twice");
    for _ in 0..2 {
        create_mailbox(&mut conn, None, &twice, None).await?;
        limit(30, delete_mailbox(&mut conn, &twice)).await?;
    }
    assert!(lookup(&mut other, &twice).await?.is_none());
    // Cyrus protects special-use mailboxes: deleting one is refused and it stays.
    let del = delete_mailbox(&mut conn, "Archive").await;
    assert!(matches!(del, Err(Error::No { .. })), "{del:?}");
    let seen = lookup(&mut other, "Archive").await?.expect("still listed");
    assert_eq!(seen.role, Some(Role::Archive));
    Ok(())
}
