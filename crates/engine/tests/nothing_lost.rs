//! "Nothing lost" regressions on the real Dovecot, with a second IMAP client changing the
//! account between two syncs of the engine:
//! - a mailbox deleted and re-created (new UIDVALIDITY, UIDs start again at 1) while changes
//!   addressed by the old UIDs were queued: none of them may touch the new messages;
//! - a queued move/delete of a message that the other client moved elsewhere or expunged: no
//!   ghost copy is left, the delete still applies where the message is now, and the change of
//!   the expunged message is listed as gone;
//! - after every sync the database equals the server.

mod common;

use std::collections::BTreeSet;

use common::{CyrusJmap, E, Setup, ids_of, mids, uid_by_message_id};
use mailsync_outbox::{Change, Flag};
use mailsync_store::accounts::Account;
use mailsync_store::emails::{self, EmailFilter};
use mailsync_store::{Role, Store, mailboxes};
use mailsync_testkit::{Generator, ImapClient, Servers};

type R = Result<(), Box<dyn std::error::Error>>;

/// (mailbox name, Message-ID, seen, flagged) of every message.
type State = BTreeSet<(String, String, bool, bool)>;

/// What the server has, read by doveadm (an independent client).
fn server_state(servers: &Servers, user: &str) -> Result<State, E> {
    let out = servers.doveadm(&["fetch", "-u", user, "mailbox flags hdr.message-id", "all"])?;
    let mut state = State::new();
    let mut cur: (Option<String>, String, Option<String>) = (None, String::new(), None);
    let mut push = |c: &mut (Option<String>, String, Option<String>)| {
        if let (Some(m), Some(id)) = (c.0.take(), c.2.take()) {
            let id = id
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            state.insert((m, id, c.1.contains("\\Seen"), c.1.contains("\\Flagged")));
        }
        c.1.clear();
    };
    for line in out.lines() {
        let line = line.trim_start_matches('\u{c}');
        if let Some(m) = line.strip_prefix("mailbox: ") {
            push(&mut cur);
            cur.0 = Some(m.trim().to_owned());
        } else if let Some(f) = line.strip_prefix("flags: ") {
            cur.1 = f.to_owned();
        } else if let Some(h) = line.strip_prefix("hdr.message-id: ") {
            cur.2 = Some(h.to_owned());
        }
    }
    push(&mut cur);
    Ok(state)
}

/// What the database shows, in the same shape (mailboxes by IMAP name, or by JMAP name with
/// the inbox called INBOX); also fails on a duplicate row.
async fn db_state(store: &Store, account: &Account, jmap: bool) -> Result<State, E> {
    let mut state = State::new();
    for m in mailboxes::list(store.conn(), account.id).await? {
        let name = match (jmap, m.role) {
            (false, _) => m.remote_id.clone(),
            (true, Some(Role::Inbox)) => "INBOX".to_owned(),
            (true, _) => m.name.clone(),
        };
        let filter = EmailFilter {
            mailbox: Some(m.id),
            ..Default::default()
        };
        for s in emails::list(store.conn(), &filter).await? {
            let e = s.email;
            let key = (
                name.clone(),
                e.message_id.clone().unwrap_or_default(),
                e.flags.seen,
                e.flags.flagged,
            );
            assert!(state.insert(key.clone()), "duplicate local row {key:?}");
        }
    }
    Ok(state)
}

