//! The optimistic side of the queue: applying a change locally while merging it into the
//! email's not-yet-sent row, withdrawing or compensating changes, and re-deriving an email's
//! rows and local state after one of them is removed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mailsync_store::emails::{self, Email};
use mailsync_store::queue::{self, ChangeState, NewChange};
use mailsync_store::{AccountId, ConnectionTrait, EmailId, MailboxId, Role, mailboxes};

use crate::change::{Change, Flag, OutgoingMessage};
use crate::error::{Error, UndoRefusal};
use crate::local::{self, Touched};
use crate::model::{
    self, EmailPayload, Fields, Folded, Location, Op, OpEntry, PAYLOAD_VERSION, Payload,
    SendPayload, Snapshot, Target,
};
use crate::outbox::{Enqueued, Undone, not_found_is_none};
use crate::rows::{self, Patch, Row};

// ----- enqueue ---------------------------------------------------------------------------------------

pub(crate) async fn enqueue_send<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mut message: OutgoingMessage,
    draft: Option<crate::model::SentDraft>,
    now: DateTime<Utc>,
) -> Result<Enqueued, Error> {
    message.prepare()?;
    let payload = Payload::Send(Box::new(SendPayload {
        v: PAYLOAD_VERSION,
        at: now,
        handed_at: None,
        submitted_at: None,
        submission_id: None,
        draft,
        message,
    }));
    let id = queue::insert(
        c,
        NewChange {
            account_id: account,
            email_id: None,
            kind: payload.kind().to_owned(),
            payload: payload.to_json(),
            next_attempt_at: now,
        },
    )
    .await?;
    Ok(Enqueued::Queued(id))
}

pub(crate) async fn check_mailbox<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    id: MailboxId,
) -> Result<(), Error> {
    let mb = not_found_is_none(mailboxes::get(c, id).await)?.ok_or(Error::MailboxNotFound(id))?;
    if mb.account_id != account {
        return Err(Error::WrongAccount {
            what: "mailbox",
            expected: account,
            actual: mb.account_id,
        });
    }
    if !mb.selectable {
        return Err(Error::MailboxNotSelectable(id));
    }
    Ok(())
}

pub(crate) async fn load_email<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    id: EmailId,
) -> Result<(Email, Snapshot), Error> {
    let (email, snap) = local::load(c, id).await?.ok_or(Error::EmailNotFound(id))?;
    if email.account_id != account {
        return Err(Error::WrongAccount {
            what: "email",
            expected: account,
            actual: email.account_id,
        });
    }
    Ok((email, snap))
}

pub(crate) async fn enqueue_email<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    change: &Change,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Enqueued, Error> {
    let Some(email_id) = change.email() else {
        return Ok(Enqueued::Unchanged);
    };
    let (email, current) = load_email(c, account, email_id).await?;
    let queued = rows::for_email(c, email_id).await?;
    let op = match change {
        Change::SetFlag { flag, value, .. } => Op::SetFlag {
            flag: flag.clone(),
            value: *value,
        },
        Change::Move { to, .. } => {
            check_mailbox(c, account, *to).await?;
            Op::Move { to: vec![*to] }
        }
        Change::Delete { .. } => {
            if current.mailboxes.is_empty() {
                let deleting = queued
                    .last()
                    .and_then(Row::email_payload)
                    .is_some_and(|p| p.fold().destroyed);
                if deleting {
                    return Ok(Enqueued::Unchanged);
                }
                Op::Destroy
            } else {
                match mailboxes::find_by_role(c, account, Role::Trash).await? {
                    Some(t) if !current.mailboxes.iter().any(|l| l.mailbox_id == t.id) => {
                        Op::Trash { to: t.id }
                    }
                    _ => Op::Destroy,
                }
            }
        }
        Change::Send(_) => return Ok(Enqueued::Unchanged),
    };
    let entries = vec![OpEntry {
        at: now,
        op,
        undo: false,
        undone: false,
    }];
    apply_entries(c, &email, &current, &queued, entries, touched).await
}

/// Queues `ops` for an email as one action: a compensation (`undo`) or a retried change.
pub(crate) async fn enqueue_ops<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    email_id: EmailId,
    ops: Vec<Op>,
    undo: bool,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Enqueued, Error> {
    let (email, current) = load_email(c, account, email_id).await?;
    let queued = rows::for_email(c, email_id).await?;
    let entries = ops
        .into_iter()
        .map(|op| OpEntry {
            at: now,
            op,
            undo,
            undone: false,
        })
        .collect();
    apply_entries(c, &email, &current, &queued, entries, touched).await
}

