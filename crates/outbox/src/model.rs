//! The persisted payload of a queued change and the pure coalescing logic over it.
//!
//! An email's queued row keeps the state the server is expected to have before the row runs
//! (`before`) and the list of user actions merged into it (`ops`). What is sent is the
//! difference between `before` and the result of applying `ops` to it, so every coalescing rule
//! follows from one diff:
//! - the last value of a flag wins; moves A→B then B→C end in C: one move A→C;
//! - a flag set then cleared, or a move away and back, ends where it started, but the row still
//!   sends the user's last value (`reassert`): `before` is only what this client last knew, and
//!   another client may have changed that field meanwhile. The user's last action wins there
//!   as it does when the actions do not cancel out. Once a row is rebased on a state just read
//!   from the server (a sync), a field that agrees with it is nothing to send;
//! - a permanent delete leaves no mailbox: earlier flag changes and moves vanish from the delta;
//! - a delete to the trash is a move, so it replaces earlier moves (flag changes are kept: the
//!   message in the trash carries them).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mailsync_store::emails::Membership;
use mailsync_store::{Flags, MailboxId};
use serde::{Deserialize, Serialize};

use crate::change::{Flag, OutgoingMessage};

/// The version written in every payload (`"v"`).
pub(crate) const PAYLOAD_VERSION: u32 = 1;

/// Where one copy of an email is: the mailbox and, for IMAP, the identity of the copy there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The mailbox.
    pub mailbox_id: MailboxId,
    /// IMAP UIDVALIDITY of the copy (`None` for JMAP, or after an optimistic move).
    #[serde(default)]
    pub uidvalidity: Option<i64>,
    /// IMAP UID of the copy (`None` for JMAP, or after an optimistic move).
    #[serde(default)]
    pub uid: Option<i64>,
    /// IMAP MODSEQ last seen for the copy.
    #[serde(default)]
    pub modseq: Option<i64>,
}

impl Location {
    /// A location without IMAP identity.
    pub fn plain(mailbox_id: MailboxId) -> Self {
        Self {
            mailbox_id,
            uidvalidity: None,
            uid: None,
            modseq: None,
        }
    }
}

impl From<Membership> for Location {
    fn from(m: Membership) -> Self {
        Self {
            mailbox_id: m.mailbox_id,
            uidvalidity: m.uidvalidity,
            uid: m.uid,
            modseq: m.modseq,
        }
    }
}

impl From<Location> for Membership {
    fn from(l: Location) -> Self {
        Self {
            mailbox_id: l.mailbox_id,
            uidvalidity: l.uidvalidity,
            uid: l.uid,
            modseq: l.modseq,
        }
    }
}

/// The state of an email that changes can touch: its flags and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Flags and keywords.
    pub flags: Flags,
    /// Its locations, ordered by mailbox id.
    pub mailboxes: Vec<Location>,
}

impl Snapshot {
    /// The mailbox ids, sorted and unique.
    pub fn mailbox_ids(&self) -> Vec<MailboxId> {
        ids(&self.mailboxes)
    }
}

pub(crate) fn ids(locs: &[Location]) -> Vec<MailboxId> {
    let set: BTreeSet<MailboxId> = locs.iter().map(|l| l.mailbox_id).collect();
    set.into_iter().collect()
}

/// One user action as merged into a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    /// Set or clear a flag.
    SetFlag { flag: Flag, value: bool },
    /// Be in exactly these mailboxes (a move; also the compensation of a move).
    Move { to: Vec<MailboxId> },
    /// A delete that became a move to the trash.
    Trash { to: MailboxId },
    /// A delete that became a permanent delete.
    Destroy,
    /// A draft discarded: the email leaves mailbox `from` (the Drafts mailbox it was in), and
    /// is destroyed only when that leaves it in no mailbox. Another client's copy of the draft
    /// filed elsewhere is over JMAP the same Email in one more mailbox (Cyrus), and must stay
    /// there, as it does over IMAP, where it is a message of its own. Decided on the state the
    /// row is folded on, so a copy a sync finds before the flush is kept too. (Rows queued
    /// before this op existed carry `Destroy` and keep its meaning.)
    Discard {
        /// The mailbox the draft is discarded from.
        from: MailboxId,
    },
    /// A draft saved: the email's content becomes this message (the server gets a new message
    /// replacing the copies it has). Only the latest one in a row goes up.
    Replace {
        /// The draft's new content.
        message: Box<OutgoingMessage>,
    },
}

