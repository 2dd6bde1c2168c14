//! What a flush does with the executor's answers (acknowledgement, new server identity,
//! eviction with revert), and the executor's view of a queued row.

use mailsync_store::entity::{email_mailboxes as em, emails as e};
use mailsync_store::queue;
use mailsync_store::{AccountId, ConnectionTrait, EmailId};
use mailsync_store::{checkpoints, emails};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tracing::{debug, warn};

use crate::apply::resettle;
use crate::error::Error;
use crate::executor::{Attempt, EmailChange, Operation, QueuedChange};
use crate::local::{self, Touched};
use crate::model::{Location, Payload, Snapshot, Target};
use crate::outbox::{Completed, Tally, not_found_is_none};
use crate::rows::{self, Patch, Row};

// ----- outcome ---------------------------------------------------------------------------------------

pub(crate) async fn on_done<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    row: &Row,
    relocated: Option<(Option<&str>, &[Location], Option<i64>)>,
    touched: &mut Touched,
    tally: &mut Tally,
) -> Result<(), Error> {
    rows::delete(c, row.id, None).await?;
    tally.done += 1;
    tally.completed.push(Completed {
        id: row.id,
        account,
        email: row.email_id,
        payload: row.payload.clone(),
    });
    if let Payload::Mailbox(p) = &row.payload {
        let rid = relocated.and_then(|(rid, _, _)| rid);
        return crate::mailbox::on_done(c, account, p, rid).await;
    }
    let (Some(email), Payload::Email(p)) = (row.email_id, &row.payload) else {
        return Ok(());
    };
    if p.delta().target == Target::Destroy {
        // Gone from the server: later changes of it are moot, and so is the local row.
        for later in rows::for_email(c, email).await? {
            debug!(change = %later.id, "Dropping a change of an email the server deleted.");
            rows::delete(c, later.id, None).await?;
            tally.moot += 1;
        }
        if let Some((_, snap)) = local::load(c, email).await? {
            touched.add(&snap);
            emails::delete(c, email).await?;
        }
        return Ok(());
    }
    if let Some((remote_id, locations, size)) = relocated {
        relocate(c, account, email, remote_id, locations, size, touched).await?;
    }
    Ok(())
}

/// Records the server identity an executed move or draft save gave the email (IMAP COPYUID or
/// APPENDUID, a JMAP id), locally and in the email's later rows. A row a sync already stored
/// for that copy gives way ([`emails::give_way`]), unless changes of its own are queued.
pub(crate) async fn relocate<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    email: EmailId,
    remote_id: Option<&str>,
    locations: &[Location],
    size: Option<i64>,
    touched: &mut Touched,
) -> Result<(), Error> {
    if superseded_by_holder(c, account, email, remote_id, locations, touched).await? {
        return Ok(());
    }
    for l in locations {
        if let Some(uid) = l.uid {
            let taken = em::Entity::find()
                .filter(em::Column::MailboxId.eq(l.mailbox_id.0))
                .filter(em::Column::Uid.eq(uid))
                .filter(em::Column::EmailId.ne(email.0))
                .one(c)
                .await?;
            if let Some(t) = taken
                && !emails::give_way(c, EmailId(t.email_id)).await?
            {
                warn!(email = %email, mailbox = %l.mailbox_id, uid, "A sync already stored the new copy, with changes of its own queued; keeping the local row as it is.");
                return Ok(());
            }
        }
    }
    if let Some(rid) = remote_id
        && let Some(other) = emails::find_by_remote_id(c, account, rid).await?
        && other.id != email
        && !emails::give_way(c, other.id).await?
    {
        warn!(email = %email, remote_id = rid, "A sync already stored the new copy, with changes of its own queued; keeping the local row as it is.");
        return Ok(());
    }
    let patch_locs = |locs: &mut Vec<Location>| {
        for l in locs.iter_mut() {
            if let Some(n) = locations.iter().find(|n| n.mailbox_id == l.mailbox_id) {
                *l = *n;
            }
        }
    };
    if let Some((e, current)) = local::load(c, email).await? {
        let mut new = current.clone();
        patch_locs(&mut new.mailboxes);
        local::write(c, email, &current, &new, touched).await?;
        let mut update = e::Entity::update_many().filter(e::Column::Id.eq(email.0));
        let mut changed = false;
        if let Some(rid) = remote_id
            && rid != e.remote_id
        {
            update = update.col_expr(e::Column::RemoteId, Expr::value(rid));
            changed = true;
        }
        // The stored size replaces a draft's estimate, for the changes queued from now on.
        if let Some(size) = size
            && size != e.size
        {
            update = update.col_expr(e::Column::Size, Expr::value(size));
            changed = true;
        }
        if changed {
            update.exec(c).await?;
        }
    }
    for later in rows::for_email(c, email).await? {
        if let Payload::Email(p) = &later.payload {
            let mut np = p.clone();
            patch_locs(&mut np.before.mailboxes);
            if let Some(rid) = remote_id {
                rid.clone_into(&mut np.remote_id);
            }
            if size.is_some() {
                np.size = size;
            }
            if np != *p {
                rows::set_payload(c, later.id, Payload::Email(np)).await?;
            }
        }
    }
    Ok(())
}

