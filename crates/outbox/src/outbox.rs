//! [`Outbox`]: enqueue with the optimistic local update and coalescing, cancel and undo, flush
//! through an [`Executor`] with retries and eviction, and the failed changes the user sees.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mailsync_store::emails::{self, Email};
use mailsync_store::entity::{email_mailboxes as em, emails as e};
use mailsync_store::queue::{self, ChangeState, NewChange};
use mailsync_store::{
    AccountId, ChangeId, ConnectionTrait, EmailId, FailedId, MailboxId, Role, Store, StoreError,
    mailboxes,
};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tracing::{Instrument as _, debug, info, warn};

use crate::change::{Change, OutgoingMessage};
use crate::error::{Error, UndoRefusal};
use crate::executor::{
    Attempt, BatchError, EmailChange, Executor, ItemOutcome, Operation, QueuedChange,
};
use crate::local::{self, Touched};
use crate::model::{
    self, EmailPayload, Fields, Folded, Location, Op, OpEntry, PAYLOAD_VERSION, Payload,
    SendPayload, Snapshot, Target,
};
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
}

/// A change the server acknowledged, kept in memory so it can still be undone (compensated).
#[derive(Debug, Clone)]
struct Completed {
    id: ChangeId,
    account: AccountId,
    email: Option<EmailId>,
    payload: Payload,
}