/// After the engine's cycles (Dovecot): the server holds `want`, the database shows the same,
/// and nothing is left queued.
async fn settled_on(t: &Setup, want: &State, what: &str) -> Result<(), E> {
    let server = server_state(&t.servers, &t.user.user)?;
    assert_eq!(&server, want, "{what}");
    assert_eq!(
        db_state(&t.db.store, &t.account, false).await?,
        server,
        "database equals server"
    );
    assert_eq!(t.engine.outbox().counts(t.account.id).await?.queued(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_mailbox_changes_never_hit_new_messages() -> R {
    let g = Generator::new(41);
    let t = Setup::dovecot("lostuv", "Box", &g, 0..3).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let mut other = t.other()?;
    let local = ids_of(&db.store, acc, &mids(&g, 0..3)).await?;
    let archive = mailboxes::find_by_role(db.store.conn(), acc.id, Role::Archive)
        .await?
        .ok_or("Archive")?;

    // Offline: delete, move and flag the three messages of Box.
    engine
        .enqueue(acc.id, Change::Delete { email: local[0] })
        .await?;
    engine
        .enqueue(
            acc.id,
            Change::Move {
                email: local[1],
                to: archive.id,
            },
        )
        .await?;
    engine
        .enqueue(
            acc.id,
            Change::SetFlag {
                email: local[2],
                flag: Flag::Flagged,
                value: true,
            },
        )
        .await?;

    // Meanwhile the other client deletes Box and creates it again with new mail: new
    // UIDVALIDITY, and UIDs 1..3 now name other messages.
    other.delete_mailbox("Box")?;
    other.create_mailbox("Box")?;
    t.append("Box", &g, 10..13)?;
    other.logout();

    engine.sync_once(acc.id).await?;
    let server = server_state(&t.servers, &t.user.user)?;
    let new: BTreeSet<(String, String, bool, bool)> = mids(&g, 10..13)
        .into_iter()
        .map(|m| ("Box".to_owned(), m, false, false))
        .collect();
    assert_eq!(
        server, new,
        "the new messages of Box must be untouched, nothing elsewhere"
    );
    assert_eq!(
        db_state(&db.store, acc, false).await?,
        server,
        "database equals server"
    );

    // The flag and the move had nothing left to act on: listed as gone. The delete is
    // satisfied (its message is gone), so it is not a failure.
    let failed = engine.outbox().failed(acc.id).await?;
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(
        failed.iter().all(|f| f.reason.starts_with("gone")),
        "{failed:#?}"
    );
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    // A further sync changes nothing.
    engine.sync_once(acc.id).await?;
    assert_eq!(
        db_state(&db.store, acc, false).await?,
        server_state(&t.servers, &t.user.user)?
    );
    Ok(())
}

/// A mailbox renumbered, then given its old UIDVALIDITY back (Cyrus does it when another
/// client renames into the name a mailbox created in the same second as the first one: RENAME
/// keeps UIDVALIDITY; here doveadm sets it). A change queued under the first numbering must
/// not act on the UID that now names another message, nor leave that identity to the old
/// row (model test, Cyrus IMAP seed 25007: the identity clash turned a done move into a store
/// error, and the moved message was then lost locally). The mailbox is Trash, so the queued
/// delete is an expunge, sent after the batch's moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_handed_out_again_never_hits_another_message() -> R {
    let g = Generator::new(47);
    let t = Setup::dovecot("uvback", "INBOX", &g, 1..2).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let user = t.user.user.clone();
    t.append("Trash", &g, 0..1)?;
    engine.sync_once(acc.id).await?;
    let m = mids(&g, 0..2);
    let ids = ids_of(&db.store, acc, &m).await?;
    let trash = mailboxes::find_by_role(db.store.conn(), acc.id, Role::Trash)
        .await?
        .ok_or("Trash")?;
    let old_uv = trash.status.uidvalidity.ok_or("uidvalidity")?.to_string();

    // Offline: delete m0 for good (Trash, UID 1), move m1 from INBOX to Trash.
    engine.enqueue(acc.id, Change::delete(ids[0])).await?;
    engine
        .enqueue(acc.id, Change::move_to(ids[1], trash.id))
        .await?;

    // Another client replaces Trash (new UIDVALIDITY); the engine syncs, not flushing yet.
    let replace = |uv: Option<&str>| -> Result<(), E> {
        t.servers
            .doveadm(&["mailbox", "delete", "-u", &user, "Trash"])?;
        t.servers
            .doveadm(&["mailbox", "create", "-u", &user, "Trash"])?;
        if let Some(uv) = uv {
            t.servers.doveadm(&[
                "mailbox",
                "update",
                "-u",
                &user,
                "--uid-validity",
                uv,
                "Trash",
            ])?;
        }
        Ok(())
    };
    replace(None)?;
    let mut conn = mailsync_engine::imap_driver::connect(acc).await?;
    mailsync_imap_sync::sync_account(
        &mut conn,
        &db.store,
        acc.id,
        &mailsync_imap_sync::SyncOptions::default(),
    )
    .await?;
    conn.logout().await;
    engine.outbox().reapply_queued(acc.id).await?;
    // And again, by one with the first UIDVALIDITY: UID 1 is free again.
    replace(Some(&old_uv))?;

    engine.sync_once(acc.id).await?;
    engine.sync_once(acc.id).await?;
    // m1 moved into Trash (UID 1 there); m0's delete, addressed by the UID 1 of the first
    // numbering, touched nothing: m0 went with the first Trash.
    let want: State = [("Trash".to_owned(), m[1].clone(), false, false)]
        .into_iter()
        .collect();
    settled_on(&t, &want, "m1 in Trash, untouched by m0's delete").await
}

/// Offline, the user deletes a message (to the trash), then deletes the mailbox it was in:
/// the message must end in the trash, not go with the mailbox. The move out of the mailbox is
/// sent first (it was queued first), addressed to a mailbox that is no longer in the database
/// (model test, Dovecot seed 26010: the move was taken as lost, the mailbox delete took the
/// message, and the user's delete, then "satisfied", lost it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_deleted_before_its_mailbox_ends_in_the_trash() -> R {
    let g = Generator::new(48);
    let t = Setup::dovecot("delbox", "Box", &g, 0..2).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let m = mids(&g, 0..2);
    let ids = ids_of(&db.store, acc, &m).await?;
    let boxrow = mailboxes::find_by_name(db.store.conn(), acc.id, "Box")
        .await?
        .ok_or("Box")?;
    engine.enqueue(acc.id, Change::delete(ids[0])).await?;
    engine
        .queue_mailbox(
            acc.id,
            mailsync_engine::MailboxAction::Delete { mailbox: boxrow.id },
        )
        .await?;
    engine.sync_once(acc.id).await?;
    engine.sync_once(acc.id).await?;
    let want: State = [("Trash".to_owned(), m[0].clone(), false, false)]
        .into_iter()
        .collect();
    settled_on(&t, &want, "m0 in Trash; Box gone with m1").await
}

/// A sync cut after resetting a replaced mailbox leaves the old rows without a UID; a move of
/// another copy of one of those messages into the mailbox then gets its identity by COPYUID.
/// The next sync must not also give that identity to the old row of the same Message-ID: the
/// batch failed on the unique remote id, and so did every later sync (model test, Cyrus IMAP
/// seed 30001 with 800 operations).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_moved_in_after_a_reset_keeps_its_own_row() -> R {
    let g = Generator::new(49);
    let t = Setup::dovecot("rematchheld", "Box", &g, 0..1).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let user = t.user.user.clone();
    // The same message in INBOX too (another copy, same Message-ID).
    t.append("INBOX", &g, 0..1)?;
    engine.sync_once(acc.id).await?;
    let inbox = mailboxes::find_by_role(db.store.conn(), acc.id, Role::Inbox)
        .await?
        .ok_or("INBOX")?;
    let boxrow = mailboxes::find_by_name(db.store.conn(), acc.id, "Box")
        .await?
        .ok_or("Box")?;
    let m = mids(&g, 0..2);
    let mut in_inbox = None;
    for e in emails::find_by_message_id(db.store.conn(), acc.id, &m[0]).await? {
        if emails::memberships(db.store.conn(), e.id)
            .await?
            .iter()
            .any(|x| x.mailbox_id == inbox.id)
        {
            in_inbox = Some(e.id);
        }
    }
    let in_inbox = in_inbox.ok_or("the INBOX copy")?;

    // Another client replaces Box, with another message in it; the engine's sync of it is
    // killed after its first batch (the reset committed, the old row left without a UID).
    t.servers
        .doveadm(&["mailbox", "delete", "-u", &user, "Box"])?;
    t.servers
        .doveadm(&["mailbox", "create", "-u", &user, "Box"])?;
    t.append("Box", &g, 1..2)?;
    let store = db.store.clone();
    let account = acc.clone();
    let killed = tokio::spawn(async move {
        let mut conn = mailsync_engine::imap_driver::connect(&account)
            .await
            .expect("connect");
        let opts = mailsync_imap_sync::SyncOptions::default()
            .with_batch_size(1)
            .with_progress(std::sync::Arc::new(
                |_p: &mailsync_imap_sync::SyncProgress| panic!("killed after the first batch"),
            ));
        let _ = mailsync_imap_sync::sync_account(&mut conn, &store, account.id, &opts).await;
    })
    .await;
    assert!(killed.is_err(), "the sync was expected to be killed");

    // The user moves the INBOX copy into Box: COPYUID gives it UID 2 there.
    engine
        .enqueue(acc.id, Change::move_to(in_inbox, boxrow.id))
        .await?;
    engine.sync_once(acc.id).await?;
    engine.sync_once(acc.id).await?;
    let want: State = [
        ("Box".to_owned(), m[0].clone(), false, false),
        ("Box".to_owned(), m[1].clone(), false, false),
    ]
    .into_iter()
    .collect();
    settled_on(
        &t,
        &want,
        "the moved copy and the other client's message in Box",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_follow_a_moved_message_and_leave_no_ghosts() -> R {
    let g = Generator::new(43);
    let t = Setup::dovecot("lostghost", "INBOX", &g, 0..4).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let archive = mailboxes::find_by_role(db.store.conn(), acc.id, Role::Archive)
        .await?
        .ok_or("Archive")?;
    let m = mids(&g, 0..4);
    let ids = ids_of(&db.store, acc, &m).await?;
    let (e0, e1, e2) = (ids[0], ids[1], ids[2]);

    // The other client moves m0 to Archive, expunges m1, and flags m2 (UIDs 1, 2, 3).
    let mut other = t.other()?;
    other.select("INBOX")?;
    other.command("UID MOVE 1 Archive")?;
    other.command("UID STORE 2 +FLAGS.SILENT (\\Deleted)")?;
    other.command("UID EXPUNGE 2")?;
    other.command("UID STORE 3 +FLAGS.SILENT (\\Flagged)")?;
    other.logout();

    // Locally, not having synced: delete m0 (to Trash), move m1 to Archive, move m2 to
    // Archive and mark it read.
    engine.enqueue(acc.id, Change::Delete { email: e0 }).await?;
    engine
        .enqueue(
            acc.id,
            Change::Move {
                email: e1,
                to: archive.id,
            },
        )
        .await?;
    engine
        .enqueue(
            acc.id,
            Change::Move {
                email: e2,
                to: archive.id,
            },
        )
        .await?;
    engine.enqueue(acc.id, Change::seen(e2, true)).await?;

    engine.sync_once(acc.id).await?;
    let server = server_state(&t.servers, &t.user.user)?;
    let want: BTreeSet<(String, String, bool, bool)> = [
        // The local delete wins over the other client's move: m0 is in Trash.
        ("Trash".to_owned(), m[0].clone(), false, false),
        // Both clients' changes of m2 hold.
        ("Archive".to_owned(), m[2].clone(), true, true),
        ("INBOX".to_owned(), m[3].clone(), false, false),
    ]
    .into_iter()
    .collect();
    assert_eq!(server, want);
    assert_eq!(
        db_state(&db.store, acc, false).await?,
        server,
        "database equals server, no ghosts"
    );
    let failed = engine.outbox().failed(acc.id).await?;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(failed[0].reason.starts_with("gone"), "{failed:#?}");
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    engine.sync_once(acc.id).await?;
    assert_eq!(
        db_state(&db.store, acc, false).await?,
        server_state(&t.servers, &t.user.user)?
    );
    Ok(())
}

/// What a Cyrus account has, read over IMAP (an independent client of the same mailstore).
fn cyrus_state(servers: &Servers, user: &str, pw: &str, boxes: &[&str]) -> Result<State, E> {
    let mut imap = ImapClient::login(servers.cyrus_host(), servers.cyrus_imap_port(), user, pw)?;
    let mut state = State::new();
    for b in boxes {
        let n = imap.select(b)?;
        if n == 0 {
            continue;
        }
        let r = imap.command("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")?;
        for line in r.lines().filter(|l| l.contains(" FETCH ")) {
            let flags = line
                .split_once("FLAGS (")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(f, _)| f.to_owned())
                .unwrap_or_default();
            let lower = line.to_ascii_lowercase();
            let mid = lower
                .find("message-id:")
                .and_then(|i| line.get(i..))
                .and_then(|s| s.split_once('<'))
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(m, _)| m.to_owned())
                .unwrap_or_default();
            state.insert((
                (*b).to_owned(),
                mid,
                flags.contains("\\Seen"),
                flags.contains("\\Flagged"),
            ));
        }
    }
    imap.logout();
    Ok(state)
}

