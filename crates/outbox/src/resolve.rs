//! Finding lost changes again: a change whose message was not where it addressed it (moved or
//! expunged by another client, or its mailbox re-created) is held in state `lost` by the flush;
//! after a complete sync, [`Outbox::reresolve`](crate::Outbox::reresolve) applies it to the
//! message where it is now, or drops it when the message is gone from the server.
//!
//! The rules are the same for every protocol (the database is the common ground, so this is
//! protocol-free): a local change of a message that still exists wins, wherever another client
//! put it; a message expunged on the server wins over any local change, which is dropped and
//! listed in the failed list ("gone") — except a delete, which the server already satisfies.

use mailsync_store::emails::{self, Email};
use mailsync_store::queue::ChangeState;
use mailsync_store::{AccountId, ConnectionTrait, EmailId};
use tracing::{info, warn};

use crate::apply::rebase;
use crate::error::Error;
use crate::local::{self, Touched};
use crate::model::{self, Folded, Op, Payload};
use crate::outcome::evict;
use crate::rows::{self, Patch, Row};

/// What one [`crate::Outbox::reresolve`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolveReport {
    /// Emails whose lost changes were found again and queued anew (flush again to send them).
    pub found: u32,
    /// Lost changes dropped because their message is gone (listed in the failed list).
    pub gone: u32,
    /// Lost deletes of messages that are gone: satisfied, dropped quietly.
    pub satisfied: u32,
    /// Lost changes whose message the user moved, deleted or marked since where it was found
    /// (listed in the failed list).
    pub superseded: u32,
}

/// The reason recorded in the failed list for a change whose message is gone.
pub const GONE_REASON: &str = "gone: the message is no longer on the server (expunged by another client, or its mailbox was deleted or re-created); the change was dropped";

/// The reason recorded for a lost change whose message the user acted on again elsewhere.
pub const SUPERSEDED_REASON: &str = "superseded: the message was found elsewhere and you moved, deleted or marked it there since; this earlier change was dropped";

/// Re-resolves every lost change of `account` (see the module docs). Call it only after a sync
/// that covered every mailbox of the account; otherwise a message merely moved to a mailbox not
/// synced yet would be declared gone.
pub(crate) async fn reresolve<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ResolveReport, Error> {
    let mut report = ResolveReport::default();
    let queued = rows::for_account(c, account).await?;
    // A queued mailbox change shows the mailboxes as they will be (a deleted one hidden with
    // its mail) before the server has them so: a message another client moved into such a
    // mailbox would look gone, and a lost delete of it "satisfied" (model test seed 975 on
    // Cyrus IMAP: the delete to the trash was dropped, the mailbox delete then refused, and
    // the message stayed). So nothing is declared gone while one is queued; a lost row does
    // not hold mailbox changes back (`rows::due_heads`), and the next sync after them decides.
    let mailbox_queued = queued
        .iter()
        .any(|r| matches!(r.payload, Payload::Mailbox(_)));
    let lost: Vec<EmailId> = {
        let mut v: Vec<EmailId> = queued
            .into_iter()
            .filter(|r| r.state == ChangeState::Lost)
            .filter_map(|r| r.email_id)
            .collect();
        v.dedup();
        v
    };
    let mut touched = Touched::default();
    for old in lost {
        local::lock(c, [old]).await?;
        let queued = rows::for_email(c, old).await?;
        let Some(head) = queued.first() else { continue };
        let Some(p) = head.email_payload().cloned() else {
            continue;
        };
        if head.state != ChangeState::Lost {
            continue;
        }
        let superseded: Vec<i64> = queued
            .iter()
            .filter_map(Row::email_payload)
            .flat_map(|q| q.superseded_on.iter().copied())
            .collect();
        match find_again(c, account, old, &p, &superseded).await? {
            Some(found) if found.id != old && superseded.contains(&found.id.0) => {
                // The user moved or deleted that copy after queuing these changes: their
                // later decision stands, and these go to the failed list.
                drop_row(c, old, &mut touched).await?;
                for r in &queued {
                    evict(c, r, SUPERSEDED_REASON, &mut touched).await?;
                    report.superseded += 1;
                }
            }
            Some(found) => {
                local::lock(c, [found.id]).await?;
                requeue(c, old, &found, &queued, now, &mut touched).await?;
                report.found += 1;
            }
            None if mailbox_queued => {}
            None => {
                // Whatever the local row still shows, the server does not have it; deleted
                // first so that evicting does not restore its old location, whose UID may now
                // belong to another message.
                drop_row(c, old, &mut touched).await?;
                for r in &queued {
                    if deletes(r) {
                        info!(change = %r.id, "Lost delete of a message that is gone: satisfied.");
                        rows::delete(c, r.id, None).await?;
                        report.satisfied += 1;
                    } else {
                        evict(c, r, GONE_REASON, &mut touched).await?;
                        report.gone += 1;
                    }
                }
            }
        }
    }
    touched.recount(c).await?;
    Ok(report)
}