/// An [`Op`] and when the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpEntry {
    pub(crate) at: DateTime<Utc>,
    #[serde(flatten)]
    pub(crate) op: Op,
    /// This op compensates an earlier change (queued by an undo); undo skips it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) undo: bool,
    /// This op was undone by a compensating change; undo skips it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) undone: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The JSON in `pending_changes.payload` / `failed_mutations.payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Payload {
    /// Flags, moves and deletes of one email.
    Email(EmailPayload),
    /// A message to send.
    Send(Box<SendPayload>),
    /// Create, rename, delete or (un)subscribe a mailbox.
    Mailbox(crate::mailbox::MailboxPayload),
}

/// See [`Payload::Email`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EmailPayload {
    pub(crate) v: u32,
    /// The email's server identity when queued.
    pub(crate) remote_id: String,
    /// Its Message-ID, to find it again on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message_id: Option<String>,
    /// Its size, which with the Message-ID tells copies of one message from other messages
    /// reusing the Message-ID when the change must find it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) size: Option<i64>,
    /// The state the server is expected to have before this change (the local state before it).
    pub(crate) before: Snapshot,
    /// The user actions merged into this row, oldest first.
    pub(crate) ops: Vec<OpEntry>,
    /// Send the final value of every field the ops touch, also one that ends as `before` has
    /// it (see the module docs). Set on rows the user's actions create; cleared when the row is
    /// rebased on a state read from the server. Rows persisted without it behave as before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) reassert: bool,
    /// Other emails with this message's Message-ID and size that the user moved or deleted
    /// after this row was queued: copies they saw again and decided about. A lost row is not
    /// carried over to one of them (see `resolve`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) superseded_on: Vec<i64>,
}

/// The draft a send came from (`Outbox::send_draft`): sending a draft queues the send and
/// discards the draft at the same instant, one action of the user's that one undo takes back
/// whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SentDraft {
    /// The draft's email.
    pub(crate) email: i64,
    /// The draft's Message-ID (the send goes out with a fresh one), for a draft put back from
    /// the send's content.
    pub(crate) message_id: String,
}

/// See [`Payload::Send`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SendPayload {
    pub(crate) v: u32,
    /// When the user sent it.
    pub(crate) at: DateTime<Utc>,
    /// Set (and committed) right before the message is handed to the server (SMTP `MAIL`/DATA,
    /// `EmailSubmission/set`); cleared when the executor reports it was not applied. A send in
    /// flight with this set and no `submitted_at` may have been delivered: it is looked for,
    /// never submitted again automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) handed_at: Option<DateTime<Utc>>,
    /// Set (and committed) as soon as the server accepted it for delivery (SMTP 250 after DATA,
    /// the EmailSubmission created): never submit it again, only file it in Sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) submitted_at: Option<DateTime<Utc>>,
    /// The JMAP EmailSubmission id the server gave, when it was accepted over JMAP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) submission_id: Option<String>,
    /// Set when the send came from a draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) draft: Option<SentDraft>,
    pub(crate) message: OutgoingMessage,
}

impl Payload {
    pub(crate) fn parse(id: i64, text: &str) -> Result<Self, crate::Error> {
        serde_json::from_str(text).map_err(|source| crate::Error::Payload { id, source })
    }

    pub(crate) fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail (string keys, no foreign impls).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// When the latest user action in this row happened.
    pub(crate) fn last_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Email(e) => e.ops.last().map(|o| o.at),
            Self::Send(s) => Some(s.at),
            Self::Mailbox(m) => Some(m.at),
        }
    }

    /// The `kind` column for this payload.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Send(_) => "send",
            Self::Mailbox(_) => "mailbox",
            Self::Email(e) => match e.delta().target {
                _ if e.ops.iter().any(|o| matches!(o.op, Op::Replace { .. })) => "draft",
                Target::Destroy => "delete",
                // A discarded draft that stays where another client filed it.
                _ if e.discards() => "delete",
                Target::Mailboxes(_) => "move",
                Target::Stay => "flags",
            },
        }
    }
}

/// A flag to set or clear on the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlagChange {
    /// The flag.
    pub flag: Flag,
    /// Set (`true`) or clear.
    pub value: bool,
}