/// The same interleaving as [`changes_follow_a_moved_message_and_leave_no_ghosts`] over JMAP on
/// Cyrus (the other client works over IMAP on the same mailbox store): one conflict rule for
/// both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_changes_follow_a_moved_message_and_drop_a_gone_one() -> R {
    let boxes = ["INBOX", "Archive", "Trash"];
    let t = CyrusJmap::setup("cl10", &boxes, 4).await?;
    let (servers, who, g, db, engine, acc) =
        (&t.servers, &t.who, &t.g, &t.db, &t.engine, &t.account);
    let mut other = t.other;
    let c = db.store.conn();
    let archive = mailboxes::find_by_role(c, acc.id, Role::Archive)
        .await?
        .ok_or("Archive")?;
    let m = mids(g, 0..4);
    let ids = ids_of(&db.store, acc, &m).await?;

    // The other client: m0 to Archive, m1 expunged, m2 flagged.
    other.select("INBOX")?;
    let u0 = uid_by_message_id(&mut other, &m[0])?;
    let u1 = uid_by_message_id(&mut other, &m[1])?;
    let u2 = uid_by_message_id(&mut other, &m[2])?;
    other.command(&format!("UID MOVE {u0} Archive"))?;
    other.command(&format!("UID STORE {u1} +FLAGS.SILENT (\\Deleted)"))?;
    other.command(&format!("UID EXPUNGE {u1}"))?;
    other.command(&format!("UID STORE {u2} +FLAGS.SILENT (\\Flagged)"))?;
    other.logout();

    engine
        .enqueue(acc.id, Change::Delete { email: ids[0] })
        .await?;
    engine
        .enqueue(
            acc.id,
            Change::Move {
                email: ids[1],
                to: archive.id,
            },
        )
        .await?;
    engine
        .enqueue(
            acc.id,
            Change::Move {
                email: ids[2],
                to: archive.id,
            },
        )
        .await?;
    engine.enqueue(acc.id, Change::seen(ids[2], true)).await?;

    engine.sync_once(acc.id).await?;
    let server = cyrus_state(servers, &who.user, &who.password, &boxes)?;
    let want: State = [
        ("Trash".to_owned(), m[0].clone(), false, false),
        ("Archive".to_owned(), m[2].clone(), true, true),
        ("INBOX".to_owned(), m[3].clone(), false, false),
    ]
    .into_iter()
    .collect();
    assert_eq!(server, want);
    assert_eq!(
        db_state(&db.store, acc, true).await?,
        server,
        "database equals server"
    );
    let failed = engine.outbox().failed(acc.id).await?;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(failed[0].reason.starts_with("gone"), "{failed:#?}");
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    Ok(())
}