impl Completed {
    /// When its latest undoable action happened (`None`: nothing left to undo).
    fn last_undoable_at(&self) -> Option<DateTime<Utc>> {
        match &self.payload {
            Payload::Send(s) => Some(s.at),
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
    /// Evicted, waiting for the user to retry or dismiss.
    pub failed: u64,
}

impl Counts {
    /// Everything still queued.
    pub fn queued(&self) -> u64 {
        self.pending + self.in_flight + self.submitted
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
struct Tally {
    done: u32,
    submitted: u32,
    transient: u32,
    evicted: u32,
    moot: u32,
    completed: Vec<Completed>,
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

fn not_found_is_none<T>(r: Result<T, StoreError>) -> Result<Option<T>, Error> {
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
                    enqueue_send(&txn, account, message.as_ref().clone(), now).await?
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
            let Some((_, id, k)) = best else {
                return Err(Error::NothingToUndo(account));
            };
            let email = rows::get(&txn, id).await?.and_then(|r| r.email_id);
            local::lock(&txn, email).await?;
            let row = rows::get(&txn, id)
                .await?
                .ok_or(Error::ChangeNotFound(id))?;
            (
                withdraw_or_compensate(&txn, &row, k, now, &mut touched).await?,
                None,
            )
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
        let lock = {
            let mut locks = self.flush_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(account).or_default().clone()
        };
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
                break;
            }
            let items: Vec<QueuedChange> = batch
                .iter()
                .filter_map(|(row, attempt)| queued_change(row, *attempt))
                .collect();
            report.batches += 1;
            debug!(items = items.len(), "Handing a batch to the executor.");
            let outcomes = match executor.execute(account, &items).await {
                Ok(o) if o.len() == items.len() => o,
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
                }) => vec![
                    ItemOutcome::Transient {
                        reason,
                        retry_after
                    };
                    items.len()
                ],
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
            let tally = retry_busy(|| self.apply_outcomes(account, &batch, &outcomes)).await?;
            report.done += tally.done;
            report.submitted += tally.submitted;
            report.transient += tally.transient;
            report.evicted += tally.evicted;
            report.moot += tally.moot;
            self.remember_completed(tally.completed);
        }
        report.next_due = queue::next_due_at(self.store.conn(), account).await?;
        info!(
            done = report.done,
            submitted = report.submitted,
            transient = report.transient,
            evicted = report.evicted,
            moot = report.moot,
            paused = ?report.paused,
            resync = report.resync_needed,
            "Outbox flushed."
        );
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
                    let attempt = match state {
                        ChangeState::Pending => Attempt::Fresh,
                        ChangeState::InFlight => Attempt::Uncertain,
                        ChangeState::Submitted => Attempt::Submitted,
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

    /// Puts a batch back as it was (no attempt spent): rows taken from pending become pending.
    async fn release(&self, batch: &[(Row, Attempt)]) -> Result<(), Error> {
        let txn = self.store.begin().await?;
        for (row, attempt) in batch {
            if *attempt == Attempt::Fresh {
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

    async fn apply_outcomes(
        &self,
        account: AccountId,
        batch: &[(Row, Attempt)],
        outcomes: &[ItemOutcome],
    ) -> Result<Tally, Error> {
        let txn = self.store.begin().await?;
        local::lock(&txn, batch.iter().filter_map(|(r, _)| r.email_id)).await?;
        let now = self.clock.now();
        let mut touched = Touched::default();
        let mut tally = Tally::default();
        for ((row, attempt), outcome) in batch.iter().zip(outcomes) {
            let kind = row.payload.kind();
            match outcome {
                ItemOutcome::Done => {
                    info!(change = %row.id, kind, outcome = "done", "Change acknowledged.");
                    on_done(&txn, account, row, None, &mut touched, &mut tally).await?;
                }
                ItemOutcome::Relocated {
                    remote_id,
                    locations,
                } => {
                    info!(change = %row.id, kind, outcome = "done", ?remote_id, "Change acknowledged; new server identity.");
                    on_done(
                        &txn,
                        account,
                        row,
                        Some((remote_id.as_deref(), locations)),
                        &mut touched,
                        &mut tally,
                    )
                    .await?;
                }
                ItemOutcome::Submitted => match (&row.payload, attempt) {
                    (Payload::Send(s), Attempt::Fresh | Attempt::Uncertain) => {
                        info!(change = %row.id, kind, outcome = "submitted", "Message accepted by the server; filing in Sent remains.");
                        let mut s = s.clone();
                        s.submitted_at = Some(now);
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
                    (Payload::Email(_), _) => {
                        self.on_failure(
                            &txn,
                            row,
                            *attempt,
                            "executor answered Submitted for an email change",
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
                    self.on_failure(
                        &txn,
                        row,
                        *attempt,
                        reason,
                        None,
                        true,
                        now,
                        &mut touched,
                        &mut tally,
                    )
                    .await?;
                }
                ItemOutcome::Permanent { reason } => {
                    evict(&txn, row, reason, &mut touched).await?;
                    tally.evicted += 1;
                }
            }
        }
        touched.recount(&txn).await?;
        txn.commit().await?;
        Ok(tally)
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
            let why = format!("gave up after {failures} transient failures: {reason}");
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
                state: Some(state),
                retry_count: Some(failures),
                next_attempt_at: Some(next),
                last_error: Some(Some(reason.to_owned())),
                ..Patch::default()
            },
        )
        .await?;
        tally.transient += 1;
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
                }
                Enqueued::Queued(new_id)
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

// ----- enqueue internals ---------------------------------------------------------------------

async fn enqueue_send<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    mut message: OutgoingMessage,
    now: DateTime<Utc>,
) -> Result<Enqueued, Error> {
    message.prepare()?;
    let payload = Payload::Send(SendPayload {
        v: PAYLOAD_VERSION,
        at: now,
        submitted_at: None,
        message,
    });
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

async fn check_mailbox<C: ConnectionTrait>(
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

async fn load_email<C: ConnectionTrait>(
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

async fn enqueue_email<C: ConnectionTrait>(
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
async fn enqueue_ops<C: ConnectionTrait>(
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
/// into the email's newest row when that row has not been handed to the server yet.
async fn apply_entries<C: ConnectionTrait>(
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
    let destroys = entries.iter().any(|e| matches!(e.op, Op::Destroy));
    if after.state == *current && !destroys {
        return Ok(Enqueued::Unchanged);
    }
    let mut result = None;
    if let Some(tail) = queued.last()
        && tail.state == ChangeState::Pending
        && let Payload::Email(p) = &tail.payload
    {
        let mut merged = p.clone();
        merged.ops.extend(entries.iter().cloned());
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
                before: current.clone(),
                ops: entries,
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
    local::write(c, email.id, current, &after.state, touched).await?;
    Ok(result)
}

// ----- undo internals ------------------------------------------------------------------------

/// Withdraws a not-yet-sent row (or only its op `k`), or queues the compensation of a row the
/// server has (or may have) seen.
async fn withdraw_or_compensate<C: ConnectionTrait>(
    c: &C,
    row: &Row,
    k: Option<usize>,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<Undone, Error> {
    match &row.payload {
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
                let partial = k.filter(|_| p.ops.len() > 1);
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
            rows::update(
                c,
                row.id,
                None,
                Patch {
                    payload: Some(Payload::Email(marked)),
                    ..Patch::default()
                },
            )
            .await?;
            let compensation = enqueue_ops(c, row.account, email, ops, true, now, touched).await?;
            Ok(Undone::Compensated {
                change: row.id,
                compensation,
            })
        }
    }
}

/// The ops that undo a whole row (`k = None`) or only its op `k`, as a new change.
fn compensation(p: &EmailPayload, k: Option<usize>) -> Result<Vec<Op>, UndoRefusal> {
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
async fn resettle<C: ConnectionTrait>(
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
            rows::update(
                c,
                x.id,
                None,
                Patch {
                    payload: Some(Payload::Email(np.clone())),
                    ..Patch::default()
                },
            )
            .await?;
        }
        state = np.fold();
    }
    let rebased = rebase(c, queued.get(i + 1..).unwrap_or_default(), state).await?;
    fields.add(rebased.1);
    if let Some((_, current)) = local::load(c, email).await? {
        let new = model::overlay(&current, &rebased.0.state, &fields);
        local::write(c, email, &current, &new, touched).await?;
    }
    Ok(())
}

/// Rebases `rows` (consecutive rows of one email) on `state`: rewrites each row's `before`,
/// drops not-yet-sent rows left with nothing to send. Returns the final state and the fields
/// the remaining rows touch.
async fn rebase<C: ConnectionTrait>(
    c: &C,
    rows_after: &[Row],
    mut state: Folded,
) -> Result<(Folded, Fields), Error> {
    let mut fields = Fields::default();
    for y in rows_after {
        let Some(yp) = y.email_payload() else {
            continue;
        };
        let mut np = yp.clone();
        np.before = state.state.clone();
        let d = np.delta();
        if d.is_empty() && y.state == ChangeState::Pending {
            rows::delete(c, y.id, Some(ChangeState::Pending)).await?;
        } else if np != *yp {
            rows::update(
                c,
                y.id,
                None,
                Patch {
                    payload: Some(Payload::Email(np.clone())),
                    ..Patch::default()
                },
            )
            .await?;
        }
        fields.add(Fields::of(&d));
        state = np.fold();
    }
    Ok((state, fields))
}

// ----- outcome internals ---------------------------------------------------------------------

async fn on_done<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    row: &Row,
    relocated: Option<(Option<&str>, &[Location])>,
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
    if let Some((remote_id, locations)) = relocated {
        relocate(c, account, email, remote_id, locations, touched).await?;
    }
    Ok(())
}

/// Records the server identity an executed move gave the email (IMAP COPYUID), locally and in
/// the email's later rows, unless a sync already stored that identity on another row.
async fn relocate<C: ConnectionTrait>(
    c: &C,
    account: AccountId,
    email: EmailId,
    remote_id: Option<&str>,
    locations: &[Location],
    touched: &mut Touched,
) -> Result<(), Error> {
    for l in locations {
        if let Some(uid) = l.uid {
            let taken = em::Entity::find()
                .filter(em::Column::MailboxId.eq(l.mailbox_id.0))
                .filter(em::Column::Uid.eq(uid))
                .filter(em::Column::EmailId.ne(email.0))
                .one(c)
                .await?;
            if taken.is_some() {
                warn!(email = %email, mailbox = %l.mailbox_id, uid, "A sync already stored the moved copy; keeping the local row as it is.");
                return Ok(());
            }
        }
    }
    if let Some(rid) = remote_id
        && let Some(other) = emails::find_by_remote_id(c, account, rid).await?
        && other.id != email
    {
        warn!(email = %email, remote_id = rid, "A sync already stored the moved email; keeping the local row as it is.");
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
        if let Some(rid) = remote_id
            && rid != e.remote_id
        {
            e::Entity::update_many()
                .col_expr(e::Column::RemoteId, Expr::value(rid))
                .filter(e::Column::Id.eq(email.0))
                .exec(c)
                .await?;
        }
    }
    for later in rows::for_email(c, email).await? {
        if let Payload::Email(p) = &later.payload {
            let mut np = p.clone();
            patch_locs(&mut np.before.mailboxes);
            if let Some(rid) = remote_id {
                rid.clone_into(&mut np.remote_id);
            }
            if np != *p {
                rows::update(
                    c,
                    later.id,
                    None,
                    Patch {
                        payload: Some(Payload::Email(np)),
                        ..Patch::default()
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

async fn evict<C: ConnectionTrait>(
    c: &C,
    row: &Row,
    reason: &str,
    touched: &mut Touched,
) -> Result<(), Error> {
    evict_with_count(c, row, reason, row.retry_count, touched).await
}

/// Moves a row to the failed list and reverts its optimistic change: the server wins.
async fn evict_with_count<C: ConnectionTrait>(
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
    Ok(())
}

// ----- executor view -------------------------------------------------------------------------

fn queued_change(row: &Row, attempt: Attempt) -> Option<QueuedChange> {
    let operation = match &row.payload {
        Payload::Send(s) => Operation::Send(s.message.clone()),
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

// ----- sync hook -----------------------------------------------------------------------------

/// Re-applies queued changes on top of what a sync just wrote. Call it in the sync's
/// transaction with the ids of the emails the batch wrote: for each one with queued changes,
/// the written state becomes the new server state those changes are based on (their
/// `before`), not-yet-sent changes that the server state already satisfies are dropped, and
/// the local row shows the queued changes again instead of the older server values. Returns
/// how many emails had queued changes.
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
        let Some((_, current)) = local::load(c, email).await? else {
            continue;
        };
        let (state, fields) = rebase(
            c,
            &queued,
            Folded {
                state: current.clone(),
                destroyed: false,
            },
        )
        .await?;
        let new = model::overlay(&current, &state.state, &fields);
        local::write(c, email, &current, &new, &mut touched).await?;
    }
    touched.recount(c).await?;
    Ok(n)
}
