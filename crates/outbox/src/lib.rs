//! The protocol-agnostic queue of local mail changes: optimistic update, coalescing, undo,
//! retries with backoff, eviction with revert, and crash-safe sending.
//!
//! # Overview
//! A mail app marks a message read, flags, moves or deletes it, or sends a message, possibly
//! offline. [`Outbox::enqueue`] applies the change to the local database at once and queues it
//! in `pending_changes`, in one transaction (mailbox counters included). The engine later calls
//! [`Outbox::flush`] with an [`Executor`] it implements for IMAP and JMAP; each item's
//! [`ItemOutcome`] decides what happens to its row. This crate knows no protocol: the engine
//! classifies protocol errors and hands over protocol-free outcomes.
//!
//! # Coalescing
//! Changes to one email keep their order. While an email's newest queued row has not been
//! handed to the server (state `pending`), a new change of that email is merged into it; the
//! row then asks the server for the difference between the state the server had when the row
//! was created (`before`) and the result of all merged actions:
//! - seen then unseen (any flag set then cleared) is nothing, and the row disappears;
//! - a later value of the same flag replaces an earlier one;
//! - move A→B then B→C is one move A→C; a move back to A is nothing;
//! - a permanent delete supersedes earlier flag changes and moves of the email;
//! - a delete to the trash is a move: it replaces earlier moves, flag changes are kept;
//! - a change that leaves the email as it is (marking a read email read) queues nothing.
//!
//! A row that is in flight or submitted is never merged into: the next change starts a new row,
//! which waits until the earlier one has an outcome. A change merged into a row waiting for a
//! retry waits with it. Changes of different emails are batched together (up to
//! [`RetryPolicy::batch_size`] per executor call, at most one per email), oldest first.
//!
//! Every read-modify-write of an email's state and queued rows (enqueue, cancel, undo, taking a
//! batch, recording outcomes, [`reapply_after_sync`]) runs in one transaction holding that
//! email's row lock, so concurrent callers (several tasks, or a CLI next to a daemon) never lose
//! a change. Flushes of one account are serialised inside one [`Outbox`]; across processes a
//! single flusher per account is required (the engine holds the account's lease in the store
//! while it flushes): a second flusher would treat the first one's in-flight items as
//! interrupted ones.
//!
//! # Outcomes
//! - [`ItemOutcome::Done`] / [`ItemOutcome::Relocated`]: the row is deleted (for a permanent
//!   delete, the local email row too).
//! - [`ItemOutcome::Transient`] / [`ItemOutcome::Unknown`] / [`BatchError::Transient`]: one more
//!   failure; next attempt after exponential backoff with full jitter (or the server's
//!   `retry_after`); after [`RetryPolicy::max_transient_failures`] (5) failures: evicted.
//! - [`ItemOutcome::Permanent`]: evicted at once.
//! - Evicted: moved to `failed_mutations` with its reason and time, and its optimistic local
//!   change reverted to the state the server had (the server wins; the engine's next sync
//!   reconciles any residual difference). See [`Outbox::failed`], [`Outbox::retry_failed`],
//!   [`Outbox::dismiss_failed`].
//! - [`BatchError::Offline`] / [`BatchError::NeedsUser`]: the queue pauses
//!   ([`FlushReport::paused`]); no attempt is spent.
//! - [`BatchError::StateMismatch`]: nothing fails; [`FlushReport::resync_needed`] asks the caller
//!   to resync and flush again.
//!
//! # Crash safety
//! A row is marked in flight (committed) before the executor sees it and deleted only after an
//! acknowledgement. A change of an email found in flight by the next flush is handed over as
//! [`Attempt::Uncertain`] (check before repeating). A send is a journaled state machine:
//! queued → in flight → handed ([`Outbox::send_handing`], committed by the executor right
//! before the message can reach the server) → accepted ([`Outbox::send_accepted`], committed
//! right after the server accepted it, before filing) → filed (row deleted). After a crash:
//! in flight but never handed is sent as [`Attempt::Fresh`]; handed but not accepted is
//! [`Attempt::Uncertain`]: only looked for, and when not found ([`ItemOutcome::Unconfirmed`])
//! evicted with a reason starting "may have been sent"; accepted is [`Attempt::Submitted`]:
//! only filed, even after an eviction and a retry. Only [`Outbox::retry_failed`] (a person)
//! submits a message again. See [`executor`] for the full contract.
//!
//! # Undo
//! [`Outbox::cancel`] withdraws a change not yet handed to the server and restores the local
//! state exactly; for one already handed over it queues the compensating change (move back,
//! flag back). [`Outbox::undo_last`] does the same for the account's latest action. Completed
//! changes stay undoable while this `Outbox` remembers them (the last 256, in memory: undo is an
//! interactive feature). A permanent delete or a send that reached the server cannot be undone.
//!
//! # Payloads
//! `pending_changes.payload` is JSON owned by this crate (`kind` is `flags`, `move`, `delete`,
//! `draft`, `send` or `mailbox`; mailbox changes: see [`Outbox::manage_mailbox`]):
//! ```json
//! {"type": "email", "v": 1, "remote_id": "M1a2", "message_id": "abc@example.org",
//!  "before": {"flags": {"seen": false, "flagged": false, "answered": false, "draft": false,
//!                       "keywords": []},
//!             "mailboxes": [{"mailbox_id": 3, "uidvalidity": 7, "uid": 42, "modseq": 9}]},
//!  "ops": [{"at": "2026-09-01T10:00:00Z", "op": "set_flag", "flag": "seen", "value": true},
//!          {"at": "2026-09-01T10:00:05Z", "op": "move", "to": [5]}]}
//! {"type": "send", "v": 1, "at": "2026-09-01T10:00:00Z", "handed_at": "2026-09-01T10:00:01Z",
//!  "submitted_at": "2026-09-01T10:00:02Z", "submission_id": "S12",
//!  "message": {"message_id": "…", "from": {"email": "me@example.org"}, "to": [], "cc": [],
//!              "bcc": [], "subject": "…", "text": "…", "attachments": [], "references": []}}
//! ```
//! Ops are `set_flag` (`flag`: `seen`, `flagged`, `answered`, `draft` or `{"keyword": "…"}`),
//! `move` (`to`: the complete new set of mailbox ids), `trash` (`to`: the trash mailbox: a delete
//! that became a move), `destroy`, `replace` (`message`: a draft's new content; see
//! [`Outbox::save_draft`]); each may carry `"undo": true` (a compensation) or
//! `"undone": true`.
//!
//! # Example
//! ```no_run
//! # async fn demo(store: mailsync_store::Store, executor: &dyn mailsync_outbox::Executor)
//! # -> Result<(), mailsync_outbox::Error> {
//! use mailsync_outbox::{Change, Outbox};
//! use mailsync_store::{AccountId, EmailId};
//! let outbox = Outbox::new(store);
//! outbox.enqueue(AccountId(1), Change::seen(EmailId(42), true)).await?;
//! let report = outbox.flush(AccountId(1), executor).await?;
//! if let Some(next) = report.next_due { /* schedule the next flush */ }
//! # Ok(()) }
//! ```
//!
//! # Errors
//! [`Error`]; [`Error::is_transient`] marks a busy database (already retried internally).
//!
//! # Feature flags
//! - `mocks`: `MockExecutor` (mockall) for the engine's tests.

