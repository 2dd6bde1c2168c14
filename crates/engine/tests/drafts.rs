//! Drafts end to end on both protocols: a draft saved while no cycle runs (offline) and updated
//! twice is one queued upload; after a cycle the server's Drafts holds exactly one copy with the
//! latest content; an update replaces it (still one copy); sending it leaves none in Drafts,
//! exactly one in Sent and one delivery at the SMTP sink. IMAP on Dovecot + the sink, JMAP on
//! Cyrus; the server side is checked by another IMAP client on the same mail store. An upload
//! whose answer is cut after the server stored it is stored once (IMAP; the JMAP path is
//! replayed by the model test's regressions).

mod common;

use std::time::Duration;

use common::{CyrusJmap, E, dovecot_account, dovecot_account_via_proxy, dovecot_client};
use mailsync_engine::Engine;
use mailsync_outbox::OutgoingMessage;
use mailsync_store::accounts::{Account, Endpoint};
use mailsync_store::testing::TempDb;
use mailsync_store::{Address, Role, Security, emails, mailboxes};
use mailsync_testkit::{Cut, ImapClient, Servers, sink_messages, unique_name};

type R = Result<(), E>;

fn addr(e: &str) -> Address {
    Address {
        name: None,
        email: e.into(),
    }
}

/// The bodies of the messages in `mailbox` as another client sees them (with their flags).
fn server_copies(imap: &mut ImapClient, mailbox: &str) -> Result<Vec<String>, E> {
    let n = imap.select(mailbox)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let r = imap.command("FETCH 1:* (FLAGS BODY.PEEK[TEXT])")?;
    let text: Vec<String> = r.lines().collect();
    let joined = text.join("\n");
    Ok(joined
        .split("* ")
        .filter(|s| s.contains("FETCH"))
        .map(str::to_owned)
        .collect())
}

async fn queued(engine: &Engine, account: &Account) -> Result<usize, E> {
    Ok(engine.outbox().pending(account.id).await?.len())
}