/// The optimistic update plus coalescing: applies `entries` to the local state and merges them
/// into the email's newest row when that row has not been handed to the server yet and no
/// mailbox change was queued after it (mailbox changes are barriers, see `rows::due_heads`).
pub(crate) async fn apply_entries<C: ConnectionTrait>(
    c: &C,
    email: &Email,
    current: &Snapshot,
    queued: &[Row],
    entries: Vec<OpEntry>,
    touched: &mut Touched,
) -> Result<Enqueued, Error> {
    // Identity of copies the server still has: the not-yet-sent tail row's `before`.
    let known: &[Location] = match queued.last() {
        Some(Row {
            state: ChangeState::Pending,
            payload: Payload::Email(p),
            ..
        }) => &p.before.mailboxes,
        _ => &[],
    };
    let mut after = Folded {
        state: current.clone(),
        destroyed: false,
    };
    for e in &entries {
        model::apply_op(&mut after, &e.op, known);
    }
    // A destroy or a draft's new content is work for the server even when the flags and
    // mailboxes stay as they are.
    let destroys = entries
        .iter()
        .any(|e| matches!(e.op, Op::Destroy | Op::Discard { .. } | Op::Replace { .. }));
    let moves = entries.iter().any(|e| {
        matches!(
            e.op,
            Op::Move { .. } | Op::Trash { .. } | Op::Destroy | Op::Discard { .. }
        )
    });
    if after.state == *current && !destroys {
        return Ok(Enqueued::Unchanged);
    }
    // Flags the user just decided on this copy (see `supersede_siblings`).
    let flags: Vec<Flag> = entries
        .iter()
        .filter_map(|e| match &e.op {
            Op::SetFlag { flag, .. } => Some(flag.clone()),
            _ => None,
        })
        .collect();
    let mut result = None;
    if let Some(tail) = queued.last()
        && tail.state == ChangeState::Pending
        && let Payload::Email(p) = &tail.payload
        && !rows::mailbox_change_after(c, email.account_id, tail.id).await?
    {
        let mut merged = p.clone();
        merged.ops.extend(entries.iter().cloned());
        // The user acted again: their last value of every field they touched goes up, even
        // one that is back where the row started (see `model::reassert`).
        merged.reassert = true;
        if merged.delta().is_empty() {
            if rows::delete(c, tail.id, Some(ChangeState::Pending)).await? {
                result = Some(Enqueued::Collapsed(tail.id));
            }
        } else if rows::update(
            c,
            tail.id,
            Some(ChangeState::Pending),
            Patch {
                payload: Some(Payload::Email(merged)),
                ..Patch::default()
            },
        )
        .await?
        {
            result = Some(Enqueued::Merged(tail.id));
        }
    }
    let result = match result {
        Some(r) => r,
        None => {
            let payload = Payload::Email(EmailPayload {
                v: PAYLOAD_VERSION,
                remote_id: email.remote_id.clone(),
                message_id: email.message_id.clone(),
                size: Some(email.size),
                before: current.clone(),
                ops: entries,
                reassert: true,
                superseded_on: Vec::new(),
            });
            let next_attempt_at = payload.last_at().unwrap_or_else(mailsync_store::now);
            let id = queue::insert(
                c,
                NewChange {
                    account_id: email.account_id,
                    email_id: Some(email.id),
                    kind: payload.kind().to_owned(),
                    payload: payload.to_json(),
                    next_attempt_at,
                },
            )
            .await?;
            Enqueued::Queued(id)
        }
    };
    supersede_siblings(c, email, moves, &flags).await?;
    local::write(c, email.id, current, &after.state, touched).await?;
    if after.state.mailboxes.is_empty() {
        // A destroy that cancelled a new draft's upload: the server never had it, nothing is
        // queued, and a row in no mailbox would stay for good (model test, Dovecot and Cyrus
        // IMAP seed 2009: a new draft moved into a mailbox the user then deleted).
        crate::outcome::drop_if_nowhere(c, email.id, touched).await?;
    }
    Ok(result)
}