/// The other client renames the mailbox the queued changes address: the messages still exist
/// (under the new name), so the changes apply there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_follow_a_renamed_mailbox() -> R {
    let g = Generator::new(45);
    let t = Setup::dovecot("lostren", "Box", &g, 0..2).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let mut other = t.other()?;
    let archive = mailboxes::find_by_role(db.store.conn(), acc.id, Role::Archive)
        .await?
        .ok_or("Archive")?;
    let m = mids(&g, 0..2);
    let ids = ids_of(&db.store, acc, &m).await?;
    engine
        .enqueue(
            acc.id,
            Change::SetFlag {
                email: ids[0],
                flag: Flag::Flagged,
                value: true,
            },
        )
        .await?;
    engine
        .enqueue(
            acc.id,
            Change::Move {
                email: ids[1],
                to: archive.id,
            },
        )
        .await?;
    other.command("RENAME Box Renamed")?;
    other.logout();

    engine.sync_once(acc.id).await?;
    let server = server_state(&t.servers, &t.user.user)?;
    let want: State = [
        ("Renamed".to_owned(), m[0].clone(), false, true),
        ("Archive".to_owned(), m[1].clone(), false, false),
    ]
    .into_iter()
    .collect();
    assert_eq!(server, want);
    assert_eq!(
        db_state(&db.store, acc, false).await?,
        server,
        "database equals server"
    );
    assert!(engine.outbox().failed(acc.id).await?.is_empty());
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    Ok(())
}

