//! [`Outbox`]: enqueue with the optimistic local update and coalescing, cancel and undo, flush
//! through an [`Executor`] with retries and eviction, and the failed changes the user sees.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mailsync_store::queue::{self, ChangeState};
use mailsync_store::{AccountId, ChangeId, ConnectionTrait, EmailId, FailedId, Store, StoreError};
use tracing::{Instrument as _, debug, info, warn};

use crate::apply::{
    compensation, enqueue_email, enqueue_ops, enqueue_send, withdraw_or_compensate,
};
use crate::change::{Change, OutgoingMessage};
use crate::error::{Error, UndoRefusal};
use crate::executor::{Attempt, BatchError, Executor, ItemOutcome, QueuedChange};
use crate::local::{self, Touched};
use crate::model::{self, Payload};
use crate::outcome::{evict, evict_with_count, on_done, queued_change};
use crate::policy::{Clock, FullJitter, Jitter, RetryPolicy, SystemClock};
use crate::rows::{self, Patch, Row};

/// How many completed changes are remembered for undo after a flush.
const RECENT_CAPACITY: usize = 256;

/// The queue of local changes of every account in one store.
///
/// Cheap to share behind an `Arc`; every method takes `&self`. One flush per account runs at a
/// time (a second call waits). Nothing here spawns a task: the engine calls [`Outbox::flush`]
/// when it wants and schedules the next call from [`FlushReport::next_due`].
#[derive(Debug)]
pub struct Outbox {
    store: Store,
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    recent: Mutex<VecDeque<Completed>>,
    flush_locks: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<()>>>>,
    /// Accounts whose queued changes this outbox has shown again since it was made (see
    /// [`Outbox::recover`]).
    recovered: Mutex<std::collections::HashSet<AccountId>>,
}

/// A change the server acknowledged, kept in memory so it can still be undone (compensated).
#[derive(Debug, Clone)]
pub(crate) struct Completed {
    pub(crate) id: ChangeId,
    pub(crate) account: AccountId,
    pub(crate) email: Option<EmailId>,
    pub(crate) payload: Payload,
}

impl Completed {
    /// When its latest undoable action happened (`None`: nothing left to undo).
    fn last_undoable_at(&self) -> Option<DateTime<Utc>> {
        match &self.payload {
            Payload::Send(s) => Some(s.at),
            // Mailbox changes are not undone automatically.
            Payload::Mailbox(_) => None,
            // A draft the server has (saved, replaced): there is no earlier state to move it
            // back to; the user saves again or discards it.
            Payload::Email(p)
                if p.ops
                    .iter()
                    .any(|o| matches!(o.op, model::Op::Replace { .. })) =>
            {
                None
            }
            Payload::Email(p) => p
                .ops
                .iter()
                .rev()
                .find(|o| !o.undo && !o.undone)
                .map(|o| o.at),
        }
    }
}

/// Queues the compensation of an acknowledged change.
async fn compensate_completed<C: ConnectionTrait>(
    c: &C,
    done: &Completed,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Undone, Error> {
    let refuse = |why| Error::CannotUndo { id: done.id, why };
    let (Payload::Email(p), Some(email)) = (&done.payload, done.email) else {
        return Err(refuse(UndoRefusal::AlreadySent));
    };
    let ops = compensation(p, None).map_err(refuse)?;
    let compensation = enqueue_ops(c, done.account, email, ops, true, now, touched).await?;
    Ok(Undone::Compensated {
        change: done.id,
        compensation,
    })
}

/// What [`Outbox::enqueue`] did with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued as a new change.
    Queued(ChangeId),
    /// Merged into this not-yet-sent change of the same email.
    Merged(ChangeId),
    /// Cancelled out this not-yet-sent change: nothing is left to send for the email.
    Collapsed(ChangeId),
    /// Nothing to do: the email is already in that state.
    Unchanged,
}

impl Enqueued {
    /// The queued change that now carries the request, if any.
    pub fn change_id(self) -> Option<ChangeId> {
        match self {
            Self::Queued(id) | Self::Merged(id) => Some(id),
            Self::Collapsed(_) | Self::Unchanged => None,
        }
    }
}

/// What [`Outbox::cancel`] / [`Outbox::undo_last`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undone {
    /// Withdrawn before it reached the server; the local state is restored.
    Withdrawn(ChangeId),
    /// It had reached (or is reaching) the server: a compensating change was queued.
    Compensated {
        /// The change undone.
        change: ChangeId,
        /// What happened to the compensating change.
        compensation: Enqueued,
    },
}

/// Why a flush stopped early and the queue waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    /// No connection. Flush again when the network is back.
    Offline(String),
    /// The user must act (credentials). Flush again after they did.
    NeedsUser(String),
}

/// What a flush did.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Items acknowledged by the server (rows deleted).
    pub done: u32,
    /// Sends accepted by the server whose copy to Sent is still to do.
    pub submitted: u32,
    /// Items that failed transiently and wait for their backoff.
    pub transient: u32,
    /// Items evicted to the failed list (their local change reverted).
    pub evicted: u32,
    /// Rows dropped without asking the server (nothing left to send, or about an email the
    /// server has just deleted).
    pub moot: u32,
    /// Items whose message was not where they addressed it (moved or expunged by another
    /// client, mailbox re-created): held until [`Outbox::reresolve`] after the next sync.
    pub lost: u32,
    /// Executor calls made.
    pub batches: u32,
    /// Set when the queue paused (offline, credentials): no attempt was spent.
    pub paused: Option<Pause>,
    /// Set on a JMAP state mismatch: resync, then flush again. No attempt was spent.
    pub resync_needed: bool,
    /// When the earliest remaining item is due (`None`: the queue is empty). While paused this
    /// may be in the past: wait for the network or the user instead.
    pub next_due: Option<DateTime<Utc>>,
}

impl FlushReport {
    /// How long from `now` until [`FlushReport::next_due`] (zero when due already).
    pub fn next_due_in(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.next_due
            .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
    }
}

/// Number of changes of an account per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting to be sent (including ones waiting for a retry).
    pub pending: u64,
    /// Handed to the server, outcome not recorded yet (or uncertain after a crash).
    pub in_flight: u64,
    /// Sends the server accepted, copy to Sent still to do.
    pub submitted: u64,
    /// Changes whose message was not where they addressed it, waiting for a sync to find it.
    pub lost: u64,
    /// Evicted, waiting for the user to retry or dismiss.
    pub failed: u64,
}