mod apply;
mod change;
mod draft;
mod error;
pub mod executor;
mod local;
mod mailbox;
mod model;
mod outbox;
mod outcome;
mod policy;
mod resolve;
mod rows;

// Lets the shared test fixture name this crate as the integration tests do.
#[cfg(test)]
extern crate self as mailsync_outbox;
#[cfg(test)]
mod tests;

pub use apply::reapply_after_sync;
pub use change::{Change, Flag, OutgoingAttachment, OutgoingMessage};
pub use error::{Error, UndoRefusal};
#[cfg(any(test, feature = "mocks"))]
pub use executor::MockExecutor;
pub use executor::{
    Attempt, BatchError, EmailChange, Executor, ItemOutcome, Operation, QueuedChange,
};
pub use mailbox::{MAX_SEEN_IDS, MailboxChange, MailboxOperation, SeenContent, queued_deletes};
pub use mailsync_store::queue::ChangeState;
pub use mailsync_store::{AccountId, Address, ChangeId, EmailId, FailedId, Flags, MailboxId};
pub use model::{FlagChange, Location, Snapshot, Target};
pub use outbox::{Counts, Enqueued, FailedItem, FlushReport, Outbox, Pause, PendingItem, Undone};
pub use policy::{
    Clock, FixedJitter, FullJitter, Jitter, ManualClock, RetryPolicy, SystemClock, TokioClock,
};
pub use resolve::{GONE_REASON, ResolveReport};
