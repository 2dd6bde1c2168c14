//! The boundary with the protocols: the [`Executor`] trait the engine implements for IMAP and
//! JMAP, what it is handed ([`QueuedChange`]) and what it answers ([`ItemOutcome`], [`BatchError`]).
//!
//! # Contract
//! - [`Executor::execute`] gets a batch of items of one account, oldest first, with at most one
//!   item per email (an email's next change waits for the outcome of the previous one), and
//!   returns exactly one [`ItemOutcome`] per item, in the same order, or one [`BatchError`].
//! - Items of an email carry a flag delta and a [`Target`]: apply the flags first, then the move
//!   or the destroy. `before` is where the email is on the server *now* (the source of a move,
//!   with IMAP UIDVALIDITY/UID) and its flags there.
//! - A flag change may set a flag `before` already has, and a [`Target::Mailboxes`] may name
//!   where `before` already is: the user's actions cancelled out locally, and another client
//!   may have changed the field meanwhile. Apply them like any other (setting a flag is
//!   idempotent); for the mailboxes, make sure the email is still there: answer
//!   [`ItemOutcome::NotFound`] if it is not (IMAP), or put it back (JMAP `mailboxIds`).
//! - [`Attempt`] says what the outbox knows of earlier hand-overs of the same item:
//!   - [`Attempt::Fresh`]: never handed over, or reported as not applied.
//!   - [`Attempt::Uncertain`]: a previous hand-over ended without an answer (crash, cancelled
//!     flush, [`ItemOutcome::Unknown`]). The operation may already have taken effect: check
//!     before repeating it. For a send it means the message was handed to the server and its
//!     acceptance was not recorded: **only look** for its Message-ID on the server (Sent
//!     mailbox, EmailSubmission) and never submit it: found and filed, answer `Done`; found
//!     accepted but not filed, file it and answer `Done` (or `Submitted`); not found, answer
//!     [`ItemOutcome::Unconfirmed`] (the outbox lists it as "may have been sent" and only the
//!     user sends it again).
//!   - [`Attempt::Submitted`]: a send the server accepted. Never submit it again; only do the
//!     remaining step (file the copy in Sent, unless a copy is already there) and answer `Done`.
//! - A send is a persisted state machine: queued → in flight → *handed* → *accepted* → filed
//!   (row deleted). The executor records the two middle steps itself, each committed before it
//!   returns: [`Outbox::send_handing`](crate::Outbox::send_handing) right before the message
//!   can reach the server (after connecting and authenticating, before SMTP `MAIL`/`DATA` or
//!   the `EmailSubmission/set` request), and [`Outbox::send_accepted`](crate::Outbox::send_accepted)
//!   right after the server accepted it (SMTP 250 after DATA, the submission created), before
//!   filing starts. If recording "handing" fails the executor must not send.
//! - The outbox persists the row as in flight (or submitted) *before* calling the executor and
//!   deletes it only after a `Done`, so a crash at any point leads to a checked retry, never to a
//!   blind second submission. A send in flight that was never handed is sent as
//!   [`Attempt::Fresh`]. All of this assumes one flusher per account (the engine holds the
//!   account's lease while it flushes).
//! - The executor classifies protocol errors (the engine does it in one place); the outbox only
//!   sees these protocol-free outcomes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mailsync_store::{AccountId, ChangeId, EmailId, MailboxId};

use crate::change::OutgoingMessage;
use crate::model::{FlagChange, Location, Snapshot, Target};

/// Executes queued changes against a server. Implemented by the engine for IMAP and JMAP.
///
/// With the `mocks` feature (and in this crate's tests) mockall generates `MockExecutor`.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// Executes a batch (see the [module docs](self) for the contract).
    async fn execute(
        &self,
        account: AccountId,
        batch: &[QueuedChange],
    ) -> Result<Vec<ItemOutcome>, BatchError>;
}

/// One queued item, as handed to the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedChange {
    /// Queue id.
    pub id: ChangeId,
    /// The account.
    pub account: AccountId,
    /// What is known of earlier hand-overs.
    pub attempt: Attempt,
    /// Transient failures so far.
    pub retry_count: u32,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// What to do.
    pub operation: Operation,
}

/// What the outbox knows of earlier hand-overs of an item (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempt {
    /// Never handed over, or reported as not applied.
    Fresh,
    /// May already have taken effect: check before repeating (for a send: check the Message-ID).
    Uncertain,
    /// A send accepted by the server: do only the remaining step, never submit again.
    Submitted,
}

/// What an item asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Flags, a move or a delete of one email.
    Email(EmailChange),
    /// Send a message.
    Send(OutgoingMessage),
    /// Create, rename, delete or (un)subscribe a mailbox. Answer [`ItemOutcome::Relocated`]
    /// with the mailbox's server identity after a create or rename (the `remote_id`; no
    /// locations), `Done` after a delete or subscription, `Permanent` for a refusal. Read the
    /// outcome back (LIST, `Mailbox/get`); for [`Attempt::Uncertain`] look before repeating.
    Mailbox(crate::mailbox::MailboxOperation),
}