/// The user acted on `email`: queued changes of other copies of the same message (same
/// Message-ID and size) that would undo what they just decided here are marked superseded on
/// it, and a lost one is not carried over to this copy (`resolve::find_again` prefers another
/// copy, or lists it as failed). Should one of them be lost (its copy gone) and this email be
/// found as where the message went, the user's later decision stands:
/// - they moved or deleted it (`moves`): changes that also move or delete it (model test,
///   Dovecot seed 4019: a delete for good, cut, then the message reappeared in the trash by
///   another client's move, the user moved it to A, and the lost delete, found again,
///   expunged it from A);
/// - they set or cleared `flags` on it: changes that move or delete it, which would take away
///   the copy they just marked, or set one of those flags (model test, Cyrus IMAP seed 26011:
///   a delete for good from the trash, queued; the other client copied the message to INBOX
///   and moved the trash copy to C; the user marked the INBOX copy read, and the lost delete,
///   found again on it, expunged it: the read mark was gone and nothing was listed as failed).
async fn supersede_siblings<C: ConnectionTrait>(
    c: &C,
    email: &Email,
    moves: bool,
    flags: &[Flag],
) -> Result<(), Error> {
    if !moves && flags.is_empty() {
        return Ok(());
    }
    let Some(mid) = &email.message_id else {
        return Ok(());
    };
    for other in emails::find_by_message_id(c, email.account_id, mid).await? {
        // A draft the server has not stored yet has an estimated size: its upload, cut after
        // the server stored it, may be the copy the user acted on (model test, Cyrus JMAP seed
        // 26005, see `outcome::superseded_by_holder`).
        let estimated = |e: &Email| e.remote_id.starts_with(crate::draft::LOCAL_PREFIX);
        if other.id == email.id
            || (other.size != email.size && !estimated(&other) && !estimated(email))
        {
            continue;
        }
        for r in rows::for_email(c, other.id).await? {
            let Some(p) = r.email_payload() else { continue };
            let relocates = p.ops.iter().any(|o| {
                matches!(
                    o.op,
                    Op::Move { .. } | Op::Trash { .. } | Op::Destroy | Op::Discard { .. }
                )
            });
            let same_flag = p
                .ops
                .iter()
                .any(|o| matches!(&o.op, Op::SetFlag { flag, .. } if flags.contains(flag)));
            if !(relocates || same_flag) || p.superseded_on.contains(&email.id.0) {
                continue;
            }
            let mut np = p.clone();
            np.superseded_on.push(email.id.0);
            rows::set_payload(c, r.id, Payload::Email(np)).await?;
        }
    }
    Ok(())
}

// ----- undo ---------------------------------------------------------------------------------------