/// The user's actions on one message cancel out locally (moved to Archive and back, marked
/// read and unread again) while another client changed the same fields: the user's last action
/// still wins, as it does when the actions do not cancel out. Queued, the two moves are one
/// "back to INBOX" that the executor checks against the server rather than one that is
/// dropped (model test seed 872 on Cyrus IMAP left the message in the other client's Trash).
async fn cancelled_out_actions_still_win(
    engine: &mailsync_engine::Engine,
    acc: &Account,
    store: &Store,
    ids: &[mailsync_store::EmailId],
) -> R {
    let archive = mailboxes::find_by_role(store.conn(), acc.id, Role::Archive)
        .await?
        .ok_or("Archive")?;
    let inbox = mailboxes::find_by_role(store.conn(), acc.id, Role::Inbox)
        .await?
        .ok_or("INBOX")?;
    let mv = |email, to| Change::Move { email, to };
    engine.enqueue(acc.id, mv(ids[0], archive.id)).await?;
    engine.enqueue(acc.id, mv(ids[0], inbox.id)).await?;
    engine.enqueue(acc.id, Change::seen(ids[1], true)).await?;
    engine.enqueue(acc.id, Change::seen(ids[1], false)).await?;
    engine
        .enqueue(acc.id, Change::flagged(ids[2], true))
        .await?;
    engine
        .enqueue(acc.id, Change::flagged(ids[2], false))
        .await?;
    engine.sync_once(acc.id).await?;
    Ok(())
}