impl Counts {
    /// Everything still queued.
    pub fn queued(&self) -> u64 {
        self.pending + self.in_flight + self.submitted + self.lost
    }
}

/// A queued change, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingItem {
    /// Queue id.
    pub id: ChangeId,
    /// The email (none for a send).
    pub email_id: Option<EmailId>,
    /// `flags`, `move`, `delete` or `send`.
    pub kind: String,
    /// Life-cycle state.
    pub state: ChangeState,
    /// Transient failures so far.
    pub retry_count: u32,
    /// Earliest next attempt.
    pub next_attempt_at: DateTime<Utc>,
    /// The last failure, one line.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// What it does, for people ("mark read; move to mailbox 4").
    pub description: String,
}

/// An evicted change, for the user to retry or dismiss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedItem {
    /// Id in the failed list.
    pub id: FailedId,
    /// The email (none for a send).
    pub email_id: Option<EmailId>,
    /// `flags`, `move`, `delete` or `send`.
    pub kind: String,
    /// Why it was evicted.
    pub reason: String,
    /// Transient failures before eviction.
    pub retry_count: u32,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was evicted.
    pub failed_at: DateTime<Utc>,
    /// What it did, for people.
    pub description: String,
}

/// Outcome tallies of one batch, added to the report once its transaction committed.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) done: u32,
    pub(crate) submitted: u32,
    pub(crate) transient: u32,
    pub(crate) evicted: u32,
    pub(crate) moot: u32,
    pub(crate) lost: u32,
    pub(crate) completed: Vec<Completed>,
}

/// Retries a database operation that failed because SQLite was busy (each attempt is a whole
/// transaction, so a retry starts from scratch).
async fn retry_busy<T, F, Fut>(mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Err(e) if e.is_transient() && attempt < 8 => {
                attempt += 1;
                debug!(attempt, error = %e, "Database busy; retrying the transaction.");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
            }
            other => return other,
        }
    }
}