/// Where an email should end up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Where it is (a flag change only).
    Stay,
    /// In exactly these mailboxes (sorted): a move. For IMAP this is always one mailbox.
    Mailboxes(Vec<MailboxId>),
    /// Deleted permanently (expunged / destroyed).
    Destroy,
}

/// What a row asks the server to do: flag changes (applied first), then a move or a destroy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delta {
    /// Flags whose value differs from `before` (for a destroy: what the ops changed locally).
    pub(crate) flags: Vec<FlagChange>,
    pub(crate) target: Target,
    /// A draft's new content: upload it where the email ends up, then remove the old copies.
    pub(crate) content: Option<OutgoingMessage>,
}

impl Delta {
    pub(crate) fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.target == Target::Stay && self.content.is_none()
    }
}

/// The result of applying ops to a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Folded {
    pub(crate) state: Snapshot,
    pub(crate) destroyed: bool,
}

/// Applies one op to a state (the optimistic local update, and the fold). `known` are
/// locations whose server identity may be reused when the email comes back to their mailbox
/// before the server heard of it leaving (A→B→A keeps A's UID).
pub(crate) fn apply_op(state: &mut Folded, op: &Op, known: &[Location]) {
    match op {
        Op::SetFlag { flag, value } => flag.apply(&mut state.state.flags, *value),
        Op::Move { to } => {
            relocate(&mut state.state, to, known);
            state.destroyed = false;
        }
        Op::Trash { to } => {
            relocate(&mut state.state, &[*to], known);
            state.destroyed = false;
        }
        Op::Destroy => {
            state.state.mailboxes.clear();
            state.destroyed = true;
        }
        Op::Discard { from } => {
            state.state.mailboxes.retain(|l| l.mailbox_id != *from);
            state.destroyed = state.state.mailboxes.is_empty();
        }
        // The content is not part of the snapshot; `content` reads it from the ops.
        Op::Replace { .. } => {}
    }
}

/// The content the ops leave to upload: the latest `Replace` not followed by a destroy or a
/// discard.
pub(crate) fn content(ops: &[OpEntry]) -> Option<OutgoingMessage> {
    latest_content(ops).cloned()
}

/// [`content`], borrowed.
pub(crate) fn latest_content(ops: &[OpEntry]) -> Option<&OutgoingMessage> {
    let mut out = None;
    for o in ops.iter().filter(|o| !o.undone) {
        match &o.op {
            Op::Replace { message } => out = Some(message.as_ref()),
            Op::Destroy | Op::Discard { .. } => out = None,
            _ => {}
        }
    }
    out
}

/// Puts the email in exactly `to`, keeping the identity of copies already in one of them (or
/// known from `known`).
fn relocate(s: &mut Snapshot, to: &[MailboxId], known: &[Location]) {
    let wanted: BTreeSet<MailboxId> = to.iter().copied().collect();
    let old = std::mem::take(&mut s.mailboxes);
    s.mailboxes = wanted
        .into_iter()
        .map(|m| {
            old.iter()
                .chain(known)
                .find(|l| l.mailbox_id == m)
                .copied()
                .unwrap_or_else(|| Location::plain(m))
        })
        .collect();
}

impl EmailPayload {
    /// Whether the row ends with a draft's discard (its last op that places the email).
    pub(crate) fn discards(&self) -> bool {
        self.ops
            .iter()
            .rev()
            .filter(|o| !o.undone)
            .find(|o| !matches!(o.op, Op::SetFlag { .. } | Op::Replace { .. }))
            .is_some_and(|o| matches!(o.op, Op::Discard { .. }))
    }

    /// The state after all ops, starting from `before`.
    pub(crate) fn fold(&self) -> Folded {
        fold(&self.before, &self.ops)
    }

    /// What this row asks of the server.
    pub(crate) fn delta(&self) -> Delta {
        let after = self.fold();
        let mut d = diff(&self.before, &after);
        if self.reassert && !after.destroyed {
            reassert(&mut d, &self.ops, &after.state);
        }
        d.content = content(&self.ops);
        // A draft never uploaded and discarded again: the server has nothing to remove.
        if d.target == Target::Destroy && self.before.mailboxes.is_empty() {
            d.flags.clear();
            d.target = Target::Stay;
        }
        d
    }
}

