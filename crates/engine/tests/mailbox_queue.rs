//! Mailbox management through the outbox (issue #15), offline then reconnected, on both
//! protocols: a create renamed twice and given a message (coalesced into one create with the
//! last name, the move sent after it to the server's mailbox), a create deleted before any
//! flush (nothing sent), a create given a message then deleted (the message is deleted on the
//! server), a queued delete of a mailbox the server has; and a create refused by the server
//! (the name exists there: another client made it meanwhile) ending in the failed list with a
//! one-line reason and the server's mailbox restored by the sync. A message flagged before the
//! create and moved into the new mailbox after it keeps two rows (the move is not merged into
//! the older flag row, which would send it before the create: the model test found that). Checked in the database and
//! by another IMAP client. A delete queued while another client puts mail into the mailbox is
//! refused, and that mail kept. IMAP on Dovecot, JMAP on Cyrus.

mod common;

use std::time::Duration;

use common::{CyrusJmap, E, Setup};
use mailsync_engine::{Engine, MailboxAction};
use mailsync_store::accounts::Account;
use mailsync_store::{EmailId, MailboxId, emails, mailboxes};
use mailsync_testkit::{Generator, ImapClient, unique_name};

type R = Result<(), E>;

fn on_server(imap: &mut ImapClient, name: &str) -> Result<bool, E> {
    let r = imap.command(&format!("LIST \"\" \"{name}\""))?;
    Ok(r.lines().any(|l| l.starts_with("* LIST")))
}

async fn named(
    engine: &Engine,
    account: &Account,
    name: &str,
) -> Result<Vec<mailboxes::Mailbox>, E> {
    Ok(mailboxes::list(engine.store().conn(), account.id)
        .await?
        .into_iter()
        .filter(|m| m.name == name)
        .collect())
}

async fn in_mailbox(engine: &Engine, m: MailboxId) -> Result<Vec<EmailId>, E> {
    Ok(emails::list(
        engine.store().conn(),
        &emails::EmailFilter {
            mailbox: Some(m),
            ..Default::default()
        },
    )
    .await?
    .into_iter()
    .map(|e| e.email.id)
    .collect())
}

async fn create(engine: &Engine, account: &Account, name: &str) -> Result<MailboxId, E> {
    let (id, _) = engine
        .queue_mailbox(
            account.id,
            MailboxAction::Create {
                name: name.into(),
                parent: None,
                role: None,
            },
        )
        .await?;
    Ok(id.ok_or("a created mailbox has an id")?)
}