/// See [`cancelled_out_actions_still_win`]: Dovecot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_out_actions_still_win_over_another_client() -> R {
    let g = Generator::new(47);
    let t = Setup::dovecot("cancelled", "INBOX", &g, 0..4).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let m = mids(&g, 0..4);
    let ids = ids_of(&db.store, acc, &m).await?;

    // The other client moves m0 to Trash and marks m1 read (UIDs 1 and 2).
    let mut other = t.other()?;
    other.select("INBOX")?;
    other.command("UID MOVE 1 Trash")?;
    other.command("UID STORE 2 +FLAGS.SILENT (\\Seen)")?;
    other.logout();

    cancelled_out_actions_still_win(engine, acc, &db.store, &ids).await?;
    let server = server_state(&t.servers, &t.user.user)?;
    let want: State = (0..4)
        .map(|i| ("INBOX".to_owned(), m[i].clone(), false, false))
        .collect();
    assert_eq!(server, want);
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    assert!(engine.outbox().failed(acc.id).await?.is_empty());
    engine.sync_once(acc.id).await?;
    assert_eq!(db_state(&db.store, acc, false).await?, server);
    Ok(())
}

/// See [`cancelled_out_actions_still_win`]: JMAP on Cyrus (the other client over IMAP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_cancelled_out_actions_still_win_over_another_client() -> R {
    let boxes = ["INBOX", "Archive", "Trash"];
    let t = CyrusJmap::setup("cl9", &boxes, 4).await?;
    let (servers, who, g, db, engine, acc) =
        (&t.servers, &t.who, &t.g, &t.db, &t.engine, &t.account);
    let mut other = t.other;
    let m = mids(g, 0..4);
    let ids = ids_of(&db.store, acc, &m).await?;

    other.select("INBOX")?;
    let u0 = uid_by_message_id(&mut other, &m[0])?;
    let u1 = uid_by_message_id(&mut other, &m[1])?;
    other.command(&format!("UID MOVE {u0} Trash"))?;
    other.command(&format!("UID STORE {u1} +FLAGS.SILENT (\\Seen)"))?;
    other.logout();

    cancelled_out_actions_still_win(engine, acc, &db.store, &ids).await?;
    let server = cyrus_state(servers, &who.user, &who.password, &boxes)?;
    let want: State = (0..4)
        .map(|i| ("INBOX".to_owned(), m[i].clone(), false, false))
        .collect();
    assert_eq!(server, want);
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    assert!(engine.outbox().failed(acc.id).await?.is_empty());
    engine.sync_once(acc.id).await?;
    assert_eq!(db_state(&db.store, acc, true).await?, server);
    Ok(())
}