/// Adds to `d` the fields `ops` touch whose final value (in `after`) is the one they started
/// from: a flag set then cleared is sent cleared, a move away and back is a move to where the
/// email was, which the executor checks against the server.
fn reassert(d: &mut Delta, ops: &[OpEntry], after: &Snapshot) {
    let mut moved = false;
    for o in ops.iter().filter(|o| !o.undone) {
        match &o.op {
            Op::SetFlag { flag, .. } => {
                if !d.flags.iter().any(|f| f.flag == *flag) {
                    d.flags.push(FlagChange {
                        flag: flag.clone(),
                        value: flag.is_set(&after.flags),
                    });
                }
            }
            Op::Move { .. } | Op::Trash { .. } => moved = true,
            Op::Destroy | Op::Discard { .. } | Op::Replace { .. } => {}
        }
    }
    if moved && d.target == Target::Stay {
        d.target = Target::Mailboxes(after.mailbox_ids());
    }
}

pub(crate) fn fold(before: &Snapshot, ops: &[OpEntry]) -> Folded {
    let mut s = Folded {
        state: before.clone(),
        destroyed: false,
    };
    for o in ops {
        apply_op(&mut s, &o.op, &before.mailboxes);
    }
    s
}

pub(crate) fn diff(before: &Snapshot, after: &Folded) -> Delta {
    let (b, a) = (&before.flags, &after.state.flags);
    let mut flags = Vec::new();
    for (flag, was, now) in [
        (Flag::Seen, b.seen, a.seen),
        (Flag::Flagged, b.flagged, a.flagged),
        (Flag::Answered, b.answered, a.answered),
        (Flag::Draft, b.draft, a.draft),
    ] {
        if was != now {
            flags.push(FlagChange { flag, value: now });
        }
    }
    let was: BTreeSet<&String> = b.keywords.iter().collect();
    let now: BTreeSet<&String> = a.keywords.iter().collect();
    for k in was.symmetric_difference(&now) {
        flags.push(FlagChange {
            flag: Flag::Keyword((*k).clone()),
            value: now.contains(k),
        });
    }
    let target = if after.destroyed {
        Target::Destroy
    } else if before.mailbox_ids() != after.state.mailbox_ids() {
        Target::Mailboxes(after.state.mailbox_ids())
    } else {
        Target::Stay
    };
    Delta {
        flags,
        target,
        content: None,
    }
}

/// The fields of an email that a row changes: restoring a row's `before` touches these only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) flags: BTreeSet<Flag>,
    pub(crate) mailboxes: bool,
}

impl Fields {
    pub(crate) fn of(delta: &Delta) -> Self {
        Self {
            flags: delta.flags.iter().map(|f| f.flag.clone()).collect(),
            mailboxes: delta.target != Target::Stay,
        }
    }

    pub(crate) fn add(&mut self, other: Self) {
        self.flags.extend(other.flags);
        self.mailboxes |= other.mailboxes;
    }
}

/// The fields where `written` differs from `shown`: what a sync wrote over the state the queue
/// showed locally. A field equal in both was either left alone by the sync or written with the
/// value the queue already shows; either way `shown` says nothing new about the server there.
pub(crate) fn written_fields(shown: &Snapshot, written: &Snapshot) -> Fields {
    let after = Folded {
        state: written.clone(),
        destroyed: false,
    };
    let mut f = Fields::of(&diff(shown, &after));
    // Locations compare whole: a sync that only gave a copy its UID or a new MODSEQ wrote it.
    f.mailboxes = shown.mailboxes != written.mailboxes;
    f
}

/// `current` with the `fields` taken from `computed`.
pub(crate) fn overlay(current: &Snapshot, computed: &Snapshot, fields: &Fields) -> Snapshot {
    let mut out = current.clone();
    for f in &fields.flags {
        f.apply(&mut out.flags, f.is_set(&computed.flags));
    }
    if fields.mailboxes {
        out.mailboxes = computed.mailboxes.clone();
    }
    out
}