/// The row a sync stored for the copy an executed change created (found by the new copy's UID
/// or server id), when the user moved, deleted or sent that row's message after `email`'s
/// later changes were queued (`supersede_siblings` marked them): their later decision stands,
/// as for a lost change found again (`resolve`). `email` gives way instead of the sync's row:
/// its local row goes and its later changes go to the failed list. Model test, Cyrus JMAP
/// seed 26005 with cuts: a new draft's upload was cut after the server stored it and the user
/// then discarded the draft; the sync showed the stored copy as a draft of its own, which the
/// user sent and then took back with undo; the upload, found again, took that copy's identity
/// from the synced row and the old discard destroyed the draft the undo had brought back.
async fn superseded_by_holder<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    email: EmailId,
    remote_id: Option<&str>,
    locations: &[Location],
    touched: &mut Touched,
) -> Result<bool, Error> {
    let later = rows::for_email(c, email).await?;
    if later.is_empty() {
        return Ok(false);
    }
    let mut holders = Vec::new();
    for l in locations {
        if let Some(uid) = l.uid
            && let Some(t) = em::Entity::find()
                .filter(em::Column::MailboxId.eq(l.mailbox_id.0))
                .filter(em::Column::Uid.eq(uid))
                .filter(em::Column::EmailId.ne(email.0))
                .one(c)
                .await?
        {
            holders.push(t.email_id);
        }
    }
    if let Some(rid) = remote_id
        && let Some(other) = emails::find_by_remote_id(c, account, rid).await?
        && other.id != email
    {
        holders.push(other.id.0);
    }
    let Some(holder) = holders.into_iter().find(|h| {
        later
            .iter()
            .filter_map(Row::email_payload)
            .any(|p| p.superseded_on.contains(h))
    }) else {
        return Ok(false);
    };
    warn!(email = %email, holder, "The user acted on the copy a sync stored for this message after this email's later changes were queued; those changes are dropped.");
    // Deleted first, so that evicting does not put the email back where it was.
    if let Some((_, snap)) = local::load(c, email).await? {
        touched.add(&snap);
        emails::delete(c, email).await?;
    }
    for r in &later {
        evict(c, r, crate::resolve::SUPERSEDED_REASON, touched).await?;
    }
    Ok(true)
}

pub(crate) async fn evict<C: ConnectionTrait>(
    c: &C,
    row: &Row,
    reason: &str,
    touched: &mut Touched,
) -> Result<(), Error> {
    evict_with_count(c, row, reason, row.retry_count, touched).await
}

/// Moves a row to the failed list and reverts its optimistic change: the server wins.
pub(crate) async fn evict_with_count<C: ConnectionTrait>(
    c: &C,
    row: &Row,
    reason: &str,
    retry_count: u32,
    touched: &mut Touched,
) -> Result<(), Error> {
    warn!(change = %row.id, kind = row.payload.kind(), reason, "Change evicted; local change reverted.");
    let queued = match row.email_id {
        Some(email) => rows::for_email(c, email).await?,
        None => Vec::new(),
    };
    if retry_count != row.retry_count {
        rows::update(
            c,
            row.id,
            None,
            Patch {
                retry_count: Some(retry_count),
                ..Patch::default()
            },
        )
        .await?;
    }
    if not_found_is_none(queue::evict(c, row.id, reason).await)?.is_none() {
        return Ok(());
    }
    if let Some(i) = queued.iter().position(|r| r.id == row.id) {
        resettle(c, &queued, i, None, touched).await?;
    }
    if let Some(email) = row.email_id {
        drop_if_nowhere(c, email, touched).await?;
    }
    if let (Some(email), Payload::Email(p)) = (row.email_id, &row.payload) {
        base_back_after_eviction(c, row.account, email, &p.before).await?;
    }
    if let Payload::Mailbox(p) = &row.payload {
        crate::mailbox::revert(c, row.account, p, reason, touched).await?;
    }
    Ok(())
}

/// An email whose changes were evicted is shown on its queue's base again: where the server
/// had it when the first of them was queued, not where it has it now. Every path that evicts
/// an email's changes ends here ([`evict_with_count`], and `mailbox::revert` when the mailbox
/// they moved it into was refused), and so does an undo that withdraws a change not sent yet.
///
/// - Its IMAP mailboxes in that base are compared in full by the next sync: the sync may have
///   passed another client's expunge or flag change of a copy the changes hid (VANISHED and
///   FETCH name a UID the local row no longer showed), and a change evicted after part of it
///   took effect (the flags stored, then the connection cut before the move, and the move
///   refused later) left the server elsewhere, at a mod-sequence the sync has already passed.
///   Without this the base came back for good: a move into a mailbox whose create was refused
///   put the message back in Archive, which another client had expunged it from while the
///   move waited, and Archive's checkpoint said nothing had changed (model test, Dovecot seed
///   62004 with concurrent changes and faults).
/// - JMAP: the sync may have consumed another client's change to this email (moved or
///   destroyed it) while the queued change hid it, and Email/changes will not report it
///   again; the next sync lists every email once (a no-op for IMAP, whose mailboxes are
///   compared above). Evictions are failures and undos a person's action, rare enough for
///   that (model test, Cyrus JMAP seeds 9312 and 9319 under load: a reverted move left the
///   email in INBOX). Not when the row is gone (a change whose message the server no longer
///   has): nothing stale is left to correct.
pub(crate) async fn base_back_after_eviction<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    email: EmailId,
    before: &Snapshot,
) -> Result<(), Error> {
    compare_in_full(c, account, before).await?;
    if local::load(c, email).await?.is_some() {
        checkpoints::require_full_listing(c, account).await?;
    }
    Ok(())
}