/// The JMAP side of `a_message_deleted_before_its_mailbox_ends_in_the_trash`: the user deletes
/// m0 (to the trash), then the mailbox Box it is in; m0 ends in the trash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_a_message_deleted_before_its_mailbox_ends_in_the_trash() -> R {
    let user = mailsync_testkit::accounts::ATTACH.user(4);
    {
        // Pool users persist between runs: start from an empty Box.
        let servers = Servers::load()?;
        let mut pre = ImapClient::login(
            servers.cyrus_host(),
            servers.cyrus_imap_port(),
            &user,
            mailsync_testkit::CYRUS_POOL_PASSWORD,
        )?;
        let _ = pre.command_any("DELETE \"Box\"");
        pre.create_mailbox("Box")?;
        pre.logout();
    }
    let t = CyrusJmap::setup(&user, &["INBOX", "Trash", "Box"], 2).await?;
    let (servers, who, g, db, engine, acc) =
        (&t.servers, &t.who, &t.g, &t.db, &t.engine, &t.account);
    let mut other = t.other;
    let m = mids(g, 0..2);
    let ids = ids_of(&db.store, acc, &m).await?;
    other.select("INBOX")?;
    let u0 = uid_by_message_id(&mut other, &m[0])?;
    other.command(&format!("UID MOVE {u0} Box"))?;
    engine.sync_once(acc.id).await?;
    let boxrow = mailboxes::find_by_name(db.store.conn(), acc.id, "Box")
        .await?
        .ok_or("Box")?;

    engine.enqueue(acc.id, Change::delete(ids[0])).await?;
    engine
        .queue_mailbox(
            acc.id,
            mailsync_engine::MailboxAction::Delete { mailbox: boxrow.id },
        )
        .await?;
    engine.sync_once(acc.id).await?;
    engine.sync_once(acc.id).await?;
    let server = cyrus_state(servers, &who.user, &who.password, &["INBOX", "Trash"])?;
    let want: State = [
        ("INBOX".to_owned(), m[1].clone(), false, false),
        ("Trash".to_owned(), m[0].clone(), false, false),
    ]
    .into_iter()
    .collect();
    assert_eq!(server, want, "m0 in Trash");
    let listed = other.command("LIST \"\" \"Box\"")?;
    let listed: Vec<String> = listed.lines().collect();
    assert!(
        listed.iter().all(|l| !l.contains("Box")),
        "Box deleted: {listed:?}"
    );
    other.logout();
    assert_eq!(db_state(&db.store, acc, true).await?, server);
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    Ok(())
}

/// The other client moves m0 into mailbox Lists; the user, not having synced, deletes m0 (to
/// the trash) and then the mailbox Lists. The delete of m0 is lost (its UID is gone from
/// INBOX), and the queued mailbox delete hides Lists locally, so m0 looked gone and its delete
/// was dropped as "satisfied"; the mailbox delete was then refused (mail arrived in it) and m0
/// stayed where the user had deleted it from (model test seed 975 on Cyrus IMAP). Now nothing
/// is declared gone while a mailbox change is queued, the mailbox change is not held back by
/// the lost delete, and once it is refused the delete finds m0 in Lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_delete_is_not_satisfied_by_a_queued_mailbox_delete() -> R {
    let g = Generator::new(53);
    let t = Setup::dovecot("hiddenlost", "INBOX", &g, 0..3).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let mut other = t.other()?;
    other.command("CREATE Lists")?;
    engine.sync_once(acc.id).await?;
    let lists = mailboxes::find_by_name(db.store.conn(), acc.id, "Lists")
        .await?
        .ok_or("Lists")?;
    let m = mids(&g, 0..3);
    let ids = ids_of(&db.store, acc, &m).await?;

    other.select("INBOX")?;
    other.command("UID MOVE 1 Lists")?;
    other.logout();
    engine
        .enqueue(acc.id, Change::Delete { email: ids[0] })
        .await?;
    engine
        .queue_mailbox(
            acc.id,
            mailsync_engine::MailboxAction::Delete { mailbox: lists.id },
        )
        .await?;
    engine.sync_once(acc.id).await?;
    engine.sync_once(acc.id).await?;

    let server = server_state(&t.servers, &t.user.user)?;
    let want: State = [
        ("Trash".to_owned(), m[0].clone(), false, false),
        ("INBOX".to_owned(), m[1].clone(), false, false),
        ("INBOX".to_owned(), m[2].clone(), false, false),
    ]
    .into_iter()
    .collect();
    assert_eq!(server, want);
    let failed = engine.outbox().failed(acc.id).await?;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0].kind == "mailbox" && failed[0].reason.contains("mail arrived"),
        "{failed:#?}"
    );
    assert_eq!(engine.outbox().counts(acc.id).await?.queued(), 0);
    assert_eq!(db_state(&db.store, acc, false).await?, server);
    Ok(())
}