/// A short human description of a row (for listings of pending and failed changes).
pub(crate) fn describe(p: &Payload) -> String {
    match p {
        Payload::Mailbox(m) => crate::mailbox::describe(m),
        Payload::Send(s) => {
            let to: Vec<&str> = s
                .message
                .to
                .iter()
                .chain(&s.message.cc)
                .chain(&s.message.bcc)
                .map(|a| a.email.as_str())
                .collect();
            let state = if s.submitted_at.is_some() {
                " (sent, filing in Sent)"
            } else if s.handed_at.is_some() {
                " (handed to the server)"
            } else {
                ""
            };
            format!("send {:?} to {}{state}", s.message.subject, to.join(", "))
        }
        Payload::Email(e) => {
            let d = e.delta();
            let mut parts: Vec<String> = Vec::new();
            if let Some(m) = &d.content {
                parts.push(format!("save draft {:?}", m.subject));
            }
            if d.target != Target::Destroy {
                for f in &d.flags {
                    parts.push(match (&f.flag, f.value) {
                        (Flag::Seen, true) => "mark read".into(),
                        (Flag::Seen, false) => "mark unread".into(),
                        (Flag::Flagged, true) => "flag".into(),
                        (Flag::Flagged, false) => "unflag".into(),
                        (flag, true) => format!("add {flag}"),
                        (flag, false) => format!("remove {flag}"),
                    });
                }
            }
            let trash = e.ops.iter().any(|o| matches!(o.op, Op::Trash { .. }));
            match &d.target {
                Target::Stay => {}
                Target::Destroy => parts.push("delete permanently".into()),
                Target::Mailboxes(m) if e.discards() => {
                    let list: Vec<String> = m.iter().map(|m| m.to_string()).collect();
                    parts.push(format!(
                        "discard draft (its copies in mailbox {} kept)",
                        list.join(", ")
                    ));
                }
                Target::Mailboxes(m) => {
                    let list: Vec<String> = m.iter().map(|m| m.to_string()).collect();
                    let verb = if trash {
                        "delete (move to trash"
                    } else {
                        "move to mailbox"
                    };
                    let close = if trash { ")" } else { "" };
                    parts.push(format!("{verb} {}{close}", list.join(", ")));
                }
            }
            if parts.is_empty() {
                "no change".into()
            } else {
                parts.join("; ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn before(mailboxes: &[i64]) -> Snapshot {
        Snapshot {
            flags: Flags::default(),
            mailboxes: mailboxes
                .iter()
                .map(|m| Location {
                    mailbox_id: MailboxId(*m),
                    uidvalidity: Some(7),
                    uid: Some(100 + m),
                    modseq: None,
                })
                .collect(),
        }
    }

    fn payload(b: Snapshot, ops: Vec<Op>) -> EmailPayload {
        EmailPayload {
            v: PAYLOAD_VERSION,
            remote_id: "r".into(),
            message_id: None,
            size: None,
            superseded_on: Vec::new(),
            before: b,
            ops: ops
                .into_iter()
                .enumerate()
                .map(|(i, op)| OpEntry {
                    at: at(i as i64),
                    op,
                    undo: false,
                    undone: false,
                })
                .collect(),
            reassert: false,
        }
    }

    fn set(flag: Flag, value: bool) -> Op {
        Op::SetFlag { flag, value }
    }

    fn mv(to: i64) -> Op {
        Op::Move {
            to: vec![MailboxId(to)],
        }
    }

    #[test]
    fn seen_then_unseen_is_nothing() {
        let p = payload(
            before(&[1]),
            vec![set(Flag::Seen, true), set(Flag::Seen, false)],
        );
        assert!(p.delta().is_empty());
    }

    #[test]
    fn later_value_of_a_flag_replaces_earlier() {
        let mut b = before(&[1]);
        b.flags.flagged = true;
        let p = payload(
            b,
            vec![
                set(Flag::Flagged, false),
                set(Flag::Flagged, true),
                set(Flag::Flagged, false),
            ],
        );
        assert_eq!(
            p.delta().flags,
            vec![FlagChange {
                flag: Flag::Flagged,
                value: false
            }]
        );
    }

    #[test]
    fn keyword_add_remove_cancels_and_distinct_flags_are_kept() {
        let kw = Flag::Keyword("$Forwarded".into());
        let p = payload(
            before(&[1]),
            vec![set(kw.clone(), true), set(Flag::Seen, true), set(kw, false)],
        );
        assert_eq!(
            p.delta(),
            Delta {
                flags: vec![FlagChange {
                    flag: Flag::Seen,
                    value: true
                }],
                target: Target::Stay,
                content: None,
            }
        );
    }

    #[test]
    fn move_a_b_then_b_c_is_a_c() {
        let p = payload(before(&[1]), vec![mv(2), mv(3)]);
        assert_eq!(p.delta().target, Target::Mailboxes(vec![MailboxId(3)]));
        // The source stays the server's: mailbox 1 with its UID.
        assert_eq!(p.before.mailboxes[0].uid, Some(101));
    }

    #[test]
    fn move_back_to_start_is_nothing_and_keeps_uid() {
        let p = payload(before(&[1]), vec![mv(2), mv(1)]);
        assert!(p.delta().is_empty());
        assert_eq!(p.fold().state, p.before, "identity of the copy kept");
    }

    #[test]
    fn a_reasserting_row_sends_the_last_value_of_fields_that_cancelled_out() {
        let mut away_and_back = payload(
            before(&[1]),
            vec![set(Flag::Seen, true), mv(2), set(Flag::Seen, false), mv(1)],
        );
        away_and_back.reassert = true;
        let d = away_and_back.delta();
        assert_eq!(
            d.flags,
            vec![FlagChange {
                flag: Flag::Seen,
                value: false
            }]
        );
        // A move to where the email was: the executor checks it is still there.
        assert_eq!(d.target, Target::Mailboxes(vec![MailboxId(1)]));
        assert_eq!(away_and_back.fold().state, away_and_back.before, "UID kept");
        // Untouched fields are not sent; a field that did change is sent once.
        let mut mixed = payload(
            before(&[1]),
            vec![set(Flag::Flagged, true), set(Flag::Seen, true)],
        );
        mixed.reassert = true;
        assert_eq!(mixed.delta().flags.len(), 2);
        assert_eq!(mixed.delta().target, Target::Stay);
        // Rebased on the server's state (reassert cleared): what agrees is nothing to send.
        away_and_back.reassert = false;
        assert!(away_and_back.delta().is_empty());
    }

    #[test]
    fn delete_supersedes_flags_and_moves() {
        let p = payload(
            before(&[1]),
            vec![set(Flag::Seen, true), mv(2), Op::Destroy],
        );
        let d = p.delta();
        assert_eq!(d.target, Target::Destroy);
        assert_eq!(Payload::Email(p.clone()).kind(), "delete");
        // Flags changed locally are remembered so an eviction can restore them.
        assert_eq!(Fields::of(&d).flags.len(), 1);
        assert!(Fields::of(&d).mailboxes);
    }

    #[test]
    fn trash_is_a_move_that_replaces_moves_and_keeps_flags() {
        let p = payload(
            before(&[1]),
            vec![set(Flag::Seen, true), mv(2), Op::Trash { to: MailboxId(9) }],
        );
        let d = p.delta();
        assert_eq!(d.target, Target::Mailboxes(vec![MailboxId(9)]));
        assert_eq!(d.flags.len(), 1);
        assert_eq!(
            describe(&Payload::Email(p)),
            "mark read; delete (move to trash 9)"
        );
    }

    #[test]
    fn a_discard_leaves_drafts_and_destroys_only_a_draft_in_no_other_mailbox() {
        let discard = || Op::Discard { from: MailboxId(5) };
        // Only in Drafts: destroyed, as a permanent delete.
        let alone = payload(before(&[5]), vec![discard()]);
        assert_eq!(alone.delta().target, Target::Destroy);
        assert_eq!(Payload::Email(alone).kind(), "delete");
        // Another client filed a copy in mailbox 3 (one JMAP Email): it stays there.
        let copied = payload(before(&[3, 5]), vec![set(Flag::Seen, true), discard()]);
        assert_eq!(copied.delta().target, Target::Mailboxes(vec![MailboxId(3)]));
        assert_eq!(copied.fold().state.mailboxes[0].uid, Some(103), "copy kept");
        assert!(copied.discards());
        assert_eq!(Payload::Email(copied.clone()).kind(), "delete");
        assert_eq!(
            describe(&Payload::Email(copied)),
            "mark read; discard draft (its copies in mailbox 3 kept)"
        );
        // The content of a save the discard follows is not uploaded.
        let saved = payload(
            before(&[5]),
            vec![
                Op::Replace {
                    message: Box::default(),
                },
                discard(),
            ],
        );
        assert_eq!(saved.delta().content, None);
        // Its JSON; rows written before it existed carry `destroy` and keep that meaning.
        let v = serde_json::to_value(Payload::Email(payload(before(&[5]), vec![discard()])))
            .unwrap_or_default();
        assert_eq!(v["ops"][0]["op"], "discard");
        assert_eq!(v["ops"][0]["from"], 5);
    }

    #[test]
    fn moving_after_a_destroy_undeletes() {
        let p = payload(before(&[1]), vec![Op::Destroy, mv(2)]);
        assert_eq!(p.delta().target, Target::Mailboxes(vec![MailboxId(2)]));
    }

    #[test]
    fn multi_mailbox_move_to_one_of_them() {
        let p = payload(before(&[1, 4]), vec![mv(4)]);
        assert_eq!(p.delta().target, Target::Mailboxes(vec![MailboxId(4)]));
        assert_eq!(p.fold().state.mailboxes[0].uid, Some(104));
    }

    #[test]
    fn overlay_takes_only_touched_fields() {
        let mut current = before(&[1]);
        current.flags.flagged = true; // changed by a sync, untouched by the row
        current.flags.seen = true;
        let mut computed = before(&[2]);
        computed.flags.seen = false;
        let fields = Fields {
            flags: [Flag::Seen].into_iter().collect(),
            mailboxes: false,
        };
        let out = overlay(&current, &computed, &fields);
        assert!(!out.flags.seen && out.flags.flagged);
        assert_eq!(out.mailbox_ids(), vec![MailboxId(1)]);
    }

    #[test]
    fn email_payload_json_shape_is_stable() {
        let mut p = payload(
            before(&[3]),
            vec![
                set(Flag::Seen, true),
                set(Flag::Keyword("$Forwarded".into()), false),
                mv(5),
                Op::Trash { to: MailboxId(9) },
                Op::Destroy,
            ],
        );
        p.message_id = Some("m@x".into());
        let v: serde_json::Value =
            serde_json::from_str(&Payload::Email(p.clone()).to_json()).unwrap_or_default();
        let t = |s: i64| at(s).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let want = serde_json::json!({
            "type": "email",
            "v": 1,
            "remote_id": "r",
            "message_id": "m@x",
            "before": {
                "flags": {"seen": false, "flagged": false, "answered": false, "draft": false, "keywords": []},
                "mailboxes": [{"mailbox_id": 3, "uidvalidity": 7, "uid": 103, "modseq": null}]
            },
            "ops": [
                {"at": t(0), "op": "set_flag", "flag": "seen", "value": true},
                {"at": t(1), "op": "set_flag", "flag": {"keyword": "$Forwarded"}, "value": false},
                {"at": t(2), "op": "move", "to": [5]},
                {"at": t(3), "op": "trash", "to": 9},
                {"at": t(4), "op": "destroy"}
            ]
        });
        assert_eq!(v, want);
        let back = Payload::parse(1, &want.to_string()).ok();
        assert_eq!(back, Some(Payload::Email(p)));
    }

    #[test]
    fn send_payload_json_shape_is_stable() {
        let p = Payload::Send(Box::new(SendPayload {
            v: PAYLOAD_VERSION,
            at: at(0),
            handed_at: None,
            submitted_at: None,
            submission_id: None,
            draft: None,
            message: OutgoingMessage {
                message_id: "id@example.org".into(),
                from: mailsync_store::Address {
                    name: Some("Me".into()),
                    email: "me@example.org".into(),
                },
                to: vec![mailsync_store::Address {
                    name: None,
                    email: "you@example.net".into(),
                }],
                subject: "Hi".into(),
                text: "Hello".into(),
                attachments: vec![crate::OutgoingAttachment::from_bytes(
                    "a.txt",
                    "text/plain",
                    b"hey",
                )],
                references: vec!["p@x".into()],
                in_reply_to: Some("p@x".into()),
                ..Default::default()
            },
        }));
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap_or_default();
        let want = serde_json::json!({
            "type": "send",
            "v": 1,
            "at": at(0).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "message": {
                "message_id": "id@example.org",
                "from": {"name": "Me", "email": "me@example.org"},
                "to": [{"email": "you@example.net"}],
                "cc": [],
                "bcc": [],
                "subject": "Hi",
                "text": "Hello",
                "attachments": [{"file_name": "a.txt", "mime_type": "text/plain", "content_base64": "aGV5"}],
                "in_reply_to": "p@x",
                "references": ["p@x"]
            }
        });
        assert_eq!(v, want);
        assert_eq!(Payload::parse(1, &want.to_string()).ok(), Some(p));
    }
}