/// Changes to one email: set/clear `flags`, then go to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChange {
    /// Local id.
    pub email_id: EmailId,
    /// The email's server identity (JMAP Email id; IMAP `mailbox/uidvalidity/uid`).
    pub remote_id: String,
    /// Its Message-ID (without brackets), to find it again on the server when needed.
    pub message_id: Option<String>,
    /// The server's state before this change: its flags, and where it is (with IMAP
    /// UIDVALIDITY/UID of each copy). The source of a move.
    pub before: Snapshot,
    /// Flags to set or clear (empty for a destroy).
    pub flags: Vec<FlagChange>,
    /// Where it ends up.
    pub target: Target,
    /// A draft's new content (`Some` for a draft save): after the flags and the move, put this
    /// message where the email ends up (with the flags it ends with) and then remove the copies
    /// in `before`, so the server never shows both versions nor neither. Answer
    /// [`ItemOutcome::Relocated`] with the new copy's identity.
    pub content: Option<OutgoingMessage>,
}

impl EmailChange {
    /// Where the email is on the server now (the source of a move).
    pub fn source(&self) -> &[Location] {
        &self.before.mailboxes
    }

    /// The flags the email ends with (`before` with the flag changes applied).
    pub fn final_flags(&self) -> mailsync_store::Flags {
        let mut f = self.before.flags.clone();
        for c in &self.flags {
            c.flag.apply(&mut f, c.value);
        }
        f
    }

    /// The mailbox a draft's new content goes to: where the change moves it, else where it is.
    pub fn destination(&self) -> Option<MailboxId> {
        match &self.target {
            Target::Mailboxes(m) => m.first().copied(),
            _ => self.before.mailboxes.first().map(|l| l.mailbox_id),
        }
    }
}

/// The outcome of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Applied (or found already applied). The row is deleted.
    Done,
    /// Applied, and the email now has a new server identity, e.g. an IMAP move answered with
    /// COPYUID: the new `remote_id` (when it changed) and its new locations. The local row is
    /// updated, so the next sync does not see a stranger and a duplicate.
    Relocated {
        /// The new server identity, if it changed.
        remote_id: Option<String>,
        /// Where the email is now, with IMAP identity.
        locations: Vec<Location>,
        /// The size in octets of the message as the server stores it, when this change
        /// stored it (a draft's upload: the bytes sent, or JMAP's `size`). A draft's row held
        /// an estimate until then, and a later change that loses the message finds it again
        /// elsewhere by Message-ID and size (`resolve::find_again`).
        size: Option<i64>,
    },
    /// A send accepted by the server whose remaining step (filing the copy in Sent) is not done
    /// yet. Persisted: the item will only be asked to finish ([`Attempt::Submitted`]).
    Submitted,
    /// Not applied; worth retrying (network, timeout before sending, HTTP 5xx/429, IMAP
    /// `[UNAVAILABLE]`/`[INUSE]`, JMAP `serverUnavailable`/`rateLimit`). Spends an attempt.
    Transient {
        /// One line, for the user and the log.
        reason: String,
        /// The server's suggested delay, which replaces the computed backoff.
        retry_after: Option<Duration>,
    },
    /// It may or may not have taken effect (e.g. a timeout after the request was written).
    /// Spends an attempt like `Transient`; the next hand-over is [`Attempt::Uncertain`].
    Unknown {
        /// One line.
        reason: String,
    },
    /// A send handed to the server in an earlier attempt ([`Attempt::Uncertain`]) that was
    /// looked for and not found: it may or may not have been delivered. Evicted at once to the
    /// failed list with a reason starting "may have been sent"; only the user sends it again.
    Unconfirmed {
        /// What was looked at, one line.
        reason: String,
    },
    /// Not applied: the message is not where the change addressed it. It was moved or expunged
    /// by another client, or its mailbox was deleted and re-created (IMAP UIDVALIDITY changed),
    /// so the change must not be repeated as it is. The row waits (state `lost`) until
    /// [`crate::Outbox::reresolve`], after a complete sync, finds the message again (the change
    /// then applies to it where it is now) or declares it gone (the change is dropped and
    /// listed in the failed list; a delete of a message that is gone counts as done).
    NotFound {
        /// One line.
        reason: String,
    },
    /// Will never succeed as it is (JMAP `forbidden`, `invalidProperties`,
    /// `invalidPatch`, `tooLarge`; IMAP `NO [NONEXISTENT]`/`[NOPERM]`/`[CANNOT]`, `BAD`).
    /// Evicted at once, the local change reverted.
    Permanent {
        /// One line.
        reason: String,
    },
}

/// The whole batch failed; no item has its own outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// No connection: nothing in the batch was attempted. The queue pauses; no attempt is spent.
    #[error("offline: {0}")]
    Offline(String),
    /// The user must act (bad credentials): nothing was attempted. The queue pauses; no attempt
    /// is spent.
    #[error("needs the user: {0}")]
    NeedsUser(String),
    /// JMAP `stateMismatch`: the request was rejected as a whole. Nothing is spent; the caller
    /// resyncs and flushes again.
    #[error("server state changed; resync needed")]
    StateMismatch,
    /// The request as a whole failed before any item took effect (e.g. HTTP 503): every item
    /// counts a transient failure.
    #[error("transient: {reason}")]
    Transient {
        /// One line.
        reason: String,
        /// The server's suggested delay.
        retry_after: Option<Duration>,
    },
}
