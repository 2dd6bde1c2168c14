//! Mutations against Dovecot: every kind, typed outcomes for refusals, fallbacks without
//! MOVE/UIDPLUS, connection loss.

use mailsync_imap_sync::{
    ImapConfig, ImapMutation, MutationOutcome, ResponseCode, SyncOptions, apply, sync_account,
};
use mailsync_store::emails::{self, EmailUpsert, Membership};
use mailsync_store::testing::TempDb;
use mailsync_store::{AccountId, MailboxId, Role, mailboxes};
use mailsync_testkit::{Account, Generator, Profile};

use crate::common::*;

async fn server_uids_and_flags(
    cfg: &ImapConfig,
    user: &Account,
    mailbox: &str,
) -> anyhow::Result<Vec<String>> {
    let lines = other_client(
        cfg,
        user,
        vec![
            format!("EXAMINE {}", mailsync_testkit::imap::quote_mailbox(mailbox)),
            "UID FETCH 1:* (UID FLAGS)".into(),
        ],
    )
    .await?;
    Ok(lines
        .into_iter()
        .filter(|l| l.contains(" FETCH "))
        .collect())
}

async fn role(db: &TempDb, account: AccountId, r: Role) -> anyhow::Result<MailboxId> {
    Ok(mailboxes::find_by_role(db.store.conn(), account, r)
        .await?
        .expect("role")
        .id)
}

async fn uid_of(
    db: &TempDb,
    id: mailsync_store::EmailId,
) -> anyhow::Result<(MailboxId, Option<i64>)> {
    let m = emails::memberships(db.store.conn(), id).await?;
    let m = m.first().expect("membership");
    Ok((m.mailbox_id, m.uid))
}