/// Sets up m0 in the trash and a copy of it the other client put in INBOX (both synced), then
/// the user deletes the trash copy for good (queued) and marks the INBOX copy read; the other
/// client then moves the trash copy to Archive (`move_away`) or expunges it, and the engine
/// syncs. Returns the set-up and the Message-IDs.
async fn delete_lost_after_marking_a_copy(
    tag: &str,
    move_away: bool,
) -> Result<(Setup, Vec<String>), E> {
    let g = Generator::new(59);
    let t = Setup::dovecot(tag, "INBOX", &g, 0..2).await?;
    let (engine, acc, db) = (&t.engine, &t.account, &t.db);
    let m = mids(&g, 0..2);
    let mut other = t.other()?;
    other.select("INBOX")?;
    other.command("UID MOVE 1 Trash")?;
    engine.sync_once(acc.id).await?;
    other.select("Trash")?;
    other.command("UID COPY 1 INBOX")?;
    engine.sync_once(acc.id).await?;
    let copies = emails::find_by_message_id(db.store.conn(), acc.id, &m[0]).await?;
    assert_eq!(copies.len(), 2, "{copies:#?}");
    let trash = mailboxes::find_by_role(db.store.conn(), acc.id, Role::Trash)
        .await?
        .ok_or("Trash")?;
    let mut in_trash = None;
    let mut in_inbox = None;
    for e in &copies {
        if emails::memberships(db.store.conn(), e.id)
            .await?
            .iter()
            .any(|b| b.mailbox_id == trash.id)
        {
            in_trash = Some(e.id);
        } else {
            in_inbox = Some(e.id);
        }
    }
    let (in_trash, in_inbox) = (in_trash.ok_or("trash copy")?, in_inbox.ok_or("inbox copy")?);

    engine
        .enqueue(acc.id, Change::Delete { email: in_trash })
        .await?;
    engine.enqueue(acc.id, Change::seen(in_inbox, true)).await?;
    if move_away {
        other.command("UID MOVE 1 Archive")?;
    } else {
        other.command("UID STORE 1 +FLAGS.SILENT (\\Deleted)")?;
        other.command("UID EXPUNGE 1")?;
    }
    other.logout();
    engine.sync_once(acc.id).await?;
    engine.sync_once(acc.id).await?;
    Ok((t, m))
}

/// A lost change is not carried over to a copy the user marked after queuing it: model test,
/// Cyrus IMAP seed 26011. The user deleted a message for good from the trash; the other
/// client had copied it to INBOX and then moved the trash copy to C; the user marked the
/// INBOX copy read. The lost delete, found again by Message-ID, went to the INBOX copy (the
/// oldest) and expunged it: the read mark vanished, nothing listed as failed. The delete is
/// the trash copy's, which the other client moved: it follows it there, and the copy the user
/// marked stays, read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_delete_spares_the_copy_the_user_marked_since() -> R {
    let (t, m) = delete_lost_after_marking_a_copy("lostmarked", true).await?;
    let want: State = [
        ("INBOX".to_owned(), m[0].clone(), true, false),
        ("INBOX".to_owned(), m[1].clone(), false, false),
    ]
    .into_iter()
    .collect();
    settled_on(&t, &want, "the marked copy stays, read").await?;
    let failed = t.engine.outbox().failed(t.account.id).await?;
    assert!(failed.is_empty(), "{failed:#?}");
    Ok(())
}

/// The same, with the trash copy expunged by the other client: the only copy left is the one
/// the user marked since, so the delete is not carried over to it but listed as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_delete_of_a_copy_the_user_marked_since_is_listed() -> R {
    let (t, m) = delete_lost_after_marking_a_copy("lostmarked1", false).await?;
    let want: State = [
        ("INBOX".to_owned(), m[0].clone(), true, false),
        ("INBOX".to_owned(), m[1].clone(), false, false),
    ]
    .into_iter()
    .collect();
    settled_on(&t, &want, "the marked copy stays, read").await?;
    let failed = t.engine.outbox().failed(t.account.id).await?;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(failed[0].reason.starts_with("superseded"), "{failed:#?}");
    Ok(())
}