pub(crate) fn not_found_is_none<T>(r: Result<T, StoreError>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Outbox {
    /// An outbox over `store` with the default policy, the system clock and full jitter.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            policy: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            jitter: Arc::new(FullJitter),
            recent: Mutex::new(VecDeque::new()),
            flush_locks: Mutex::new(HashMap::new()),
            recovered: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Replaces the retry policy.
    #[must_use]
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the clock (e.g. [`TokioClock`](crate::TokioClock) for paused-time tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the jitter source (e.g. [`FixedJitter`](crate::FixedJitter) in tests).
    #[must_use]
    pub fn with_jitter(mut self, jitter: Arc<dyn Jitter>) -> Self {
        self.jitter = jitter;
        self
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The outbox's notion of now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Once per account and outbox (that is, per process): shows the queued changes again over
    /// whatever was committed without them ([`Outbox::reapply_queued`]). A process killed after
    /// a sync batch or an IMAP move's new identity was committed, but before the queued changes
    /// were re-applied, left rows showing the server's state with stale bases under the queued
    /// changes; acting on them (a user's delete, a retried move) went wrong (model test seed
    /// 4111 on Dovecot and Cyrus IMAP: a message moved back to INBOX, then deleted for good by
    /// the user, was taken as gone and lost locally; seed 4108 on Cyrus JMAP: a queued rename
    /// hidden). Every entry point that reads or changes an account's queue calls it first.
    pub async fn recover(&self, account: AccountId) {
        let done = |s: &Self| {
            s.recovered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&account)
        };
        if done(self) {
            return;
        }
        // A failure here must not hold the user's actions or the flush back: the sync's own
        // re-application after the next cycle tries again.
        if let Err(e) = self.reapply_queued(account).await {
            warn!(account = %account, error = %e, "Could not show the queued changes again at start.");
        }
        self.recovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account);
    }

    // ----- enqueue -------------------------------------------------------------------------

    /// Applies `change` to the local database and queues it, in one transaction, coalescing it
    /// with the email's not-yet-sent change (see the crate docs for the rules).
    pub async fn enqueue(&self, account: AccountId, change: Change) -> Result<Enqueued, Error> {
        let mut out = self.enqueue_all(account, vec![change]).await?;
        Ok(out.pop().unwrap_or(Enqueued::Unchanged))
    }

    /// Like [`Outbox::enqueue`] for several changes, in order, all in one transaction (all or
    /// nothing). Returns one result per change.
    pub async fn enqueue_all(
        &self,
        account: AccountId,
        changes: Vec<Change>,
    ) -> Result<Vec<Enqueued>, Error> {
        self.recover(account).await;
        let changes = &changes;
        retry_busy(|| self.enqueue_txn(account, changes)).await
    }

    async fn enqueue_txn(
        &self,
        account: AccountId,
        changes: &[Change],
    ) -> Result<Vec<Enqueued>, Error> {
        let txn = self.store.begin().await?;
        local::lock(&txn, changes.iter().filter_map(Change::email)).await?;
        let now = self.clock.now();
        let mut touched = Touched::default();
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            let r = match change {
                Change::Send(message) => {
                    enqueue_send(&txn, account, message.as_ref().clone(), None, now).await?
                }
                _ => enqueue_email(&txn, account, change, now, &mut touched).await?,
            };
            debug!(account = %account, ?change, result = ?r, "Change queued.");
            out.push(r);
        }
        touched.recount(&txn).await?;
        txn.commit().await?;
        Ok(out)
    }

    // ----- drafts --------------------------------------------------------------------------

    /// Saves a draft: `draft = None` creates one in the account's Drafts mailbox, `Some(id)`
    /// replaces that draft's content. Applied locally at once (email row and body) and queued;
    /// saves not yet sent merge, so only the latest content goes up. Returns the draft's id.
    pub async fn save_draft(
        &self,
        account: AccountId,
        draft: Option<EmailId>,
        message: OutgoingMessage,
    ) -> Result<(EmailId, Enqueued), Error> {
        self.recover(account).await;
        let message = &message;
        retry_busy(|| async move {
            let txn = self.store.begin().await?;
            local::lock(&txn, draft).await?;
            let mut touched = Touched::default();
            let out = crate::draft::save(
                &txn,
                account,
                draft,
                message.clone(),
                self.clock.now(),
                &mut touched,
            )
            .await?;
            touched.recount(&txn).await?;
            txn.commit().await?;
            Ok(out)
        })
        .await
    }

    /// Discards a draft (removed from the server permanently; a draft the server never saw
    /// only leaves the database).
    pub async fn discard_draft(
        &self,
        account: AccountId,
        draft: EmailId,
    ) -> Result<Enqueued, Error> {
        self.recover(account).await;
        retry_busy(|| async move {
            let txn = self.store.begin().await?;
            local::lock(&txn, [draft]).await?;
            let mut touched = Touched::default();
            let out =
                crate::draft::discard(&txn, account, draft, self.clock.now(), &mut touched).await?;
            touched.recount(&txn).await?;
            txn.commit().await?;
            Ok(out)
        })
        .await
    }

    /// Sends a draft: queues the send of its latest content (through the same exactly-once
    /// send as [`Change::Send`], with a fresh Message-ID) and the draft's discard, in one
    /// transaction. Returns the send's queue entry.
    pub async fn send_draft(&self, account: AccountId, draft: EmailId) -> Result<Enqueued, Error> {
        self.recover(account).await;
        retry_busy(|| async move {
            let txn = self.store.begin().await?;
            local::lock(&txn, [draft]).await?;
            let mut touched = Touched::default();
            let out =
                crate::draft::send(&txn, account, draft, self.clock.now(), &mut touched).await?;
            touched.recount(&txn).await?;
            txn.commit().await?;
            Ok(out)
        })
        .await
    }

    /// The message a draft holds (its latest saved content).
    pub async fn draft_message(
        &self,
        account: AccountId,
        draft: EmailId,
    ) -> Result<OutgoingMessage, Error> {
        crate::draft::message(self.store.conn(), account, draft).await
    }

    // ----- mailboxes -----------------------------------------------------------------------

    /// Creates, renames/moves, deletes or (un)subscribes a mailbox: applied to the local
    /// database at once (a created mailbox is a row with a placeholder server identity; a
    /// deleted one leaves with the emails only it holds) and queued, in one transaction.
    /// Changes not sent yet coalesce (create then rename is one create with the last name;
    /// create then delete sends nothing). Returns the mailbox the change leaves (`None` after
    /// a delete). A name that exists locally or is invalid is refused before anything changes.
    pub async fn manage_mailbox(
        &self,
        account: AccountId,
        change: crate::MailboxChange,
    ) -> Result<(Option<mailsync_store::MailboxId>, Enqueued), Error> {
        self.recover(account).await;
        let change = &change;
        retry_busy(|| async move {
            let txn = self.store.begin().await?;
            let mut touched = Touched::default();
            let out = crate::mailbox::apply(&txn, account, change, self.clock.now(), &mut touched)
                .await?;
            touched.recount(&txn).await?;
            txn.commit().await?;
            debug!(account = %account, ?change, result = ?out, "Mailbox change queued.");
            Ok(out)
        })
        .await
    }

    // ----- cancel and undo -----------------------------------------------------------------

    /// Cancels a change. Not yet handed to the server: it is withdrawn and the local state
    /// restored exactly (later changes of the same email are re-applied on top). Already
    /// handed over or acknowledged (while this process remembers it): the compensating change
    /// is queued (move back, flag back). A permanent delete or a send that reached the server
    /// cannot be undone.
    pub async fn cancel(&self, id: ChangeId) -> Result<Undone, Error> {
        let out = retry_busy(|| self.cancel_txn(id)).await?;
        self.forget_completed(id);
        Ok(out)
    }

    async fn cancel_txn(&self, id: ChangeId) -> Result<Undone, Error> {
        let txn = self.store.begin().await?;
        let now = self.clock.now();
        let mut touched = Touched::default();
        let email = match rows::get(&txn, id).await? {
            Some(row) => row.email_id,
            None => self.completed(id).and_then(|c| c.email),
        };
        local::lock(&txn, email).await?;
        let out = match rows::get(&txn, id).await? {
            Some(row) => withdraw_or_compensate(&txn, &row, None, now, &mut touched).await?,
            None => {
                let done = self.completed(id).ok_or(Error::ChangeNotFound(id))?;
                compensate_completed(&txn, &done, now, &mut touched).await?
            }
        };
        touched.recount(&txn).await?;
        txn.commit().await?;
        info!(change = %id, result = ?out, "Change cancelled.");
        Ok(out)
    }

    /// Undoes the account's most recent user action that is not undone yet: withdraws it when
    /// it has not reached the server (only that action, even when it was merged with earlier
    /// ones), otherwise queues its compensation. Repeated calls walk back through history.
    pub async fn undo_last(&self, account: AccountId) -> Result<Undone, Error> {
        self.recover(account).await;
        let (out, forget) = retry_busy(|| self.undo_last_txn(account)).await?;
        if let Some(id) = forget {
            self.forget_completed(id);
        }
        Ok(out)
    }

    async fn undo_last_txn(&self, account: AccountId) -> Result<(Undone, Option<ChangeId>), Error> {
        let txn = self.store.begin().await?;
        let now = self.clock.now();
        let mut touched = Touched::default();
        // The latest undoable action among the queued rows...
        let mut best: Option<(DateTime<Utc>, ChangeId, Option<usize>)> = None;
        for row in rows::for_account(&txn, account).await? {
            let cand = match &row.payload {
                Payload::Send(s) => Some((s.at, None)),
                Payload::Mailbox(_) => None,
                Payload::Email(p) => p
                    .ops
                    .iter()
                    .rposition(|o| !o.undo && !o.undone)
                    .and_then(|k| p.ops.get(k).map(|o| (o.at, Some(k)))),
            };
            if let Some((at, k)) = cand
                && best.as_ref().is_none_or(|b| (at, row.id) > (b.0, b.1))
            {
                best = Some((at, row.id, k));
            }
        }
        // ... or among the changes completed in this process.
        let recent = self.latest_completed(account);
        let use_recent = match (&best, &recent) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(b), Some((at, _))) => *at > b.0,
        };
        let (out, forget) = if use_recent {
            let Some((_, done)) = recent else {
                return Err(Error::NothingToUndo(account));
            };
            local::lock(&txn, done.email).await?;
            (
                compensate_completed(&txn, &done, now, &mut touched).await?,
                Some(done.id),
            )
        } else {
            let Some((at, id, k)) = best else {
                return Err(Error::NothingToUndo(account));
            };
            let email = rows::get(&txn, id).await?.and_then(|r| r.email_id);
            local::lock(&txn, email).await?;
            let row = rows::get(&txn, id)
                .await?
                .ok_or(Error::ChangeNotFound(id))?;
            match draft_send(&txn, account, &row, at).await? {
                Some((send, draft)) => {
                    local::lock(&txn, [EmailId(draft.email)]).await?;
                    (
                        undo_draft_send(&txn, account, &send, &draft, at, now, &mut touched)
                            .await?,
                        None,
                    )
                }
                None => (
                    withdraw_or_compensate(&txn, &row, k, now, &mut touched).await?,
                    None,
                ),
            }
        };
        touched.recount(&txn).await?;
        txn.commit().await?;
        info!(account = %account, result = ?out, "Last action undone.");
        Ok((out, forget))
    }

    fn completed(&self, id: ChangeId) -> Option<Completed> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().find(|c| c.id == id).cloned()
    }

    fn latest_completed(&self, account: AccountId) -> Option<(DateTime<Utc>, Completed)> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .filter(|c| c.account == account)
            .filter_map(|c| c.last_undoable_at().map(|at| (at, c.clone())))
            .max_by_key(|(at, c)| (*at, c.id))
    }

    fn forget_completed(&self, id: ChangeId) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|c| c.id != id);
    }

    fn remember_completed(&self, done: Vec<Completed>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for c in done {
            // Compensations are not offered for undo again.
            if c.last_undoable_at().is_none() {
                continue;
            }
            recent.push_back(c);
            while recent.len() > RECENT_CAPACITY {
                recent.pop_front();
            }
        }
    }

    // ----- flush ---------------------------------------------------------------------------

    /// Drains the account's due changes through `executor`, in batches of at most
    /// [`RetryPolicy::batch_size`], oldest first, one change per email per batch. Each row is
    /// handed over at most once per call. Stops early when the executor reports the account
    /// offline, needing the user, or a state mismatch.
    ///
    /// Cancel safety: dropping the future while the executor runs leaves the batch in flight;
    /// the next flush hands those items over as [`Attempt::Uncertain`].
    pub async fn flush(
        &self,
        account: AccountId,
        executor: &dyn Executor,
    ) -> Result<FlushReport, Error> {
        self.recover(account).await;
        let lock = self.account_lock(account);
        let _guard = lock.lock().await;
        let span = tracing::info_span!("outbox_flush", account = %account);
        self.flush_locked(account, executor).instrument(span).await
    }

    async fn flush_locked(
        &self,
        account: AccountId,
        executor: &dyn Executor,
    ) -> Result<FlushReport, Error> {
        let start = self.clock.now();
        let mut report = FlushReport::default();
        let mut handed: HashSet<ChangeId> = HashSet::new();
        loop {
            let (batch, moot) = retry_busy(|| self.take_batch(account, start)).await?;
            report.moot += moot;
            if batch.is_empty() {
                if moot == 0 {
                    break;
                }
                continue;
            }
            if batch.iter().any(|(r, _)| !handed.insert(r.id)) {
                // A clock going backwards could make a handled row due again; never loop.
                warn!("A change became due twice in one flush; stopping this flush.");
                retry_busy(|| self.release(&batch)).await?;
                break;
            }
            // Outcomes are matched to rows by position: keep the two lists aligned.
            let (batch, items): (Vec<(Row, Attempt)>, Vec<QueuedChange>) = batch
                .into_iter()
                .filter_map(|(row, attempt)| {
                    queued_change(&row, attempt).map(|q| ((row, attempt), q))
                })
                .unzip();
            report.batches += 1;
            debug!(items = items.len(), "Handing a batch to the executor.");
            let (outcomes, batch_wide) = match executor.execute(account, &items).await {
                Ok(o) if o.len() == items.len() => (o, false),
                Ok(o) => {
                    warn!(
                        expected = items.len(),
                        got = o.len(),
                        "Executor broke its contract; the batch stays in flight."
                    );
                    return Err(Error::OutcomeCount {
                        expected: items.len(),
                        got: o.len(),
                    });
                }
                Err(BatchError::Transient {
                    reason,
                    retry_after,
                }) => (
                    vec![
                        ItemOutcome::Transient {
                            reason,
                            retry_after
                        };
                        items.len()
                    ],
                    true,
                ),
                Err(e) => {
                    retry_busy(|| self.release(&batch)).await?;
                    match e {
                        BatchError::Offline(r) => {
                            info!(reason = %r, "Offline; the queue pauses.");
                            report.paused = Some(Pause::Offline(r));
                        }
                        BatchError::NeedsUser(r) => {
                            warn!(reason = %r, "The account needs the user; the queue pauses.");
                            report.paused = Some(Pause::NeedsUser(r));
                        }
                        BatchError::StateMismatch | BatchError::Transient { .. } => {
                            info!("Server state changed; a resync is needed before retrying.");
                            report.resync_needed = true;
                        }
                    }
                    break;
                }
            };
            let tally =
                retry_busy(|| self.apply_outcomes(account, &batch, &outcomes, batch_wide)).await?;
            report.done += tally.done;
            report.submitted += tally.submitted;
            report.transient += tally.transient;
            report.evicted += tally.evicted;
            report.moot += tally.moot;
            report.lost += tally.lost;
            self.remember_completed(tally.completed);
        }
        report.next_due = queue::next_due_at(self.store.conn(), account).await?;
        info!(
            done = report.done,
            submitted = report.submitted,
            transient = report.transient,
            evicted = report.evicted,
            moot = report.moot,
            lost = report.lost,
            paused = ?report.paused,
            resync = report.resync_needed,
            "Outbox flushed."
        );
        Ok(report)
    }

    /// After a sync of the account: shows its queued changes again on top of what the sync
    /// wrote and rebases them on it ([`crate::reapply_after_sync`] over every email with queued
    /// changes). Every protocol's cycle calls it, between the sync and [`Outbox::reresolve`].
    pub async fn reapply_queued(&self, account: AccountId) -> Result<u64, Error> {
        {
            // It may evict mailbox rows: not while a flush of this process has them in hand.
            let lock = self.account_lock(account);
            let _guard = lock.lock().await;
            retry_busy(|| async {
                let txn = self.store.begin().await?;
                let queued = rows::readable(&txn, account).await?;
                let mut touched = Touched::default();
                crate::mailbox::reapply(&txn, account, &queued, &mut touched).await?;
                crate::outcome::settle_filed_sends(&txn, account, &queued).await?;
                touched.recount(&txn).await?;
                txn.commit().await?;
                Ok(())
            })
            .await?;
        }
        let mut emails: Vec<EmailId> = queue::list(self.store.conn(), Some(account))
            .await?
            .into_iter()
            .filter_map(|p| p.email_id)
            .collect();
        emails.sort_unstable();
        emails.dedup();
        if emails.is_empty() {
            return Ok(0);
        }
        retry_busy(|| async {
            let txn = self.store.begin().await?;
            let n = crate::apply::reapply_after_sync(&txn, &emails).await?;
            txn.commit().await?;
            Ok(n)
        })
        .await
    }

    /// The lock that serialises this process's flushes (and re-resolutions) of one account.
    fn account_lock(&self, account: AccountId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.flush_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(account).or_default().clone()
    }

    /// Finds lost changes again after a complete sync of the account (see
    /// [`crate::resolve`](crate::ResolveReport)): each applies to its message where it is now,
    /// or is dropped (listed as gone) when the message is no longer on the server. Flush again
    /// when [`ResolveReport::found`](crate::ResolveReport::found) is not zero.
    pub async fn reresolve(&self, account: AccountId) -> Result<crate::ResolveReport, Error> {
        let lock = self.account_lock(account);
        let _guard = lock.lock().await;
        let report = retry_busy(|| async {
            let txn = self.store.begin().await?;
            let r = crate::resolve::reresolve(&txn, account, self.clock.now()).await?;
            txn.commit().await?;
            Ok(r)
        })
        .await?;
        if report != crate::ResolveReport::default() {
            info!(
                found = report.found,
                gone = report.gone,
                satisfied = report.satisfied,
                superseded = report.superseded,
                "Lost changes re-resolved."
            );
        }
        Ok(report)
    }

    /// Selects the next batch and marks it in flight (committed before the executor runs).
    async fn take_batch(
        &self,
        account: AccountId,
        start: DateTime<Utc>,
    ) -> Result<(Vec<(Row, Attempt)>, u32), Error> {
        let txn = self.store.begin().await?;
        let heads = rows::due_heads(&txn, account, start, self.policy.batch_size).await?;
        local::lock(&txn, heads.iter().filter_map(|h| h.email_id)).await?;
        // Re-read under the locks: an enqueue may have merged into a row (or a cancel removed
        // one) after the select. From now on nobody merges into these rows.
        let ids: Vec<ChangeId> = heads.iter().map(|h| h.id).collect();
        let mut taken = Vec::with_capacity(ids.len());
        for raw in rows::get_many(&txn, &ids).await? {
            let (id, state) = (raw.id, raw.state);
            let has_email = raw.email_id.is_some();
            match Row::decode(raw) {
                Ok(row) if has_email == row.email_payload().is_some() => {
                    let attempt = match (state, &row.payload) {
                        (ChangeState::Pending, _) => Attempt::Fresh,
                        // Taken by a flush that stopped before handing it to the server: it
                        // cannot have reached it (one flusher per account holds the lease).
                        (ChangeState::InFlight, Payload::Send(s)) if s.handed_at.is_none() => {
                            Attempt::Fresh
                        }
                        (ChangeState::InFlight, _) => Attempt::Uncertain,
                        (ChangeState::Submitted, _) => Attempt::Submitted,
                        // Not selected by due_heads; a lost row reaching here was just
                        // re-resolved and made pending again by a concurrent caller.
                        (ChangeState::Lost, _) => continue,
                    };
                    taken.push((id, attempt));
                }
                Ok(_) => {
                    warn!(change = %id, "Queued change does not match its email; evicting it.");
                    queue::evict(&txn, id, "queued change does not match its email").await?;
                }
                Err(e) => {
                    warn!(change = %id, error = %e, "Unreadable queued change; evicting it.");
                    queue::evict(&txn, id, &e.to_string()).await?;
                }
            }
        }
        let fresh: Vec<ChangeId> = taken
            .iter()
            .filter(|(_, a)| *a == Attempt::Fresh)
            .map(|(id, _)| *id)
            .collect();
        rows::mark_in_flight(&txn, &fresh).await?;
        let ids: Vec<ChangeId> = taken.iter().map(|(id, _)| *id).collect();
        let attempts: HashMap<ChangeId, Attempt> = taken.into_iter().collect();
        let mut batch = Vec::with_capacity(ids.len());
        let mut moot = 0;
        for raw in rows::get_many(&txn, &ids).await? {
            let row = Row::decode(raw)?;
            let Some(attempt) = attempts.get(&row.id).copied() else {
                continue;
            };
            // A send a concurrent cancel removed is simply gone; one still pending lost a race.
            if attempt == Attempt::Fresh && row.state != ChangeState::InFlight {
                continue;
            }
            if let Some(p) = row.email_payload()
                && p.delta().is_empty()
            {
                rows::delete(&txn, row.id, None).await?;
                moot += 1;
                continue;
            }
            batch.push((row, attempt));
        }
        txn.commit().await?;
        Ok((batch, moot))
    }

    /// Puts a batch back as it was (no attempt spent): rows taken from pending become pending,
    /// except a send handed to the server meanwhile (its fate is unknown: it stays in flight and
    /// is looked for next time).
    async fn release(&self, batch: &[(Row, Attempt)]) -> Result<(), Error> {
        let txn = self.store.begin().await?;
        for (row, attempt) in batch {
            let handed = matches!(
                rows::get(&txn, row.id).await?.map(|r| r.payload),
                Some(Payload::Send(s)) if s.handed_at.is_some()
            );
            // A draft's content or a mailbox may have been made by a call whose answer never
            // came (a cut mid-request ends the batch as offline): it stays in flight, so it is
            // looked for before it is made again.
            if *attempt == Attempt::Fresh && !handed && !row.makes_something_new() {
                rows::update(
                    &txn,
                    row.id,
                    Some(ChangeState::InFlight),
                    Patch {
                        state: Some(ChangeState::Pending),
                        ..Patch::default()
                    },
                )
                .await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Records the outcomes of a batch. `batch_wide`: the outcomes stand for one error of the
    /// whole call, which says nothing about a send handed over before it.
    async fn apply_outcomes(
        &self,
        account: AccountId,
        batch: &[(Row, Attempt)],
        outcomes: &[ItemOutcome],
        batch_wide: bool,
    ) -> Result<Tally, Error> {
        let txn = self.store.begin().await?;
        local::lock(&txn, batch.iter().filter_map(|(r, _)| r.email_id)).await?;
        let now = self.clock.now();
        let mut touched = Touched::default();
        let mut tally = Tally::default();
        for ((row, attempt), outcome) in batch.iter().zip(outcomes) {
            // The executor journals a send's progress while it runs: work on the row as it is
            // now, not as it was taken.
            let current;
            let row = if matches!(row.payload, Payload::Send(_)) {
                match rows::get(&txn, row.id).await? {
                    Some(r) => {
                        current = r;
                        &current
                    }
                    None => continue,
                }
            } else {
                row
            };
            let kind = row.payload.kind();
            // A send handed over and not known accepted is never "not applied": a failure of the
            // lookup (attempt Uncertain) or of the whole call leaves it uncertain.
            let handed = matches!(&row.payload, Payload::Send(s) if s.handed_at.is_some() && s.submitted_at.is_none());
            // Likewise a draft's content or a mailbox: a transient failure may have come after
            // the server made it.
            let makes = row.makes_something_new();
            let unknown;
            let outcome = match outcome {
                ItemOutcome::Transient { reason, .. }
                    if makes || (handed && (batch_wide || *attempt == Attempt::Uncertain)) =>
                {
                    unknown = ItemOutcome::Unknown {
                        reason: reason.clone(),
                    };
                    &unknown
                }
                ItemOutcome::Permanent { reason } if handed && *attempt == Attempt::Uncertain => {
                    unknown = ItemOutcome::Unconfirmed {
                        reason: reason.clone(),
                    };
                    &unknown
                }
                o => o,
            };
            match outcome {
                ItemOutcome::Done => {
                    info!(change = %row.id, kind, outcome = "done", "Change acknowledged.");
                    on_done(&txn, account, row, None, &mut touched, &mut tally).await?;
                }
                ItemOutcome::Relocated {
                    remote_id,
                    locations,
                    size,
                } => {
                    info!(change = %row.id, kind, outcome = "done", ?remote_id, "Change acknowledged; new server identity.");
                    on_done(
                        &txn,
                        account,
                        row,
                        Some((remote_id.as_deref(), locations, *size)),
                        &mut touched,
                        &mut tally,
                    )
                    .await?;
                }
                ItemOutcome::Submitted => match (&row.payload, attempt) {
                    (Payload::Send(s), Attempt::Fresh | Attempt::Uncertain) => {
                        info!(change = %row.id, kind, outcome = "submitted", "Message accepted by the server; filing in Sent remains.");
                        let mut s = s.clone();
                        s.submitted_at.get_or_insert(now);
                        rows::update(
                            &txn,
                            row.id,
                            None,
                            Patch {
                                payload: Some(Payload::Send(s)),
                                state: Some(ChangeState::Submitted),
                                next_attempt_at: Some(now + to_chrono(self.policy.min_delay)),
                                last_error: Some(None),
                                ..Patch::default()
                            },
                        )
                        .await?;
                        tally.submitted += 1;
                    }
                    (Payload::Send(_), Attempt::Submitted) => {
                        self.on_failure(
                            &txn,
                            row,
                            *attempt,
                            "the copy to Sent is still to do",
                            None,
                            false,
                            now,
                            &mut touched,
                            &mut tally,
                        )
                        .await?;
                    }
                    (Payload::Email(_) | Payload::Mailbox(_), _) => {
                        self.on_failure(
                            &txn,
                            row,
                            *attempt,
                            "executor answered Submitted for a change that is not a send",
                            None,
                            true,
                            now,
                            &mut touched,
                            &mut tally,
                        )
                        .await?;
                    }
                },
                ItemOutcome::Transient {
                    reason,
                    retry_after,
                } => {
                    self.on_failure(
                        &txn,
                        row,
                        *attempt,
                        reason,
                        *retry_after,
                        false,
                        now,
                        &mut touched,
                        &mut tally,
                    )
                    .await?;
                }
                ItemOutcome::Unknown { reason } => {
                    self.on_uncertain(&txn, row, *attempt, reason, now, &mut touched, &mut tally)
                        .await?;
                }
                ItemOutcome::Permanent { reason } => {
                    evict(&txn, row, reason, &mut touched).await?;
                    tally.evicted += 1;
                }
                ItemOutcome::Unconfirmed { reason } => match &row.payload {
                    Payload::Send(s) if s.submitted_at.is_none() => {
                        warn!(change = %row.id, kind, outcome = "unconfirmed", reason, "A send handed to the server was not found there; listed as failed for the user.");
                        let why = format!("may have been sent: {reason}");
                        evict(&txn, row, &why, &mut touched).await?;
                        tally.evicted += 1;
                    }
                    _ => {
                        self.on_uncertain(
                            &txn,
                            row,
                            *attempt,
                            reason,
                            now,
                            &mut touched,
                            &mut tally,
                        )
                        .await?;
                    }
                },
                ItemOutcome::NotFound { reason } if matches!(row.payload, Payload::Mailbox(_)) => {
                    // A mailbox that is not there cannot be renamed or subscribed to.
                    evict(&txn, row, reason, &mut touched).await?;
                    tally.evicted += 1;
                }
                ItemOutcome::NotFound { reason } => {
                    if row.email_payload().is_none() {
                        // Only email changes address a message; a send cannot be "lost".
                        self.on_uncertain(
                            &txn,
                            row,
                            *attempt,
                            reason,
                            now,
                            &mut touched,
                            &mut tally,
                        )
                        .await?;
                        continue;
                    }
                    info!(change = %row.id, kind, outcome = "not found", reason, "Message not where the change addressed it; held until the next sync finds it.");
                    rows::update(
                        &txn,
                        row.id,
                        None,
                        Patch {
                            state: Some(ChangeState::Lost),
                            last_error: Some(Some(reason.clone())),
                            ..Patch::default()
                        },
                    )
                    .await?;
                    tally.lost += 1;
                }
            }
        }
        touched.recount(&txn).await?;
        txn.commit().await?;
        Ok(tally)
    }

    /// A failure after which the change may or may not have taken effect: spends an attempt,
    /// and the next hand-over is `Attempt::Uncertain`.
    #[allow(clippy::too_many_arguments)]
    async fn on_uncertain<C: ConnectionTrait>(
        &self,
        c: &C,
        row: &Row,
        attempt: Attempt,
        reason: &str,
        now: DateTime<Utc>,
        touched: &mut Touched,
        tally: &mut Tally,
    ) -> Result<(), Error> {
        self.on_failure(c, row, attempt, reason, None, true, now, touched, tally)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_failure<C: ConnectionTrait>(
        &self,
        c: &C,
        row: &Row,
        attempt: Attempt,
        reason: &str,
        retry_after: Option<Duration>,
        uncertain: bool,
        now: DateTime<Utc>,
        touched: &mut Touched,
        tally: &mut Tally,
    ) -> Result<(), Error> {
        let failures = row.retry_count.saturating_add(1);
        if failures >= self.policy.max_transient_failures {
            let maybe = match &row.payload {
                Payload::Send(s) if s.handed_at.is_some() && s.submitted_at.is_none() => {
                    "may have been sent: "
                }
                _ => "",
            };
            let why = format!("{maybe}gave up after {failures} transient failures: {reason}");
            evict_with_count(c, row, &why, failures, touched).await?;
            tally.evicted += 1;
            return Ok(());
        }
        let delay = self
            .policy
            .delay(failures, retry_after, self.jitter.as_ref());
        let state = if attempt == Attempt::Submitted || row.state == ChangeState::Submitted {
            ChangeState::Submitted
        } else if uncertain {
            ChangeState::InFlight
        } else {
            ChangeState::Pending
        };
        let next = now + to_chrono(delay);
        // Back to pending means the executor reported it not applied: not handed any more.
        let payload = match &row.payload {
            Payload::Send(s) if state == ChangeState::Pending && s.handed_at.is_some() => {
                let mut s = s.clone();
                s.handed_at = None;
                Some(Payload::Send(s))
            }
            _ => None,
        };
        info!(
            change = %row.id,
            kind = row.payload.kind(),
            outcome = if uncertain { "unknown" } else { "transient" },
            failures,
            retry_in = ?delay,
            reason,
            "Change will be retried."
        );
        rows::update(
            c,
            row.id,
            None,
            Patch {
                payload,
                state: Some(state),
                retry_count: Some(failures),
                next_attempt_at: Some(next),
                last_error: Some(Some(reason.to_owned())),
            },
        )
        .await?;
        tally.transient += 1;
        Ok(())
    }

    // ----- the send journal ----------------------------------------------------------------

    /// Records, committed before it returns, that the executor is about to hand send `id` to
    /// the server (connected and authenticated; SMTP `MAIL`/`DATA` or `EmailSubmission/set`
    /// next). From then on a crash leaves it "may have been sent": it is looked for and never
    /// submitted again without the user. An error means nothing was recorded: do not send.
    pub async fn send_handing(&self, id: ChangeId) -> Result<(), Error> {
        retry_busy(|| self.journal_txn(id, None)).await
    }

    /// Records, committed before it returns, that the server accepted send `id` (SMTP 250
    /// after DATA; the JMAP EmailSubmission created, `submission_id`). From then on it is only
    /// filed in Sent, never submitted again. Call it before filing starts.
    pub async fn send_accepted(
        &self,
        id: ChangeId,
        submission_id: Option<String>,
    ) -> Result<(), Error> {
        let accepted = Some(submission_id);
        retry_busy(|| self.journal_txn(id, accepted.clone())).await
    }

    /// `accepted`: `None` records the hand-over, `Some(submission id)` the acceptance.
    async fn journal_txn(
        &self,
        id: ChangeId,
        accepted: Option<Option<String>>,
    ) -> Result<(), Error> {
        let txn = self.store.begin().await?;
        let now = self.clock.now();
        let row = rows::get(&txn, id)
            .await?
            .ok_or(Error::ChangeNotFound(id))?;
        let Payload::Send(mut s) = row.payload else {
            return Err(Error::ChangeNotFound(id));
        };
        let (only_if, state) = match &accepted {
            None => {
                s.handed_at = Some(now);
                (ChangeState::InFlight, None)
            }
            Some(sub) => {
                s.handed_at.get_or_insert(now);
                s.submitted_at = Some(now);
                s.submission_id.clone_from(sub);
                (row.state, Some(ChangeState::Submitted))
            }
        };
        let updated = rows::update(
            &txn,
            id,
            Some(only_if),
            Patch {
                payload: Some(Payload::Send(s)),
                state,
                ..Patch::default()
            },
        )
        .await?;
        if !updated {
            return Err(Error::ChangeNotFound(id));
        }
        txn.commit().await?;
        info!(change = %id, step = if accepted.is_some() { "accepted" } else { "handing" }, "Send journaled.");
        Ok(())
    }

    // ----- failed changes ------------------------------------------------------------------

    /// The account's evicted changes, newest first.
    pub async fn failed(&self, account: AccountId) -> Result<Vec<FailedItem>, Error> {
        Ok(queue::list_failed(self.store.conn(), Some(account))
            .await?
            .into_iter()
            .map(|f| FailedItem {
                description: Payload::parse(f.id.0, &f.payload)
                    .map(|p| model::describe(&p))
                    .unwrap_or_else(|e| e.to_string()),
                id: f.id,
                email_id: f.email_id,
                kind: f.kind,
                reason: f.reason,
                retry_count: f.retry_count,
                created_at: f.created_at,
                failed_at: f.failed_at,
            })
            .collect())
    }

    /// Re-queues an evicted change: an email change is applied again to the current local
    /// state (and coalesced like a new one); a send is queued again as it was (a send the server
    /// had accepted stays submitted: it is never submitted twice).
    pub async fn retry_failed(&self, id: FailedId) -> Result<Enqueued, Error> {
        retry_busy(|| self.retry_failed_txn(id)).await
    }

    async fn retry_failed_txn(&self, id: FailedId) -> Result<Enqueued, Error> {
        let txn = self.store.begin().await?;
        let now = self.clock.now();
        let mut touched = Touched::default();
        let failed = queue::get_failed(&txn, id)
            .await?
            .ok_or(Error::FailedNotFound(id))?;
        local::lock(&txn, failed.email_id).await?;
        let out = match Payload::parse(failed.id.0, &failed.payload)? {
            Payload::Send(s) => {
                let new_id = queue::requeue_failed(&txn, id, now).await?;
                if s.submitted_at.is_some() {
                    rows::update(
                        &txn,
                        new_id,
                        None,
                        Patch {
                            state: Some(ChangeState::Submitted),
                            ..Patch::default()
                        },
                    )
                    .await?;
                } else if s.handed_at.is_some() {
                    // The user's decision to send it again: the only path to a second
                    // submission of a message that may have been sent.
                    let mut s = s;
                    s.handed_at = None;
                    rows::set_payload(&txn, new_id, Payload::Send(s)).await?;
                }
                Enqueued::Queued(new_id)
            }
            Payload::Mailbox(m) => {
                let (_, r) =
                    crate::mailbox::apply(&txn, failed.account_id, &m.change, now, &mut touched)
                        .await?;
                queue::dismiss_failed(&txn, id).await?;
                r
            }
            Payload::Email(p) => {
                let email = failed.email_id.ok_or(Error::FailedNotFound(id))?;
                let ops = p.ops.into_iter().map(|o| o.op).collect();
                let r = enqueue_ops(
                    &txn,
                    failed.account_id,
                    email,
                    ops,
                    false,
                    now,
                    &mut touched,
                )
                .await?;
                queue::dismiss_failed(&txn, id).await?;
                r
            }
        };
        touched.recount(&txn).await?;
        txn.commit().await?;
        info!(failed = %id, result = ?out, "Failed change re-queued.");
        Ok(out)
    }

    /// Forgets an evicted change (its local change was already reverted at eviction).
    pub async fn dismiss_failed(&self, id: FailedId) -> Result<(), Error> {
        match queue::dismiss_failed(self.store.conn(), id).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound { .. }) => Err(Error::FailedNotFound(id)),
            Err(e) => Err(e.into()),
        }
    }

    // ----- observation ---------------------------------------------------------------------

    /// The account's queued changes, oldest first.
    pub async fn pending(&self, account: AccountId) -> Result<Vec<PendingItem>, Error> {
        Ok(queue::list(self.store.conn(), Some(account))
            .await?
            .into_iter()
            .map(|c| PendingItem {
                description: Payload::parse(c.id.0, &c.payload)
                    .map(|p| model::describe(&p))
                    .unwrap_or_else(|e| e.to_string()),
                id: c.id,
                email_id: c.email_id,
                kind: c.kind,
                state: c.state,
                retry_count: c.retry_count,
                next_attempt_at: c.next_attempt_at,
                last_error: c.last_error,
                created_at: c.created_at,
            })
            .collect())
    }

    /// The account's mailboxes whose delete is queued, with their server identity as last
    /// known. Their local rows are gone, but a change queued before the delete may still
    /// address a copy in one (a message moved out, then its mailbox deleted): its executor
    /// needs the name to reach it, and the move runs first, so the message is not deleted with
    /// the mailbox (model test, Dovecot seed 26010).
    pub async fn mailboxes_being_deleted(
        &self,
        account: AccountId,
    ) -> Result<Vec<crate::MailboxOperation>, Error> {
        crate::mailbox::queued_deletes(self.store.conn(), account).await
    }

    /// How many changes of the account are queued, per state, and how many failed.
    pub async fn counts(&self, account: AccountId) -> Result<Counts, Error> {
        let c = self.store.conn();
        let mut out = Counts {
            failed: queue::count_failed(c, account).await?,
            ..Counts::default()
        };
        for (state, n) in rows::count_by_state(c, account).await? {
            let n = u64::try_from(n).unwrap_or(0);
            match state.parse::<ChangeState>() {
                Ok(ChangeState::Pending) => out.pending += n,
                Ok(ChangeState::InFlight) => out.in_flight += n,
                Ok(ChangeState::Submitted) => out.submitted += n,
                Ok(ChangeState::Lost) => out.lost += n,
                Err(_) => out.pending += n,
            }
        }
        Ok(out)
    }

    /// When the account's earliest queued change is due (`None`: nothing queued).
    pub async fn next_due(&self, account: AccountId) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(queue::next_due_at(self.store.conn(), account).await?)
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::days(365))
}