/// Deletes the local row of an email the server does not have under it (its lost changes are
/// evicted after, so that nothing restores its old location).
async fn drop_row<C: ConnectionTrait>(
    c: &C,
    email: EmailId,
    touched: &mut Touched,
) -> Result<(), Error> {
    if let Some((_, snap)) = local::load(c, email).await? {
        touched.add(&snap);
        emails::delete(c, email).await?;
    }
    Ok(())
}

/// Does this row's user intent end with the message deleted (to the trash or for good)?
fn deletes(r: &Row) -> bool {
    r.email_payload().is_some_and(|p| {
        p.ops
            .iter()
            .rev()
            .find(|o| !matches!(o.op, Op::SetFlag { .. }))
            .is_some_and(|o| matches!(o.op, Op::Trash { .. } | Op::Destroy | Op::Discard { .. }))
    })
}

/// The email a lost change now applies to: its own row when the sync re-identified it (new
/// server identity after a UIDVALIDITY change, re-matched by Message-ID), else the oldest row
/// with the same Message-ID (and size, when both are known) that has no queued changes of its
/// own.
///
/// A copy the lost changes are `superseded` on (the user acted on it since, see
/// `apply::supersede_siblings`) is taken only when no other copy is there, and then the
/// changes go to the failed list: a lost change is not carried over to a copy the user decided
/// about later, while the copy another client moved away is still to be found (model test,
/// Cyrus IMAP seed 26011: a delete for good from the trash, lost because the other client
/// moved the message to C after copying it to INBOX, was found again on the INBOX copy the
/// user had marked read since, and expunged it; the copy in C is the one it addressed).
async fn find_again<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    old: EmailId,
    p: &model::EmailPayload,
    superseded: &[i64],
) -> Result<Option<Email>, Error> {
    // A retired identity (its mailbox renumbered) is not a new one: the message is looked
    // for by Message-ID like any other.
    if let Some((e, _)) = local::load(c, old).await?
        && e.remote_id != p.remote_id
        && !emails::is_retired(&e.remote_id)
    {
        return Ok(Some(e));
    }
    let Some(mid) = &p.message_id else {
        return Ok(None);
    };
    let mut fallback = None;
    for e in emails::find_by_message_id(c, account, mid).await? {
        if e.id == old {
            continue;
        }
        if let Some(size) = p.size
            && e.size != size
        {
            continue;
        }
        if !rows::for_email(c, e.id).await?.is_empty() {
            continue;
        }
        if emails::memberships(c, e.id).await?.is_empty() {
            continue;
        }
        if superseded.contains(&e.id.0) {
            fallback.get_or_insert(e);
            continue;
        }
        return Ok(Some(e));
    }
    Ok(fallback)
}

/// Moves the lost email's rows onto `found`, rebased on its current (server) state, makes the
/// head pending again and shows the changes on `found` locally; the old row, which the server
/// does not have, is deleted.
async fn requeue<C: ConnectionTrait>(
    c: &C,
    old: EmailId,
    found: &Email,
    queued: &[Row],
    now: chrono::DateTime<chrono::Utc>,
    touched: &mut Touched,
) -> Result<(), Error> {
    let Some((_, current)) = local::load(c, found.id).await? else {
        return Ok(());
    };
    // Where the server has it: another email row holds no queued changes, so it shows what
    // the sync wrote; the lost email's own row shows its queued changes, and its head's base
    // is what the sync last wrote of it (`reapply_after_sync` keeps it so).
    let base = match queued.first().and_then(Row::email_payload) {
        Some(p) if found.id == old => p.before.clone(),
        _ => current.clone(),
    };
    let mut moved = Vec::with_capacity(queued.len());
    for (k, r) in queued.iter().enumerate() {
        let Payload::Email(p) = &r.payload else {
            continue;
        };
        let mut np = p.clone();
        found.remote_id.clone_into(&mut np.remote_id);
        np.size = Some(found.size);
        if found.id != old {
            rows::set_email(c, r.id, found.id).await?;
        }
        let patch = Patch {
            payload: Some(Payload::Email(np.clone())),
            state: (k == 0).then_some(ChangeState::Pending),
            next_attempt_at: (k == 0).then_some(now),
            last_error: (k == 0).then_some(None),
            ..Patch::default()
        };
        rows::update(c, r.id, None, patch).await?;
        let mut nr = r.clone();
        nr.email_id = Some(found.id);
        nr.payload = Payload::Email(np);
        if k == 0 {
            nr.state = ChangeState::Pending;
        }
        moved.push(nr);
    }
    let (state, fields) = rebase(
        c,
        &moved,
        Folded {
            state: base,
            destroyed: false,
        },
        true,
    )
    .await?;
    let new = model::overlay(&current, &state.state, &fields);
    local::write_existing(c, found.id, &current, &new, touched).await?;
    if found.id != old
        && let Some((_, snap)) = local::load(c, old).await?
    {
        if !rows::for_email(c, old).await?.is_empty() {
            warn!(email = %old, "Rows left on a lost email after re-resolving it.");
        } else {
            touched.add(&snap);
            emails::delete(c, old).await?;
        }
    }
    info!(from = %old, to = %found.id, changes = moved.len(), "Lost changes found again.");
    Ok(())
}