/// Withdraws a not-yet-sent row (or only its op `k`), or queues the compensation of a row the
/// server has (or may have) seen.
pub(crate) async fn withdraw_or_compensate<C: ConnectionTrait>(
    c: &C,
    row: &Row,
    k: Option<usize>,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Undone, Error> {
    match &row.payload {
        Payload::Mailbox(_) => Err(Error::CannotUndo {
            id: row.id,
            why: UndoRefusal::MailboxChange,
        }),
        Payload::Send(_) => {
            if row.state == ChangeState::Pending
                && rows::delete(c, row.id, Some(ChangeState::Pending)).await?
            {
                Ok(Undone::Withdrawn(row.id))
            } else {
                Err(Error::CannotUndo {
                    id: row.id,
                    why: UndoRefusal::AlreadySent,
                })
            }
        }
        Payload::Email(p) => {
            let email = row.email_id.ok_or(Error::ChangeNotFound(row.id))?;
            let queued = rows::for_email(c, email).await?;
            let i = queued
                .iter()
                .position(|r| r.id == row.id)
                .ok_or(Error::ChangeNotFound(row.id))?;
            if row.state == ChangeState::Pending {
                // A draft's save goes as a whole: taking one op out of it (its content, or its
                // place in Drafts) leaves a draft that is neither the old one nor the new.
                let saves = p.ops.iter().any(|o| matches!(o.op, Op::Replace { .. }));
                // The ops of the action undone (an action's ops share its time), and whether
                // the row also holds earlier actions.
                let action = k.and_then(|k| p.ops.get(k)).map(|o| o.at);
                let of_action = |o: &model::OpEntry| Some(o.at) == action;
                let others = action.is_some() && p.ops.iter().any(|o| !of_action(o));
                if saves
                    && others
                    && p.ops
                        .iter()
                        .filter(|o| of_action(o))
                        .any(|o| matches!(o.op, Op::Replace { .. }))
                {
                    // A save merged into a row with earlier actions (a new draft's first
                    // save): the earlier content was replaced in the row and is not kept,
                    // and withdrawing the row would take the draft's creation with it
                    // (model test seed 11046, every backend: `d-save; flag; d-update;
                    // undo` left no draft).
                    return Err(Error::CannotUndo {
                        id: row.id,
                        why: UndoRefusal::DraftSaved,
                    });
                }
                let partial = k.filter(|_| p.ops.len() > 1 && (!saves || others));
                let withdrawn = match partial {
                    Some(k) => {
                        let mut ops = p.ops.clone();
                        if k < ops.len() {
                            ops.remove(k);
                        }
                        resettle(c, &queued, i, Some(ops), touched).await?;
                        true
                    }
                    None => {
                        if rows::delete(c, row.id, Some(ChangeState::Pending)).await? {
                            resettle(c, &queued, i, None, touched).await?;
                            true
                        } else {
                            false
                        }
                    }
                };
                if withdrawn {
                    // The copies the change hid come back as they were when it was queued;
                    // the sync meanwhile may have passed their expunge (VANISHED said nothing
                    // about a copy that was hidden) or another client's flag change (a sync
                    // leaves an email with queued changes as the user left it), so the base
                    // is brought back as after an eviction: its mailboxes compared in full,
                    // every one (a flag change hides the mailbox the email stays in too),
                    // and JMAP listed in full (model test, Dovecot seed 5042: another client
                    // moved the message away while the user's delete to the trash waited;
                    // the undo put it back in Archive, where it stayed for good. Cyrus IMAP
                    // seed 81029 with cuts: another client cleared \Flagged while the user's
                    // clearing waited, and the undo set it again for good).
                    crate::outcome::base_back_after_eviction(c, row.account, email, &p.before)
                        .await?;
                    // A new draft whose save is withdrawn was never anywhere (model test,
                    // Dovecot and Cyrus IMAP seed 4114: `d-save; undo` left its row in no
                    // mailbox).
                    crate::outcome::drop_if_nowhere(c, email, touched).await?;
                    return Ok(Undone::Withdrawn(row.id));
                }
            }
            // Handed to the server: compensate, and mark what was undone.
            let ops = compensation(p, k).map_err(|why| Error::CannotUndo { id: row.id, why })?;
            let mut marked = p.clone();
            for (j, o) in marked.ops.iter_mut().enumerate() {
                if k.is_none_or(|k| k == j) {
                    o.undone = true;
                }
            }
            rows::set_payload(c, row.id, Payload::Email(marked)).await?;
            let compensation = enqueue_ops(c, row.account, email, ops, true, now, touched).await?;
            Ok(Undone::Compensated {
                change: row.id,
                compensation,
            })
        }
    }
}

/// The ops that undo a whole row (`k = None`) or only its op `k`, as a new change.
pub(crate) fn compensation(p: &EmailPayload, k: Option<usize>) -> Result<Vec<Op>, UndoRefusal> {
    let (prev, after) = match k {
        None => (model::fold(&p.before, &[]), p.fold()),
        Some(k) => {
            let k = k.min(p.ops.len().saturating_sub(1));
            (
                model::fold(&p.before, p.ops.get(..k).unwrap_or_default()),
                model::fold(&p.before, p.ops.get(..=k).unwrap_or_default()),
            )
        }
    };
    if after.destroyed && !prev.destroyed {
        return Err(UndoRefusal::PermanentlyDeleted);
    }
    // A draft save the server saw: moving it "back" would leave it in no mailbox.
    if p.ops.iter().any(|o| matches!(o.op, Op::Replace { .. })) {
        return Err(UndoRefusal::DraftSaved);
    }
    let d = model::diff(&prev.state, &after);
    let mut ops: Vec<Op> = d
        .flags
        .into_iter()
        .map(|f| Op::SetFlag {
            flag: f.flag,
            value: !f.value,
        })
        .collect();
    if d.target != Target::Stay {
        ops.push(if prev.destroyed {
            Op::Destroy
        } else {
            Op::Move {
                to: prev.state.mailbox_ids(),
            }
        });
    }
    Ok(ops)
}

/// Re-derives an email's rows after row `i` is removed (`replacement = None`; the caller
/// deletes or evicts it) or has its ops replaced: later rows are rebased on what the server
/// has without row `i`'s effect, rows left with nothing to send are dropped (when not yet
/// handed over), and the local state gets row `i`'s `before` back for every field these rows
/// touch, with the later rows' effects re-applied. Other fields (e.g. set by a sync since) are
/// left alone.
pub(crate) async fn resettle<C: ConnectionTrait>(
    c: &C,
    queued: &[Row],
    i: usize,
    replacement: Option<Vec<OpEntry>>,
    touched: &mut Touched,
) -> Result<(), Error> {
    let Some(x) = queued.get(i) else {
        return Ok(());
    };
    let (Some(email), Some(xp)) = (x.email_id, x.email_payload()) else {
        return Ok(());
    };
    let mut fields = Fields::of(&xp.delta());
    let mut state = Folded {
        state: xp.before.clone(),
        destroyed: false,
    };
    if let Some(ops) = replacement {
        let mut np = xp.clone();
        np.ops = ops;
        let d = np.delta();
        fields.add(Fields::of(&d));
        if d.is_empty() {
            rows::delete(c, x.id, None).await?;
        } else {
            rows::set_payload(c, x.id, Payload::Email(np.clone())).await?;
        }
        state = np.fold();
    }
    let rebased = rebase(c, queued.get(i + 1..).unwrap_or_default(), state, false).await?;
    fields.add(rebased.1);
    if let Some((_, current)) = local::load(c, email).await? {
        let mut new = model::overlay(&current, &rebased.0.state, &fields);
        // Every mailbox the state put back names is gone (a move into a mailbox another
        // client deleted since, left as the row's last op by an undo): the email shows where
        // the server has it, the queue's base, as it will once that move is refused. Where it
        // is now is the state being undone or reverted; kept, it no longer matched the queue,
        // and the next sync's re-application took it for the server's and dropped the
        // message's UID: the move was then found gone and the message lost locally (model
        // test, Dovecot seed 13028 with cuts: a move to A merged with a move to C, A deleted
        // by another client, the move to C undone).
        if !new.mailboxes.is_empty() && local::existing(c, &new.mailboxes).await?.is_empty() {
            let base = queued
                .first()
                .and_then(Row::email_payload)
                .map(|p| &p.before);
            if let Some(base) = base {
                let there = local::existing(c, &base.mailboxes).await?;
                if !there.is_empty() {
                    new.mailboxes = there;
                }
            }
        }
        // The state put back may name a mailbox deleted since (on the server, or by the
        // user's queued delete): such a location is left out, as after a sync (model test,
        // Cyrus JMAP seed 9319 under load: a revert into a deleted mailbox failed the
        // flush's transaction on the foreign key, every cycle).
        local::write_existing(c, email, &current, &new, touched).await?;
    }
    Ok(())
}

/// Rebases `rows` (consecutive rows of one email) on `state`: rewrites each row's `before`,
/// drops not-yet-sent rows left with nothing to send. Returns the final state and the fields
/// the remaining rows touch. `observed`: `state` was just read from the server, so a field
/// that agrees with it needs no reasserting.
pub(crate) async fn rebase<C: ConnectionTrait>(
    c: &C,
    rows_after: &[Row],
    mut state: Folded,
    observed: bool,
) -> Result<(Folded, Fields), Error> {
    let mut fields = Fields::default();
    for y in rows_after {
        let Some(yp) = y.email_payload() else {
            continue;
        };
        let mut np = yp.clone();
        np.before = state.state.clone();
        if observed {
            np.reassert = false;
        }
        let d = np.delta();
        if d.is_empty() && y.state == ChangeState::Pending {
            rows::delete(c, y.id, Some(ChangeState::Pending)).await?;
        } else if np != *yp {
            rows::set_payload(c, y.id, Payload::Email(np.clone())).await?;
        }
        fields.add(Fields::of(&d));
        state = np.fold();
    }
    Ok((state, fields))
}

// ----- sync hook -----------------------------------------------------------------------------

/// The local state an email's queued rows lead to, from the first row's `before`.
fn chain_state(queued: &[Row]) -> Option<Snapshot> {
    let first = queued.iter().find_map(Row::email_payload)?;
    let mut state = first.before.clone();
    for r in queued {
        if let Some(p) = r.email_payload() {
            let mut np = p.clone();
            np.before = state;
            state = np.fold().state;
        }
    }
    Some(state)
}

/// Re-applies queued changes on top of what a sync just wrote (the engine's hook; optional
/// but recommended). Call it in the sync's transaction, after writing a batch, with the ids of
/// the emails the batch wrote. For each one with queued changes:
/// - what the sync wrote (the fields where the local row no longer shows what the queue
///   leads to) becomes part of the server state the queued changes are based on (their
///   `before`: the source of a move gets the UID the sync saw); the other fields keep the
///   queue's base;
/// - not-yet-sent changes left with nothing to send are dropped (rows the user's actions
///   created still reassert the fields they touch, see `model::reassert`);
/// - the local row shows the queued changes again instead of the server's older values, so a
///   sync never makes an optimistic change flicker away before it is flushed.
///
/// Changes already handed to the server keep their operation; only their base is updated.
/// Returns how many of the emails had queued changes.
pub async fn reapply_after_sync<C: ConnectionTrait>(
    c: &C,
    emails: &[EmailId],
) -> Result<u64, Error> {
    local::lock(c, emails.iter().copied()).await?;
    let all = rows::for_emails(c, emails).await?;
    let mut by_email: HashMap<EmailId, Vec<Row>> = HashMap::new();
    for r in all {
        if let Some(e) = r.email_id {
            by_email.entry(e).or_default().push(r);
        }
    }
    let mut touched = Touched::default();
    let n = by_email.len() as u64;
    for (email, queued) in by_email {
        // A lost change is rebased too: its base is where the server last had the message,
        // which `reresolve` starts from when the message is found again under its own row.
        let Some((_, current)) = local::load(c, email).await? else {
            continue;
        };
        // Still exactly what the queue shows (MODSEQs included, which a sync refreshes): the
        // sync did not write this email, so there is no new server state to rebase on, and
        // rebasing on the optimistic state would make the queued changes look already done and
        // drop them before they reach the server.
        let Some(shown) = chain_state(&queued) else {
            continue;
        };
        if shown == current {
            continue;
        }
        // The server state to rebase on: what the sync wrote where it differs from what the
        // queue shows, and the queue's own base everywhere else. Only a field the sync changed
        // says something new about the server: a sync that wrote flags leaves the optimistic
        // location in place, and taking that for the server's made a queued move look done
        // and dropped it unsent (model test seed 909 on Dovecot: a delete to the trash lost
        // because another client marked the message read).
        let mut before = queued
            .iter()
            .find_map(Row::email_payload)
            .map(|p| p.before.clone())
            .unwrap_or_else(|| current.clone());
        let mut written = model::written_fields(&shown, &current);
        // A draft's new content handed to the server: the copy the local row now names may be
        // the new version itself (imap-sync records an APPEND's UID as soon as it has it, and
        // a killed process never recorded the outcome). Its base keeps the old copy, the one
        // the retry replaces; taken as the base, the retry appended again and removed the
        // version it had stored (model test, Dovecot seed 6001 with a kill mid-save).
        if queued.first().is_some_and(|r| {
            r.state != ChangeState::Pending
                && r.email_payload()
                    .is_some_and(|p| p.ops.iter().any(|o| matches!(o.op, Op::Replace { .. })))
        }) {
            written.mailboxes = false;
        }
        if current.mailboxes.is_empty() {
            // A sync never leaves an email it knows in no mailbox (one the server no longer
            // has is deleted); a row in none only lost mailboxes deleted on the server, which
            // `mailboxes::delete_missing` leaves queued emails for. Where the server has it is
            // still the queue's base, less those mailboxes (model test, Dovecot: a move into a
            // mailbox another client deleted, cut mid-flush, rebased the email onto nowhere and
            // the message in INBOX was lost locally).
            written.mailboxes = false;
            let mut kept = Vec::with_capacity(before.mailboxes.len());
            for l in before.mailboxes {
                if not_found_is_none(mailboxes::get(c, l.mailbox_id).await)?.is_some() {
                    kept.push(l);
                }
            }
            before.mailboxes = kept;
        }
        let base = model::overlay(&before, &current, &written);
        let (state, fields) = rebase(
            c,
            &queued,
            Folded {
                state: base,
                destroyed: false,
            },
            false,
        )
        .await?;
        let new = model::overlay(&current, &state.state, &fields);
        local::write_existing(c, email, &current, &new, &mut touched).await?;
    }
    touched.recount(c).await?;
    Ok(n)
}