/// Whether `o` is a draft's discard made at `at` (`Destroy` in rows queued before `Discard`
/// existed), the half of sending a draft that is not the send.
fn discards_at(o: &model::OpEntry, at: DateTime<Utc>) -> bool {
    o.at == at && matches!(o.op, model::Op::Destroy | model::Op::Discard { .. })
}

/// The send a draft went out with, when the action an undo picked (`row`, its latest action
/// made at `at`) is one half of sending a draft: the send itself, or the draft's discard
/// queued beside it at the same instant.
async fn draft_send<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    row: &Row,
    at: DateTime<Utc>,
) -> Result<Option<(Row, model::SentDraft)>, Error> {
    if let Payload::Send(s) = &row.payload {
        return Ok(s.draft.clone().map(|d| (row.clone(), d)));
    }
    let Payload::Email(p) = &row.payload else {
        return Ok(None);
    };
    let discarded = p
        .ops
        .iter()
        .rev()
        .find(|o| !o.undo && !o.undone)
        .is_some_and(|o| discards_at(o, at));
    let Some(email) = row.email_id.filter(|_| discarded) else {
        return Ok(None);
    };
    for r in rows::for_account(c, account).await? {
        if let Payload::Send(s) = &r.payload
            && s.at == at
            && let Some(d) = s.draft.clone().filter(|d| d.email == email.0)
        {
            return Ok(Some((r, d)));
        }
    }
    Ok(None)
}