async fn scenario(engine: &Engine, account: &Account, imap: &mut ImapClient) -> R {
    let inbox = mailboxes::find_by_role(
        engine.store().conn(),
        account.id,
        mailsync_store::Role::Inbox,
    )
    .await?
    .ok_or("no inbox")?;
    let mail = in_mailbox(engine, inbox.id).await?;
    let (e1, e2, e3) = (mail[0], mail[1], mail[2]);
    let out = engine.outbox();

    // Offline (no cycle runs): flag e3, create, rename twice, move e1 and e3 in.
    engine
        .enqueue(account.id, mailsync_outbox::Change::flagged(e3, true))
        .await?;
    let first = unique_name("q15a");
    let last = unique_name("q15c");
    let a = create(engine, account, &first).await?;
    for n in [unique_name("q15b"), last.clone()] {
        engine
            .queue_mailbox(
                account.id,
                MailboxAction::Rename {
                    mailbox: a,
                    name: n,
                    parent: None,
                },
            )
            .await?;
    }
    engine
        .enqueue(account.id, mailsync_outbox::Change::move_to(e1, a))
        .await?;
    engine
        .enqueue(account.id, mailsync_outbox::Change::move_to(e3, a))
        .await?;
    // A create deleted before any flush: nothing to send.
    let b = create(engine, account, &unique_name("q15gone")).await?;
    engine
        .queue_mailbox(account.id, MailboxAction::Delete { mailbox: b })
        .await?;
    // A create given a message, then deleted: the message is deleted with it.
    let c = create(engine, account, &unique_name("q15tmp")).await?;
    engine
        .enqueue(account.id, mailsync_outbox::Change::move_to(e2, c))
        .await?;
    engine
        .queue_mailbox(account.id, MailboxAction::Delete { mailbox: c })
        .await?;

    // Locally at once: the mailbox with its last name and the message; b and c gone.
    let rows = named(engine, account, &last).await?;
    assert_eq!(rows.len(), 1);
    assert!(mailboxes::is_local(&rows[0].remote_id));
    let mut in_a = in_mailbox(engine, a).await?;
    in_a.sort();
    let mut want = vec![e1, e3];
    want.sort();
    assert_eq!(in_a, want);
    assert!(mailboxes::get(engine.store().conn(), b).await.is_err());
    assert!(mailboxes::get(engine.store().conn(), c).await.is_err());
    let pending = out.pending(account.id).await?;
    let kinds: Vec<&str> = pending.iter().map(|p| p.kind.as_str()).collect();
    // e3's flag, one create (renames merged into it), the moves of e1 and e3 (e3's not merged
    // into its flag row, queued before the create), the delete of e2; nothing about b or c.
    assert_eq!(
        kinds,
        vec!["flags", "mailbox", "move", "move", "delete"],
        "{pending:#?}"
    );

    // Reconnect: one cycle converges.
    engine.sync_once(account.id).await?;
    assert!(out.pending(account.id).await?.is_empty());
    assert!(
        out.failed(account.id).await?.is_empty(),
        "{:?}",
        out.failed(account.id).await?
    );
    let rows = named(engine, account, &last).await?;
    assert_eq!(rows.len(), 1, "one row for the created mailbox");
    assert_eq!(rows[0].id, a, "the local row keeps its id");
    assert!(!mailboxes::is_local(&rows[0].remote_id));
    assert!(on_server(imap, &last)?);
    assert_eq!(
        imap.select(&last)?,
        2,
        "the moved messages are in the created mailbox"
    );
    let flagged = imap.command("UID SEARCH FLAGGED")?;
    assert_eq!(
        flagged
            .lines()
            .find(|l| l.starts_with("* SEARCH"))
            .map(|l| l.split_whitespace().count() - 2),
        Some(1),
        "e3 is flagged there: {:?}",
        flagged.lines().collect::<Vec<_>>()
    );
    imap.command("UNSELECT").ok();
    assert_eq!(in_mailbox(engine, a).await?.len(), 2);
    let in_inbox = imap.select("INBOX")?;
    assert_eq!(
        in_inbox as usize,
        mail.len() - 3,
        "e1 and e3 moved out, e2 deleted"
    );
    imap.command("UNSELECT").ok();
    assert_eq!(in_mailbox(engine, inbox.id).await?.len(), mail.len() - 3);

    // A queued delete of a mailbox the server has (with its message).
    engine
        .queue_mailbox(account.id, MailboxAction::Delete { mailbox: a })
        .await?;
    assert!(named(engine, account, &last).await?.is_empty());
    engine.sync_once(account.id).await?;
    assert!(!on_server(imap, &last)?);
    assert!(named(engine, account, &last).await?.is_empty());
    assert!(out.pending(account.id).await?.is_empty());

    // A rename and then a delete queued offline, then another client puts mail into that
    // mailbox: the delete is refused (mail the user never saw there is not destroyed) and the
    // sync brings the mailbox back with that mail, under the name the server kept; the
    // failure says the rename was not sent either (model test, seed 806).
    let kept = unique_name("q15keep");
    imap.create_mailbox(&kept)?;
    imap.append_bulk(&kept, Generator::new(1517).messages(0..1), 1)?;
    engine.sync_once(account.id).await?;
    let k = named(engine, account, &kept)
        .await?
        .first()
        .ok_or("the other client's mailbox is not synced")?
        .id;
    engine
        .queue_mailbox(
            account.id,
            MailboxAction::Rename {
                mailbox: k,
                name: format!("{kept}-renamed"),
                parent: None,
            },
        )
        .await?;
    engine
        .queue_mailbox(account.id, MailboxAction::Delete { mailbox: k })
        .await?;
    assert!(named(engine, account, &kept).await?.is_empty());
    imap.append_bulk(&kept, Generator::new(1516).messages(0..1), 1)?;
    engine.sync_once(account.id).await?;
    assert!(on_server(imap, &kept)?, "the mailbox was not deleted");
    assert_eq!(
        imap.message_count(&kept)?,
        2,
        "the other client's mail is kept"
    );
    let failed = out.failed(account.id).await?;
    assert_eq!(failed.len(), 1, "{failed:?}");
    eprintln!("refused delete: {}", failed[0].reason);
    assert!(failed[0].reason.contains("arrived"), "{}", failed[0].reason);
    eprintln!("its description: {}", failed[0].description);
    assert!(
        failed[0]
            .description
            .contains(&format!("renamed from {kept:?}")),
        "{}",
        failed[0].description
    );
    engine.sync_once(account.id).await?;
    let rows = named(engine, account, &kept).await?;
    assert_eq!(rows.len(), 1, "the mailbox is back locally");
    assert_eq!(
        in_mailbox(engine, rows[0].id).await?.len(),
        2,
        "with the mail seen before the delete and the new one"
    );
    for f in out.failed(account.id).await? {
        out.dismiss_failed(f.id).await?;
    }

    // Refused: another client creates the name first; ours fails and the server's stays.
    let taken = unique_name("q15taken");
    imap.command(&format!("CREATE \"{taken}\""))?;
    let mine = create(engine, account, &taken).await?;
    engine.sync_once(account.id).await?;
    let failed = out.failed(account.id).await?;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].kind, "mailbox");
    eprintln!("refused: {}", failed[0].reason);
    assert!(!failed[0].reason.contains('\n') && !failed[0].reason.is_empty());
    assert!(mailboxes::get(engine.store().conn(), mine).await.is_err());
    let rows = named(engine, account, &taken).await?;
    assert_eq!(rows.len(), 1, "the server's mailbox, once");
    assert!(!mailboxes::is_local(&rows[0].remote_id));
    assert!(out.pending(account.id).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_mailbox_changes_offline_converge() -> R {
    let g = Generator::new(1515);
    let s = Setup::dovecot("i15q", "INBOX", &g, 0..4).await?;
    let mut imap = s.other()?;
    let res = tokio::time::timeout(
        Duration::from_secs(90),
        scenario(&s.engine, &s.account, &mut imap),
    )
    .await;
    s.db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_mailbox_changes_offline_converge() -> R {
    let user = mailsync_testkit::accounts::DRAFTS.user(5);
    let mut c = CyrusJmap::setup(&user, &["INBOX"], 4).await?;
    let res = tokio::time::timeout(
        Duration::from_secs(90),
        scenario(&c.engine, &c.account, &mut c.other),
    )
    .await;
    c.db.cleanup().await?;
    res.map_err(|_| "timed out")?
}

/// The same mailbox name deleted, re-created and deleted again within a second, over JMAP on
/// Cyrus: its delayed delete answers the second destroy `serverFail` ("Mailbox already
/// exists"), which is retried and then goes through, instead of failing for good. (The IMAP
/// path retries the bare `NO` itself; `imap-sync`'s `cyrus_mailbox_management_with_role`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_a_name_deleted_twice_within_a_second_is_retried() -> R {
    let user = mailsync_testkit::accounts::DRAFTS.user(3);
    let c = CyrusJmap::setup(&user, &["INBOX"], 1).await?;
    let (engine, account) = (&c.engine, &c.account);
    let res = tokio::time::timeout(Duration::from_secs(90), async {
        // The collision needs both destroys in one wall-clock second: the first is sent just
        // after a second starts, and the whole pattern is tried up to three times.
        let mut collided = false;
        for _ in 0..3 {
            let name = unique_name("q15twice");
            for round in 0..2 {
                let id = create(engine, account, &name).await?;
                engine.sync_once(account.id).await?;
                if round == 0 {
                    let into = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .subsec_millis();
                    let wait = 1_020u64.saturating_sub(u64::from(into));
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                engine
                    .queue_mailbox(account.id, MailboxAction::Delete { mailbox: id })
                    .await?;
                engine.sync_once(account.id).await?;
            }
            // Answered serverFail, the second delete waits for its retry (2 s base).
            collided |= engine.outbox().counts(account.id).await?.queued() > 0;
            for _ in 0..15 {
                if engine.outbox().counts(account.id).await?.queued() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                engine.sync_once(account.id).await?;
            }
            let failed = engine.outbox().failed(account.id).await?;
            assert!(failed.is_empty(), "{failed:#?}");
            assert_eq!(engine.outbox().counts(account.id).await?.queued(), 0);
            assert!(named(engine, account, &name).await?.is_empty());
            if collided {
                break;
            }
        }
        assert!(
            collided,
            "Cyrus never refused the second destroy: nothing was tested"
        );
        Ok::<(), E>(())
    })
    .await;
    c.db.cleanup().await?;
    res.map_err(|_| "timed out")??;
    Ok(())
}