#[tokio::test]
async fn every_mutation_kind() -> anyhow::Result<()> {
    let user = fresh_user("mut");
    let cfg = dovecot(&user);
    let g = Generator::with_profile(Profile::small(), 41);
    append(
        &cfg,
        &user,
        "INBOX",
        (0..10).map(|i| g.message(i)).collect(),
    )
    .await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let inbox = role(&db, account, Role::Inbox).await?;
    let archive = role(&db, account, Role::Archive).await?;
    let trash = role(&db, account, Role::Trash).await?;
    let drafts = role(&db, account, Role::Drafts).await?;
    let inbox_row = mailboxes::get(db.store.conn(), inbox).await?;
    let uv = u32::try_from(inbox_row.status.uidvalidity.expect("uv"))?;
    let id_of = |uid: u32| emails::imap_remote_id(inbox, uv, uid);
    let e4 = emails::find_by_remote_id(db.store.conn(), account, &id_of(4))
        .await?
        .expect("4");
    let e6 = emails::find_by_remote_id(db.store.conn(), account, &id_of(6))
        .await?
        .expect("6");

    // A local draft row (no UID yet) that an APPEND should adopt.
    let draft_raw = g.message(50);
    let draft_mid = g.expected(50).message_id.expect("message-id");
    let mut local = EmailUpsert::new("local:draft-1", chrono::Utc::now());
    local.message_id = Some(draft_mid.clone());
    local.mailboxes = vec![Membership::plain(drafts)];
    emails::upsert_batch(db.store.conn(), account, &[local]).await?;
    let local_id = emails::find_by_remote_id(db.store.conn(), account, "local:draft-1")
        .await?
        .expect("local")
        .id;

    let items = vec![
        ImapMutation::AddFlags {
            mailbox: inbox,
            uidvalidity: uv_of(&db, inbox).await?,
            uids: vec![1],
            flags: vec!["\\Flagged".into(), "$Forwarded".into()],
        },
        ImapMutation::AddFlags {
            mailbox: inbox,
            uidvalidity: uv_of(&db, inbox).await?,
            uids: vec![2],
            flags: vec!["\\Flagged".into(), "$Forwarded".into()],
        },
        ImapMutation::AddFlags {
            mailbox: inbox,
            uidvalidity: uv_of(&db, inbox).await?,
            uids: vec![3],
            flags: vec!["\\Seen".into()],
        },
        ImapMutation::RemoveFlags {
            mailbox: inbox,
            uidvalidity: uv_of(&db, inbox).await?,
            uids: vec![3],
            flags: vec!["\\Seen".into()],
        },
        ImapMutation::Move {
            from: inbox,
            uidvalidity: uv_of(&db, inbox).await?,
            uids: vec![4, 5],
            to: archive,
        },
        ImapMutation::Move {
            from: inbox,
            uidvalidity: uv_of(&db, inbox).await?,
            uids: vec![6],
            to: trash,
        },
        ImapMutation::Append {
            mailbox: drafts,
            raw: draft_raw,
            flags: vec!["\\Draft".into(), "\\Seen".into()],
            internal_date: Some(chrono::Utc::now()),
            local: Some(local_id),
            look_first: None,
        },
    ];
    let out = limit(30, apply(&mut conn, &db.store, &items)).await;
    assert_eq!(out.len(), items.len());
    assert!(out.iter().all(MutationOutcome::is_ok), "{out:#?}");
    let MutationOutcome::Ok {
        moved, uidvalidity, ..
    } = &out[4]
    else {
        unreachable!()
    };
    assert_eq!(moved.iter().map(|m| m.0).collect::<Vec<_>>(), vec![4, 5]);
    assert!(uidvalidity.is_some());
    let MutationOutcome::Ok { appended_uid, .. } = &out[6] else {
        unreachable!()
    };
    assert!(appended_uid.is_some());

    // The server agrees.
    let inbox_fetch = server_uids_and_flags(&cfg, &user, "INBOX").await?;
    assert_eq!(inbox_fetch.len(), 7, "{inbox_fetch:?}");
    let line = |uid: u32| {
        inbox_fetch
            .iter()
            .find(|l| l.contains(&format!("UID {uid} ")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        line(1).contains("\\Flagged") && line(1).contains("$Forwarded"),
        "{}",
        line(1)
    );
    assert!(line(2).contains("\\Flagged"));
    assert!(!line(3).contains("\\Seen"), "{}", line(3));
    assert_eq!(
        server_uids_and_flags(&cfg, &user, "Archive").await?.len(),
        2
    );
    assert_eq!(server_uids_and_flags(&cfg, &user, "Trash").await?.len(), 1);
    let drafts_fetch = server_uids_and_flags(&cfg, &user, "Drafts").await?;
    assert!(
        drafts_fetch.len() == 1 && drafts_fetch[0].contains("\\Draft"),
        "{drafts_fetch:?}"
    );

    // Moved rows kept their local id; the appended draft row got its server identity.
    assert_eq!(uid_of(&db, e4.id).await?.0, archive);
    assert_eq!(uid_of(&db, e6.id).await?.0, trash);
    let (mb, uid) = uid_of(&db, local_id).await?;
    assert_eq!((mb, uid), (drafts, appended_uid.map(i64::from)));

    // Deleting in the trash expunges.
    let trash_row = mailboxes::get(db.store.conn(), trash).await?;
    let (_, trash_uid) = uid_of(&db, e6.id).await?;
    let trash_uid = u32::try_from(trash_uid.expect("uid in trash"))?;
    let out = limit(
        30,
        apply(
            &mut conn,
            &db.store,
            &[ImapMutation::Delete {
                mailbox: trash_row.id,
                uidvalidity: uv_of(&db, trash_row.id).await?,
                uids: vec![trash_uid],
            }],
        ),
    )
    .await;
    assert!(out[0].is_ok(), "{out:?}");
    assert!(
        server_uids_and_flags(&cfg, &user, "Trash")
            .await?
            .is_empty()
    );
    assert!(
        emails::get(db.store.conn(), e6.id).await.is_err(),
        "expunged row still there"
    );

    // A check changes nothing and reads presence back: the expunged UID is missing, the moved
    // one is where it went.
    let (_, archive_uid) = uid_of(&db, e4.id).await?;
    let archive_uid = u32::try_from(archive_uid.expect("uid in archive"))?;
    // (\Recent belongs to the first session that sees a message, so it is left out.)
    let archive_now = || async {
        let v = server_uids_and_flags(&cfg, &user, "Archive").await?;
        anyhow::Ok(
            v.into_iter()
                .map(|l| l.replace("\\Recent", ""))
                .collect::<Vec<_>>(),
        )
    };
    let before = archive_now().await?;
    let out = limit(
        30,
        apply(
            &mut conn,
            &db.store,
            &[
                ImapMutation::Confirm {
                    mailbox: trash_row.id,
                    uidvalidity: uv_of(&db, trash_row.id).await?,
                    uids: vec![trash_uid],
                },
                ImapMutation::Confirm {
                    mailbox: archive,
                    uidvalidity: uv_of(&db, archive).await?,
                    uids: vec![archive_uid],
                },
            ],
        ),
    )
    .await;
    let missing = |o: &MutationOutcome| match o {
        MutationOutcome::Ok { missing, .. } => Some(missing.clone()),
        _ => None,
    };
    assert_eq!(missing(&out[0]), Some(vec![trash_uid]), "{out:?}");
    assert_eq!(missing(&out[1]), Some(vec![]), "{out:?}");
    assert_eq!(archive_now().await?, before);

    // A resync adds nothing twice: moved and appended messages were adopted.
    let report = limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(report.totals.added, 0, "{report:?}");
    assert_eq!(emails::count(db.store.conn(), account).await?, 10 - 1 + 1);
    assert_eq!(
        emails::find_by_message_id(db.store.conn(), account, &draft_mid)
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn refusals_are_typed_never_success() -> anyhow::Result<()> {
    let user = fresh_user("mutno");
    let u = user.user.clone();
    let cfg = dovecot(&user);
    let g = Generator::with_profile(Profile::small(), 42);
    append(&cfg, &user, "INBOX", (0..3).map(|i| g.message(i)).collect()).await?;
    append(&cfg, &user, "Gone", (3..4).map(|i| g.message(i)).collect()).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let inbox = role(&db, account, Role::Inbox).await?;
    let gone = mailboxes::find_by_name(db.store.conn(), account, "Gone")
        .await?
        .expect("Gone")
        .id;
    doveadm(vec![
        "mailbox".into(),
        "delete".into(),
        "-u".into(),
        u,
        "Gone".into(),
    ])
    .await?;

    let out = limit(
        30,
        apply(
            &mut conn,
            &db.store,
            &[
                ImapMutation::Move {
                    from: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![1],
                    to: gone,
                },
                ImapMutation::AddFlags {
                    mailbox: gone,
                    uidvalidity: uv_of(&db, gone).await?,
                    uids: vec![1],
                    flags: vec!["\\Seen".into()],
                },
                ImapMutation::AddFlags {
                    mailbox: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![0],
                    flags: vec!["\\Seen".into()],
                },
                ImapMutation::AddFlags {
                    mailbox: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![1],
                    flags: vec!["bad flag".into()],
                },
                ImapMutation::Move {
                    from: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![2],
                    to: MailboxId(987_654),
                },
                ImapMutation::AddFlags {
                    mailbox: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![2],
                    flags: vec!["\\Answered".into()],
                },
            ],
        ),
    )
    .await;
    assert!(
        matches!(
            &out[0],
            MutationOutcome::Permanent {
                code: Some(ResponseCode::TryCreate),
                ..
            }
        ),
        "move to a missing mailbox: {:?}",
        out[0]
    );
    assert!(
        matches!(&out[1], MutationOutcome::SourceGone { .. }),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(&out[2], MutationOutcome::Permanent { reason, .. } if reason.contains("BAD")),
        "UID 0: {:?}",
        out[2]
    );
    assert!(
        matches!(&out[3], MutationOutcome::Permanent { .. }),
        "{:?}",
        out[3]
    );
    assert!(
        matches!(&out[4], MutationOutcome::Permanent { .. }),
        "{:?}",
        out[4]
    );
    // Syncing the vanished mailbox is a typed NO, not an empty success.
    let gone_row = mailboxes::get(db.store.conn(), gone).await?;
    let err = limit(
        30,
        mailsync_imap_sync::sync_mailbox(
            &mut conn,
            &db.store,
            account,
            &gone_row,
            &SyncOptions::default(),
        ),
    )
    .await
    .expect_err("synced a deleted mailbox");
    assert!(err.is_no() && !err.is_connection(), "{err:?}");
    // The connection survived all of that.
    assert!(out[5].is_ok(), "{:?}", out[5]);
    let inbox_fetch = server_uids_and_flags(&cfg, &user, "INBOX").await?;
    assert_eq!(
        inbox_fetch.len(),
        3,
        "the refused move moved something: {inbox_fetch:?}"
    );
    Ok(())
}

#[tokio::test]
async fn fallbacks_without_move_and_uidplus() -> anyhow::Result<()> {
    let user = fresh_user("mutfb");
    let cfg = dovecot(&user)
        .disable_extension("MOVE")
        .disable_extension("UIDPLUS");
    let g = Generator::with_profile(Profile::small(), 43);
    append(&cfg, &user, "INBOX", (0..5).map(|i| g.message(i)).collect()).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    assert!(!conn.has_capability("MOVE"));
    limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let inbox = role(&db, account, Role::Inbox).await?;
    let archive = role(&db, account, Role::Archive).await?;
    let trash = role(&db, account, Role::Trash).await?;
    let out = limit(
        30,
        apply(
            &mut conn,
            &db.store,
            &[
                ImapMutation::Move {
                    from: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![1, 2],
                    to: archive,
                },
                ImapMutation::Move {
                    from: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![3],
                    to: trash,
                },
            ],
        ),
    )
    .await;
    assert!(out.iter().all(MutationOutcome::is_ok), "{out:?}");
    assert_eq!(server_uids_and_flags(&cfg, &user, "INBOX").await?.len(), 2);
    assert_eq!(
        server_uids_and_flags(&cfg, &user, "Archive").await?.len(),
        2
    );
    assert_eq!(server_uids_and_flags(&cfg, &user, "Trash").await?.len(), 1);
    let report = limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    assert_eq!(report.totals.added, 0, "{report:?}");
    assert_eq!(emails::count(db.store.conn(), account).await?, 5);
    let _ = trash;
    Ok(())
}

#[tokio::test]
async fn connection_loss_leaves_the_item_under_way_unknown_and_the_rest_transient()
-> anyhow::Result<()> {
    let user = fresh_user("mutlost");
    let u = user.user.clone();
    let cfg = dovecot(&user);
    let g = Generator::with_profile(Profile::small(), 44);
    append(&cfg, &user, "INBOX", (0..3).map(|i| g.message(i)).collect()).await?;
    let (db, account) = store().await?;
    let mut conn = connect(&cfg).await;
    limit(
        30,
        sync_account(&mut conn, &db.store, account, &SyncOptions::default()),
    )
    .await?;
    let inbox = role(&db, account, Role::Inbox).await?;
    doveadm(vec!["kick".into(), u]).await?;
    // Let the kicked session go away (it may still answer a command it already read).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = limit(
        30,
        apply(
            &mut conn,
            &db.store,
            &[
                ImapMutation::AddFlags {
                    mailbox: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![1],
                    flags: vec!["\\Seen".into()],
                },
                ImapMutation::Move {
                    from: inbox,
                    uidvalidity: uv_of(&db, inbox).await?,
                    uids: vec![2],
                    to: inbox,
                },
            ],
        ),
    )
    .await;
    // The first command's fate is unknown to the client (the server may have read it before
    // the session ended); the second was never sent.
    assert!(
        matches!(out[0], MutationOutcome::Interrupted { .. })
            && matches!(out[1], MutationOutcome::Transient { .. }),
        "{out:?}"
    );
    assert!(!conn.is_usable());
    Ok(())
}