/// Takes back the sending of a draft, whichever half the undo picked: the send is withdrawn
/// (refused once it is handed over: then nothing changes), and the draft's discard made with
/// it is withdrawn where it is still queued; where it is not (a draft never uploaded leaves
/// with its discard, nothing of it having reached the server; or the discard went out before
/// the send did), the draft is saved again from the send's content, under its Message-ID.
/// Undoing one half alone sent the message with its draft back, or left its content neither
/// sent nor kept.
async fn undo_draft_send<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    send: &Row,
    draft: &model::SentDraft,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Undone, Error> {
    let out = withdraw_or_compensate(c, send, None, now, touched).await?;
    let email = EmailId(draft.email);
    for row in rows::for_email(c, email).await? {
        if let Payload::Email(p) = &row.payload
            && let Some(k) = p
                .ops
                .iter()
                .rposition(|o| !o.undo && !o.undone && discards_at(o, at))
        {
            withdraw_or_compensate(c, &row, Some(k), now, touched).await?;
            return Ok(out);
        }
    }
    // Still shown somewhere (its discard was taken back already): nothing to put back.
    if local::load(c, email)
        .await?
        .is_some_and(|(_, snap)| !snap.mailboxes.is_empty())
    {
        return Ok(out);
    }
    let Payload::Send(s) = &send.payload else {
        return Ok(out);
    };
    let mut message = s.message.clone();
    message.message_id.clone_from(&draft.message_id);
    crate::draft::save(c, account, None, message, now, touched).await?;
    Ok(out)
}
