//! Events with ids over JMAP (Cyrus, pool `rt`): another client delivers a message, flags it,
//! moves it and expunges it; each cycle's events name the email and the mailboxes involved,
//! through the same store-level collector as IMAP (`cli_watch.rs` covers IMAP end to end).

mod common;

use common::{CyrusJmap, E};
use mailsync_engine::{EmailRef, EngineEvent, Events};
use mailsync_store::{EmailId, MailboxId, Role, mailboxes};
use mailsync_testkit::accounts::REALTIME;
use mailsync_testkit::imap_append_bulk;

/// Runs one cycle and returns its events (up to its `Synced`).
async fn cycle(t: &CyrusJmap, events: &mut Events) -> Result<Vec<EngineEvent>, E> {
    t.engine.sync_once(t.account.id).await?;
    let mut out = Vec::new();
    while let Some(ev) = events.try_recv() {
        let end = matches!(ev, EngineEvent::Synced { .. });
        out.push(ev);
        if end {
            break;
        }
    }
    Ok(out)
}

fn find<'a>(evs: &'a [EngineEvent], ty: &str, id: EmailId) -> Option<&'a EmailRef> {
    evs.iter().find_map(|e| {
        let (t, list) = match e {
            EngineEvent::EmailsCreated { emails, .. } => ("created", emails),
            EngineEvent::EmailsUpdated { emails, .. } => ("updated", emails),
            EngineEvent::EmailsRemoved { emails, .. } => ("removed", emails),
            _ => return None,
        };
        (t == ty)
            .then(|| list.iter().find(|r| r.id == id))
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmap_cycles_report_ids_of_a_delivery_flag_move_and_expunge() -> Result<(), E> {
    let user = REALTIME.user(1);
    let mut t = CyrusJmap::setup(&user, &["INBOX"], 0).await?;
    let _ = t.other.command_any("CREATE Archive");
    if t.other.select("Archive")? > 0 {
        t.other.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
        t.other.command("EXPUNGE")?;
    }
    let mut events = t.engine.subscribe();
    cycle(&t, &mut events).await?;
    let c = t.db.store.conn();
    let inbox = mailboxes::find_by_role(c, t.account.id, Role::Inbox)
        .await?
        .ok_or("INBOX")?
        .id;
    let archive = mailboxes::find_by_name(c, t.account.id, "Archive")
        .await?
        .ok_or("Archive")?
        .id;

    // Delivered.
    let (host, port) = (t.servers.cyrus_host(), t.servers.cyrus_imap_port());
    imap_append_bulk(
        host,
        port,
        &t.who.user,
        &t.who.password,
        "INBOX",
        t.g.messages(100..101),
        1,
    )?;
    let evs = cycle(&t, &mut events).await?;
    let created = evs
        .iter()
        .find_map(|e| match e {
            EngineEvent::EmailsCreated { emails, .. } => emails.first().cloned(),
            _ => None,
        })
        .ok_or_else(|| format!("no EmailsCreated: {evs:?}"))?;
    assert_eq!(created.mailboxes, vec![inbox]);
    let id = created.id;
    assert!(matches!(
        evs.first(),
        Some(EngineEvent::CycleStarted { .. })
    ));
    assert!(matches!(evs.last(), Some(EngineEvent::Synced { .. })));

    // Flagged.
    t.other.select("INBOX")?;
    t.other.command("STORE 1 +FLAGS.SILENT (\\Flagged)")?;
    let evs = cycle(&t, &mut events).await?;
    let r = find(&evs, "updated", id).ok_or_else(|| format!("flag: {evs:?}"))?;
    assert_eq!(r.mailboxes, vec![inbox]);

    // Moved: the same JMAP id, so the same row, updated; both mailboxes named.
    t.other.command("MOVE 1 Archive")?;
    let evs = cycle(&t, &mut events).await?;
    let r = find(&evs, "updated", id).ok_or_else(|| format!("move: {evs:?}"))?;
    let mut both: Vec<MailboxId> = vec![inbox, archive];
    both.sort();
    assert_eq!(r.mailboxes, both, "the mailbox left and the one entered");

    // Expunged.
    t.other.select("Archive")?;
    t.other.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")?;
    t.other.command("EXPUNGE")?;
    let evs = cycle(&t, &mut events).await?;
    let r = find(&evs, "removed", id).ok_or_else(|| format!("expunge: {evs:?}"))?;
    assert_eq!(r.mailboxes, vec![archive]);
    t.other.logout();
    Ok(())
}