/// The IMAP mailboxes of `before` (a queue's base shown again) are compared in full by the
/// next sync (flags and UIDs): what another client did to a copy while a queued change hid it
/// is behind their checkpoints.
async fn compare_in_full<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    before: &Snapshot,
) -> Result<(), Error> {
    for l in before.mailboxes.iter().filter(|l| l.uidvalidity.is_some()) {
        checkpoints::forget_modseq(c, account, l.mailbox_id).await?;
    }
    Ok(())
}

/// Removes an email that a revert left in no mailbox with nothing queued: the server never had
/// it (a new draft whose upload was refused, e.g. into a mailbox another client deleted) and
/// nothing will put it anywhere, so a row would stay for good (model test, Dovecot seed 777).
/// Its content is in the failed list with the change.
pub(crate) async fn drop_if_nowhere<C: ConnectionTrait>(
    c: &C,
    email: EmailId,
    touched: &mut Touched,
) -> Result<(), Error> {
    if !rows::for_email(c, email).await?.is_empty() {
        return Ok(());
    }
    if let Some((_, snap)) = local::load(c, email).await?
        && snap.mailboxes.is_empty()
    {
        touched.add(&snap);
        emails::delete(c, email).await?;
    }
    Ok(())
}

// ----- executor view -------------------------------------------------------------------------

pub(crate) fn queued_change(row: &Row, attempt: Attempt) -> Option<QueuedChange> {
    let operation = match &row.payload {
        Payload::Send(s) => Operation::Send(s.message.clone()),
        Payload::Mailbox(m) => Operation::Mailbox(crate::MailboxOperation {
            mailbox_id: m.mailbox_id,
            remote_id: m.remote_id.clone(),
            change: m.change.clone(),
            seen: m.seen.clone(),
        }),
        Payload::Email(p) => {
            let d = p.delta();
            let flags = if d.target == Target::Destroy {
                Vec::new()
            } else {
                d.flags
            };
            Operation::Email(EmailChange {
                email_id: row.email_id?,
                remote_id: p.remote_id.clone(),
                message_id: p.message_id.clone(),
                before: p.before.clone(),
                flags,
                target: d.target,
                content: d.content,
            })
        }
    };
    Some(QueuedChange {
        id: row.id,
        account: row.account,
        attempt,
        retry_count: row.retry_count,
        queued_at: row.created_at,
        operation,
    })
}

/// Sends the server accepted whose copy a sync has since seen in Sent are done: filing them
/// again would put a second copy there. The filing's own retry looks in Sent too, but only
/// when it is due; by then the user may have moved the copy elsewhere (model test, Cyrus IMAP
/// seed 9044: an APPEND to Sent cut before its answer, the copy moved to Junk by the user,
/// then filed again). Returns how many.
pub(crate) async fn settle_filed_sends<C: ConnectionTrait>(
    c: &C,
    account: mailsync_store::AccountId,
    queued: &[Row],
) -> Result<u32, Error> {
    let submitted: Vec<(&Row, &crate::model::SendPayload)> = queued
        .iter()
        .filter_map(|r| match &r.payload {
            Payload::Send(s)
                if r.state == mailsync_store::queue::ChangeState::Submitted
                    && s.submitted_at.is_some() =>
            {
                Some((r, &**s))
            }
            _ => None,
        })
        .collect();
    if submitted.is_empty() {
        return Ok(0);
    }
    let Some(sent) =
        mailsync_store::mailboxes::find_by_role(c, account, mailsync_store::Role::Sent).await?
    else {
        return Ok(0);
    };
    let mut n = 0;
    for (r, s) in submitted {
        let mut filed = false;
        for e in
            mailsync_store::emails::find_by_message_id(c, account, &s.message.message_id).await?
        {
            if mailsync_store::emails::memberships(c, e.id)
                .await?
                .iter()
                .any(|m| m.mailbox_id == sent.id)
            {
                filed = true;
                break;
            }
        }
        if filed
            && rows::delete(c, r.id, Some(mailsync_store::queue::ChangeState::Submitted)).await?
        {
            tracing::info!(change = %r.id, "Sent message found filed in Sent; send done.");
            n += 1;
        }
    }
    Ok(n)
}