/// The whole draft life cycle against one account; `imap` is another client on its mail.
async fn life_cycle(
    engine: &Engine,
    account: &Account,
    imap: &mut ImapClient,
    sink: &std::path::Path,
) -> R {
    let store = engine.store();
    let drafts = mailboxes::find_by_role(store.conn(), account.id, Role::Drafts)
        .await?
        .ok_or("no Drafts mailbox")?;
    let sent = mailboxes::find_by_role(store.conn(), account.id, Role::Sent)
        .await?
        .ok_or("no Sent mailbox")?;
    let subject = unique_name("draft15");
    let msg = |v: u32| OutgoingMessage {
        from: addr(&account.email),
        to: vec![addr("bob@example.test")],
        bcc: vec![addr("hidden@example.test")],
        subject: subject.clone(),
        text: format!("draft body version {v}\r\n"),
        ..Default::default()
    };

    // Offline: saved, then updated twice before any cycle. One queued row, one local draft.
    let id = engine.save_draft(account.id, None, msg(1)).await?;
    assert_eq!(engine.save_draft(account.id, Some(id), msg(2)).await?, id);
    assert_eq!(engine.save_draft(account.id, Some(id), msg(3)).await?, id);
    assert_eq!(
        queued(engine, account).await?,
        1,
        "successive saves coalesce"
    );
    let local = emails::get(store.conn(), id).await?;
    assert!(local.flags.draft);
    let members = emails::memberships(store.conn(), id).await?;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].mailbox_id, drafts.id);
    assert!(server_copies(imap, &drafts.name)?.is_empty());

    // The cycle uploads only the latest version.
    engine.sync_once(account.id).await?;
    let failed = engine.outbox().failed(account.id).await?;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(queued(engine, account).await?, 0);
    let copies = server_copies(imap, &drafts.name)?;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].contains("version 3"), "{copies:?}");
    assert!(copies[0].contains("\\Draft"), "{copies:?}");
    let local = emails::get(store.conn(), id).await?;
    assert!(
        !local.remote_id.starts_with("local-draft:"),
        "{}",
        local.remote_id
    );

    // An update online replaces the server's copy: still exactly one.
    assert_eq!(engine.save_draft(account.id, Some(id), msg(4)).await?, id);
    engine.sync_once(account.id).await?;
    let copies = server_copies(imap, &drafts.name)?;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].contains("version 4"), "{copies:?}");
    let in_drafts = emails::list(
        store.conn(),
        &emails::EmailFilter {
            account: Some(account.id),
            mailbox: Some(drafts.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(in_drafts.len(), 1, "one local draft after the sync");

    // Send it: gone from Drafts, one copy in Sent, one delivery.
    engine.send_draft(account.id, id).await?;
    engine.sync_once(account.id).await?;
    engine.sync_once(account.id).await?;
    assert_eq!(queued(engine, account).await?, 0);
    assert!(
        server_copies(imap, &drafts.name)?.is_empty(),
        "nothing left in Drafts"
    );
    let sent_copies: Vec<String> = server_copies(imap, &sent.name)?
        .into_iter()
        .filter(|c| c.contains("version 4"))
        .collect();
    assert_eq!(sent_copies.len(), 1, "{sent_copies:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let n: Vec<_> = sink_messages(sink)?
            .into_iter()
            .filter(|m| m.header("Subject").as_deref() == Some(subject.as_str()))
            .collect();
        if !n.is_empty() || std::time::Instant::now() > deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            break sink_messages(sink)?
                .into_iter()
                .filter(|m| m.header("Subject").as_deref() == Some(subject.as_str()))
                .collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered.len(), 1, "delivered exactly once");
    let raw = String::from_utf8_lossy(&delivered[0].raw).into_owned();
    assert!(raw.contains("version 4"), "{raw}");
    assert!(delivered[0].header("Bcc").is_none(), "Bcc is envelope only");
    assert!(
        emails::get(store.conn(), id).await.is_err(),
        "the local draft row is gone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_draft_saved_offline_updated_and_sent() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("i15draft");
    let db = TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let mut new = dovecot_account(&servers, &user.user, &user.password);
    new.smtp = Some(Endpoint {
        host: "127.0.0.1".into(),
        port: servers.smtp_port(),
        security: Security::Plain,
    });
    let account = engine.add_account(new).await?;
    engine.sync_once(account.id).await?;
    let mut imap = dovecot_client(&servers, &user)?;
    let res = tokio::time::timeout(
        Duration::from_secs(90),
        life_cycle(&engine, &account, &mut imap, servers.smtp_sink_dir()),
    )
    .await;
    db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_draft_saved_offline_updated_and_sent() -> R {
    let user = mailsync_testkit::accounts::DRAFTS.user(1);
    let mut c = CyrusJmap::setup(&user, &["Drafts", "Sent"], 0).await?;
    let res = tokio::time::timeout(
        Duration::from_secs(90),
        life_cycle(
            &c.engine,
            &c.account,
            &mut c.other,
            c.servers.smtp_sink_dir(),
        ),
    )
    .await;
    c.db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

/// A draft upload whose answer is cut after Dovecot stored it (the connection is cut at the
/// first server byte after the APPEND): the retry, uncertain, finds the stored copy by its
/// Message-ID instead of appending a second one. One copy on the server, one local row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_draft_upload_cut_before_its_answer_is_stored_once() -> R {
    let servers = Servers::load()?;
    let user = servers.fresh_dovecot_user("i15cut");
    let (new, proxy) = dovecot_account_via_proxy(&servers, &user.user, &user.password)?;
    let db = TempDb::sqlite().await?;
    let engine = Engine::new(db.store.clone());
    let account = engine.add_account(new).await?;
    engine.sync_once(account.id).await?;
    let store = engine.store();
    let drafts = mailboxes::find_by_role(store.conn(), account.id, Role::Drafts)
        .await?
        .ok_or("no Drafts mailbox")?;
    let id = engine
        .save_draft(
            account.id,
            None,
            OutgoingMessage {
                from: addr(&account.email),
                to: vec![addr("bob@example.test")],
                subject: unique_name("draftcut"),
                text: "cut before the answer\r\n".into(),
                ..Default::default()
            },
        )
        .await?;
    proxy.arm(Cut::after_client_sends(b"APPEND", 0).over_all_connections());
    // The cut cycle fails or leaves the upload queued, uncertain.
    let _ = engine.sync_once(account.id).await;
    assert_eq!(proxy.cuts(), 1, "the APPEND's answer was cut");
    let mut imap = dovecot_client(&servers, &user)?;
    assert_eq!(
        server_copies(&mut imap, &drafts.name)?.len(),
        1,
        "the server stored the cut APPEND"
    );
    // The retry comes due after its backoff; the next cycle flushes it before it syncs (so
    // the sync cannot match the stored copy to the draft first).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for _ in 0..10 {
        if queued(&engine, &account).await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        engine.sync_once(account.id).await?;
    }
    assert_eq!(
        queued(&engine, &account).await?,
        0,
        "the upload went through"
    );
    let failed = engine.outbox().failed(account.id).await?;
    assert!(failed.is_empty(), "{failed:?}");
    let copies = server_copies(&mut imap, &drafts.name)?;
    assert_eq!(copies.len(), 1, "stored once: {copies:?}");
    let local = emails::list(
        store.conn(),
        &emails::EmailFilter {
            mailbox: Some(drafts.id),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(local.len(), 1, "one local draft: {local:?}");
    assert_eq!(local[0].email.id, id, "the draft's own row holds the copy");
    db.cleanup().await?;
    Ok(())
}

/// When another client copies the draft: before the engine's next sync (`synced = false`: the
/// change is decided on an older view, which the `ifInState` guard sends back for a resync)
/// or after it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Copied {
    BeforeSync,
    AfterSync,
}

/// A draft saved and uploaded, copied by another client over IMAP into Archive (on Cyrus the
/// same JMAP Email, now in two mailboxes), then discarded (`update = false`) or saved again:
/// the user's draft leaves Drafts (or is replaced there) and the other client's copy in
/// Archive stays, as it does over IMAP. The engine once destroyed the whole Email.
async fn draft_copied_elsewhere(c: &mut CyrusJmap, update: bool, when: Copied) -> R {
    let (engine, account) = (&c.engine, &c.account);
    let store = engine.store();
    let drafts = mailboxes::find_by_role(store.conn(), account.id, Role::Drafts)
        .await?
        .ok_or("no Drafts mailbox")?;
    let archive = mailboxes::list(store.conn(), account.id)
        .await?
        .into_iter()
        .find(|m| m.name == "Archive")
        .ok_or("no Archive mailbox")?;
    let subject = unique_name("draftcopied");
    let msg = |v: u32| OutgoingMessage {
        from: addr(&account.email),
        to: vec![addr("bob@example.test")],
        subject: subject.clone(),
        text: format!("copied draft version {v}\r\n"),
        ..Default::default()
    };
    // An empty Drafts and Archive (an earlier case leaves its draft and copy there).
    for b in [drafts.name.as_str(), "Archive"] {
        if c.other.select(b)? > 0 {
            c.other.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
            c.other.command("EXPUNGE")?;
        }
    }
    engine.sync_once(account.id).await?;
    let id = engine.save_draft(account.id, None, msg(1)).await?;
    engine.sync_once(account.id).await?;
    let mid = emails::get(store.conn(), id)
        .await?
        .message_id
        .ok_or("the draft has no Message-ID")?;

    // Another client files a copy of the draft in Archive.
    c.other.select(&drafts.name)?;
    let uid = common::uid_by_message_id(&mut c.other, &mid)?;
    c.other.command(&format!("UID COPY {uid} Archive"))?;
    if when == Copied::AfterSync {
        engine.sync_once(account.id).await?;
        let members = emails::memberships(store.conn(), id).await?;
        assert_eq!(
            members.len(),
            2,
            "one Email in Drafts and Archive: {members:?}"
        );
    }

    if update {
        assert_eq!(engine.save_draft(account.id, Some(id), msg(2)).await?, id);
    } else {
        engine.discard_draft(account.id, id).await?;
    }
    engine.sync_once(account.id).await?;
    // A `stateMismatch` asks for a resync; the next cycle has then flushed.
    if queued(engine, account).await? > 0 {
        engine.sync_once(account.id).await?;
    }
    let failed = engine.outbox().failed(account.id).await?;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(queued(engine, account).await?, 0);

    // The server: the other client's copy is still in Archive, with the old content.
    let kept = server_copies(&mut c.other, "Archive")?;
    assert_eq!(kept.len(), 1, "the copy in Archive is lost: {kept:?}");
    assert!(kept[0].contains("version 1"), "{kept:?}");
    let in_drafts = server_copies(&mut c.other, &drafts.name)?;
    if update {
        assert_eq!(in_drafts.len(), 1, "{in_drafts:?}");
        assert!(in_drafts[0].contains("version 2"), "{in_drafts:?}");
    } else {
        assert!(
            in_drafts.is_empty(),
            "the draft is still in Drafts: {in_drafts:?}"
        );
    }

    // The database agrees: one email in Archive, the draft (or none) in Drafts.
    let listed = |mailbox| async move {
        emails::list(
            store.conn(),
            &emails::EmailFilter {
                account: Some(account.id),
                mailbox: Some(mailbox),
                ..Default::default()
            },
        )
        .await
    };
    let local_archive = listed(archive.id).await?;
    assert_eq!(local_archive.len(), 1, "{local_archive:?}");
    assert_eq!(
        local_archive[0].email.message_id.as_deref(),
        Some(mid.as_str())
    );
    assert_eq!(listed(drafts.id).await?.len(), usize::from(update));
    Ok(())
}

/// Runs [`draft_copied_elsewhere`] for every timing of the copy, on a Cyrus user of its own
/// with an empty Drafts and Archive.
async fn copied_elsewhere_case(user: usize, update: bool) -> R {
    let user = mailsync_testkit::accounts::ENGINE.user(user);
    let mut c = CyrusJmap::setup(&user, &["Drafts", "Archive"], 0).await?;
    let res = tokio::time::timeout(Duration::from_secs(90), async {
        for when in [Copied::AfterSync, Copied::BeforeSync] {
            draft_copied_elsewhere(&mut c, update, when)
                .await
                .map_err(|e| format!("copy {when:?}: {e}"))?;
        }
        Ok::<_, E>(())
    })
    .await;
    c.db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_discarding_a_draft_keeps_the_copy_another_client_filed() -> R {
    copied_elsewhere_case(6, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_updating_a_draft_keeps_the_copy_another_client_filed() -> R {
    copied_elsewhere_case(7, true).await
}
