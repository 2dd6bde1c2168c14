//! The per-account worker: a loop of sync cycles separated by waits (IDLE, push, poll or backoff),
//! each cycle recorded in the sync log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailsync_store::changes::{Changes, QueueFate};
use mailsync_store::sync_log::{self, SyncCounts};
use mailsync_store::{AccountId, ChangeId, EmailId, MailboxId, Store};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::classify::{Disposition, classify};
use crate::error::EngineError;

/// What a worker needs from a protocol: one cycle, and a wait for the next server change.
///
/// Implemented by the engine for IMAP and JMAP; mocked in tests.
#[cfg_attr(test, mockall::automock)]
#[async_trait::async_trait]
pub trait AccountDriver: Send {
    /// One sync cycle: (re)connect when needed, flush the outbox, sync mailboxes and emails.
    /// Checks `cancel` between batches and returns early (without error) when it fires, after
    /// committing the batch in progress.
    async fn cycle(&mut self, cancel: &CancellationToken) -> Result<SyncCounts, EngineError>;
    /// Waits until the server reports a change (IDLE, EventSource) or the poll interval passes.
    /// Must be cancel-safe: the worker drops it when woken or shut down.
    async fn wait_for_change(&mut self) -> Result<(), EngineError>;
    /// Forgets checkpoints so the next cycle resyncs from scratch (after a resync disposition).
    async fn reset_checkpoints(&mut self) -> Result<(), EngineError>;
}

/// An email an event is about, with the mailboxes it is in (created, updated) or was in
/// (removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRef {
    /// Local id (`emails.id`).
    pub id: EmailId,
    /// Local mailbox ids.
    pub mailboxes: Vec<MailboxId>,
}

/// What happened, for a UI to redraw exactly that. Events of one cycle come in this order:
/// `CycleStarted`, the queued changes' fates, `EmailsCreated`, `EmailsUpdated`,
/// `EmailsRemoved`, `MailboxesChanged`, then `Synced` or `Failed`. Ids are local ids: read the
/// rows from the store (absent rows were removed since).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A cycle started.
    CycleStarted {
        /// Account.
        account: AccountId,
    },
    /// A cycle finished; the store changed as counted.
    Synced {
        /// Account.
        account: AccountId,
        /// What changed.
        counts: SyncCounts,
    },
    /// A cycle failed.
    Failed {
        /// Account.
        account: AccountId,
        /// One-line message.
        message: String,
        /// What the worker does about it.
        disposition: Disposition,
    },
    /// Emails that appeared in the store.
    EmailsCreated {
        /// Account.
        account: AccountId,
        /// The emails, by id.
        emails: Vec<EmailRef>,
    },
    /// Emails whose flags, keywords, mailboxes or metadata changed.
    EmailsUpdated {
        /// Account.
        account: AccountId,
        /// The emails, by id.
        emails: Vec<EmailRef>,
    },
    /// Emails removed from the store.
    EmailsRemoved {
        /// Account.
        account: AccountId,
        /// The emails, by id, with the mailboxes they were in.
        emails: Vec<EmailRef>,
    },
    /// Mailboxes created, renamed, recounted or deleted.
    MailboxesChanged {
        /// Account.
        account: AccountId,
        /// Local mailbox ids (a missing one was deleted).
        mailboxes: Vec<MailboxId>,
    },
    /// A queued change (or send) moved on: queued, in flight / accepted / lost, waiting after
    /// a transient failure, done (acknowledged or moot), or evicted to the failed list.
    Change {
        /// Account.
        account: AccountId,
        /// The queued change.
        change: ChangeId,
        /// What happened to it.
        fate: QueueFate,
    },
    /// A local change was queued (the store changed optimistically).
    LocalChange {
        /// Account.
        account: AccountId,
    },
    /// This subscriber fell behind and `missed` events were dropped: reload the view from the
    /// store (the store is always the truth; events only say where to look).
    Lagged {
        /// Events dropped.
        missed: u64,
    },
}

/// A subscription to [`EngineEvent`]s. Never loses events silently: a subscriber too slow for
/// the buffer gets [`EngineEvent::Lagged`] in their place.
#[derive(Debug)]
pub struct Events(broadcast::Receiver<EngineEvent>);

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<EngineEvent>) -> Self {
        Self(rx)
    }

    /// The next event; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<EngineEvent> {
        match self.0.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some(EngineEvent::Lagged { missed })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is waiting (`None`: none now, or the engine is gone).
    pub fn try_recv(&mut self) -> Option<EngineEvent> {
        match self.0.try_recv() {
            Ok(e) => Some(e),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Some(EngineEvent::Lagged { missed })
            }
            Err(_) => None,
        }
    }
}

/// Sends the events for what one scope of store writes touched.
pub(crate) fn publish(
    events: &broadcast::Sender<EngineEvent>,
    account: AccountId,
    changes: Changes,
) {
    let refs = |set: mailsync_store::changes::EmailSet| -> Vec<EmailRef> {
        set.into_iter()
            .map(|(id, boxes)| EmailRef {
                id,
                mailboxes: boxes.into_iter().collect(),
            })
            .collect()
    };
    for (change, fate) in changes.queue {
        let _ = events.send(EngineEvent::Change {
            account,
            change,
            fate,
        });
    }
    if !changes.created.is_empty() {
        let emails = refs(changes.created);
        let _ = events.send(EngineEvent::EmailsCreated { account, emails });
    }
    if !changes.updated.is_empty() {
        let emails = refs(changes.updated);
        let _ = events.send(EngineEvent::EmailsUpdated { account, emails });
    }
    if !changes.removed.is_empty() {
        let emails = refs(changes.removed);
        let _ = events.send(EngineEvent::EmailsRemoved { account, emails });
    }
    if !changes.mailboxes.is_empty() {
        let mailboxes = changes.mailboxes.into_iter().collect();
        let _ = events.send(EngineEvent::MailboxesChanged { account, mailboxes });
    }
}

/// Runs `fut`, collecting the ids its store writes touch when anyone listens (nobody pays for
/// the look-ups otherwise), and publishes them.
pub(crate) async fn with_events<F: std::future::Future>(
    events: &broadcast::Sender<EngineEvent>,
    account: AccountId,
    fut: F,
) -> F::Output {
    if events.receiver_count() == 0 {
        return fut.await;
    }
    let (out, changes) = mailsync_store::changes::collect(fut).await;
    publish(events, account, changes);
    out
}

/// Timing policy of a worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerPolicy {
    /// Backoff after failed cycles.
    pub backoff: Backoff,
    /// How long a shutdown waits for a cycle in progress before dropping it (rolling back).
    pub shutdown_grace: Duration,
    /// Minimum time between the starts of two cycles triggered by the server: a server that
    /// reports changes in a tight loop (or a broken IDLE) cannot make the worker spin.
    pub min_cycle_interval: Duration,
    /// How often a driver without push polls the server (JMAP without EventSource).
    pub poll_interval: Duration,
    /// How long an account's lease lasts without a heartbeat: a killed process blocks the
    /// account for at most this long.
    pub lease_ttl: Duration,
    /// How often the holder renews its leases (well under `lease_ttl`).
    pub lease_renew: Duration,
    /// How often a running engine looks for wake requests (changes made by other processes).
    pub wake_poll: Duration,
    /// The longest wait after a network-class failure (server unreachable), jittered.
    pub offline_backoff_cap: Duration,
    /// IMAP connections an account may hold in all (sync, IDLE, on-demand downloads); without
    /// NOTIFY, what the sync and on-demand connections leave goes to IDLE on more mailboxes.
    pub imap_connections: usize,
    /// Without NOTIFY, how often the mailboxes without an IDLE of their own are looked at
    /// (one LIST-STATUS or pipelined STATUS); never less often than `poll_interval`.
    pub status_interval: Duration,
    /// IMAP capabilities to ignore although offered (e.g. `NOTIFY`): an escape hatch for
    /// broken server extensions, and how tests and benches run the fallback paths.
    pub imap_disabled_extensions: Vec<String>,
    /// The daemon-wide cap on IMAP connections per server host (none: no cap), shared by
    /// every account's sync, IDLE and on-demand connections.
    pub host_cap: Option<std::sync::Arc<crate::hostcap::HostCap>>,
}

impl WorkerPolicy {
    /// Sets the polling interval for servers without push.
    #[must_use]
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Sets the IMAP connection budget per account (at least 2: sync and on-demand).
    #[must_use]
    pub fn with_imap_connections(mut self, n: usize) -> Self {
        self.imap_connections = n;
        self
    }

    /// Sets how often, without NOTIFY, the mailboxes nobody IDLEs on are looked at.
    #[must_use]
    pub fn with_status_interval(mut self, d: Duration) -> Self {
        self.status_interval = d;
        self
    }

    /// Caps the IMAP connections per server host at `n` for everything this policy's engine
    /// runs (see [`crate::hostcap`]).
    #[must_use]
    pub fn with_host_connections(mut self, n: usize) -> Self {
        self.host_cap = Some(std::sync::Arc::new(crate::hostcap::HostCap::new(n)));
        self
    }

    /// Ignores an IMAP capability the server offers (e.g. `NOTIFY`).
    #[must_use]
    pub fn without_imap_extension(mut self, capability: &str) -> Self {
        self.imap_disabled_extensions
            .push(capability.to_ascii_uppercase());
        self
    }

    /// How the IMAP driver watches an account between cycles under this policy.
    pub fn imap_watch(&self) -> crate::imap_driver::ImapWatch {
        crate::imap_driver::ImapWatch {
            connections: self.imap_connections,
            status_interval: self.status_interval.min(self.poll_interval),
            disabled_extensions: self.imap_disabled_extensions.clone(),
        }
    }

    /// Sets the lease expiry and the heartbeat interval (tests use short ones).
    #[must_use]
    pub fn with_lease(mut self, ttl: Duration, renew: Duration) -> Self {
        self.lease_ttl = ttl;
        self.lease_renew = renew;
        self
    }
}

impl Default for WorkerPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            shutdown_grace: Duration::from_secs(10),
            min_cycle_interval: Duration::from_secs(1),
            poll_interval: Duration::from_secs(30),
            // A dead daemon's accounts are taken over within ttl + renew (< 30 s).
            lease_ttl: Duration::from_secs(20),
            lease_renew: Duration::from_secs(5),
            wake_poll: Duration::from_millis(250),
            offline_backoff_cap: Duration::from_secs(12),
            imap_connections: 3,
            status_interval: Duration::from_secs(3),
            imap_disabled_extensions: Vec::new(),
            host_cap: None,
        }
    }
}

/// A running worker's outcome for `--once` callers.
pub type CycleResult = Result<SyncCounts, EngineError>;

/// Where cycles are recorded: the `sync_log` table in production, memory in tests. Also the
/// store's work that runs beside each cycle: search indexing ([`CycleLog::index_noted`]).
#[async_trait::async_trait]
pub trait CycleLog: Send + Sync {
    /// Records the start of a cycle; returns a handle for [`CycleLog::finish`].
    async fn start(&self, account: AccountId) -> Result<i64, EngineError>;
    /// Records the end of a cycle.
    async fn finish(
        &self,
        handle: i64,
        outcome: Result<(), &str>,
        counts: SyncCounts,
    ) -> Result<(), EngineError>;
    /// Indexes for search what writes noted, up to `max_notes` notes, on a connection that
    /// does not hold up the cycle's writes; returns the notes passed (0: the index is
    /// current). Stores that index inside their writes keep the default.
    async fn index_noted(&self, _max_notes: u64) -> Result<u64, EngineError> {
        Ok(0)
    }
    /// Drops the notes the index has passed (once it has caught up).
    async fn collect_noted(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl CycleLog for Store {
    async fn index_noted(&self, max_notes: u64) -> Result<u64, EngineError> {
        Ok(Store::index_noted(self, max_notes).await?)
    }
    async fn collect_noted(&self) -> Result<(), EngineError> {
        Store::collect_noted(self).await?;
        Ok(())
    }
    async fn start(&self, account: AccountId) -> Result<i64, EngineError> {
        Ok(sync_log::start(self.conn(), account).await?.0)
    }
    async fn finish(
        &self,
        handle: i64,
        outcome: Result<(), &str>,
        counts: SyncCounts,
    ) -> Result<(), EngineError> {
        Ok(sync_log::finish(
            self.conn(),
            mailsync_store::SyncLogId(handle),
            outcome,
            counts,
        )
        .await?)
    }
}

/// Runs one cycle and records it (start, end, counts, one-line error), and tells subscribers
/// (started, what it wrote, finished or failed).
pub async fn run_cycle<D: AccountDriver + ?Sized, L: CycleLog + ?Sized>(
    log: &L,
    account: AccountId,
    driver: &mut D,
    cancel: &CancellationToken,
    events: &broadcast::Sender<EngineEvent>,
) -> CycleResult {
    let res = run_cycle_logged(log, account, driver, cancel, events).await;
    match &res {
        Ok(counts) => {
            let _ = events.send(EngineEvent::Synced {
                account,
                counts: *counts,
            });
        }
        Err(e) => {
            let _ = events.send(EngineEvent::Failed {
                account,
                message: e.to_string(),
                disposition: classify(e),
            });
        }
    }
    res
}

async fn run_cycle_logged<D: AccountDriver + ?Sized, L: CycleLog + ?Sized>(
    log: &L,
    account: AccountId,
    driver: &mut D,
    cancel: &CancellationToken,
    events: &broadcast::Sender<EngineEvent>,
) -> CycleResult {
    let handle = log.start(account).await?;
    let _ = events.send(EngineEvent::CycleStarted { account });
    let done = CycleDone::default();
    let cycle = async {
        let res = with_events(events, account, driver.cycle(cancel)).await;
        done.set();
        res
    };
    let (res, ()) = tokio::join!(cycle, index_beside(log, &done, cancel));
    let (outcome, counts) = match &res {
        Ok(c) => (Ok(()), *c),
        Err(e) => (Err(e.to_string()), SyncCounts::default()),
    };
    log.finish(
        handle,
        outcome.as_ref().map(|_| ()).map_err(String::as_str),
        counts,
    )
    .await?;
    res
}

/// Notes (changed emails) passed per indexing transaction beside a cycle: about the batch
/// size FTS5 did best with (one modest segment per transaction).
const INDEX_NOTES: u64 = 500;
/// How long the indexer beside a cycle waits when it has caught up with the cycle's writes.
const INDEX_IDLE: Duration = Duration::from_millis(50);

/// Whether the cycle beside the indexer has ended, and a wake-up for an indexer waiting for
/// more notes: without it a short cycle (a no-change resync takes ~20 ms) would wait out the
/// indexer's idle pause.
#[derive(Default)]
struct CycleDone {
    flag: AtomicBool,
    wake: Notify,
}

impl CycleDone {
    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        // Every indexing loop: with one permit (`notify_one`) the second of two loops slept
        // out its pause, and a no-change resync took 65 ms instead of 28.
        self.wake.notify_waiters();
    }

    fn get(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Waits `idle`, or less if the cycle ends meanwhile.
    async fn pause(&self, idle: Duration) {
        let notified = self.wake.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a `set` between the two still wakes it.
        notified.as_mut().enable();
        if self.get() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(idle) => {}
            () = notified => {}
        }
    }
}

/// Search indexing beside a cycle: the store indexes what the cycle's batches noted while
/// the next batches are written (SQLite: in its companion file, PostgreSQL: in transactions
/// of its own; so on the second core), and catches up once the cycle has ended, so a
/// finished cycle leaves the index current (a shutdown leaves the rest to the next cycle or
/// search). Its errors cost only the index's freshness (a search catches up by itself): they
/// are logged, never the cycle's.
///
/// It runs [`INDEX_LANES`] indexing loops side by side. PostgreSQL's steps take disjoint notes
/// (`SKIP LOCKED`), so once the writes end both cores index: a first sync of 10,000 messages
/// spent 7.6 s catching up after its last batch with one loop. SQLite's companion runs one
/// step at a time (the second loop waits for the first), which changes nothing there.
async fn index_beside<L: CycleLog + ?Sized>(log: &L, done: &CycleDone, cancel: &CancellationToken) {
    let lanes =
        futures::future::join_all((0..INDEX_LANES).map(|_| index_lane(log, done, cancel))).await;
    let notes: u64 = lanes.iter().map(|l| l.notes).sum();
    let steps: u32 = lanes.iter().map(|l| l.steps).sum();
    if !lanes.iter().all(|l| l.caught_up) {
        return;
    }
    if let Err(e) = log.collect_noted().await {
        tracing::debug!(error = %e, "Could not drop the notes the search index has passed.");
    }
    if notes > 0 {
        tracing::debug!(
            notes,
            steps,
            after_cycle = ?lanes.iter().filter_map(|l| l.tail).min().map(|t| t.elapsed()),
            "Search index caught up."
        );
    }
}

/// How many indexing loops [`index_beside`] runs.
const INDEX_LANES: usize = 2;

/// What one indexing loop did.
struct Lane {
    notes: u64,
    steps: u32,
    /// When it saw the cycle finished.
    tail: Option<tokio::time::Instant>,
    /// Whether it stopped because the index was current (not on an error or a shutdown).
    caught_up: bool,
}

async fn index_lane<L: CycleLog + ?Sized>(
    log: &L,
    done: &CycleDone,
    cancel: &CancellationToken,
) -> Lane {
    let mut lane = Lane {
        notes: 0,
        steps: 0,
        tail: None,
        caught_up: false,
    };
    loop {
        let finished = done.get();
        if finished && lane.tail.is_none() {
            lane.tail = Some(tokio::time::Instant::now());
        }
        match log.index_noted(INDEX_NOTES).await {
            Ok(0) if finished => {
                lane.caught_up = true;
                return lane;
            }
            Ok(0) => done.pause(INDEX_IDLE).await,
            Ok(n) => {
                lane.notes += n;
                lane.steps += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Search indexing failed; a search will catch up.");
                if finished {
                    return lane;
                }
                done.pause(Duration::from_secs(1)).await;
            }
        }
        if finished && cancel.is_cancelled() {
            return lane;
        }
    }
}

/// The worker loop. Returns when `cancel` fires.
///
/// Its span is attached with `instrument`, not `span.enter()`: a guard held across `.await`
/// would leave the span entered on whatever the thread runs while the loop is suspended.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "account", skip_all, fields(id = %account))]
pub async fn run<D: AccountDriver + ?Sized, L: CycleLog + ?Sized>(
    log: &L,
    account: AccountId,
    driver: &mut D,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    events: broadcast::Sender<EngineEvent>,
    mut policy: WorkerPolicy,
) {
    let mut just_resynced = false;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let cycle_started = tokio::time::Instant::now();
        // The cycle is not raced with `cancel`: it watches the token itself and stops after the
        // batch in progress commits, so a shutdown never tears a transaction.
        let res = run_cycle(log, account, driver, &cancel, &events).await;
        let wait = match res {
            Ok(counts) => {
                policy.backoff.reset();
                just_resynced = false;
                tracing::info!(
                    added = counts.emails_added,
                    updated = counts.emails_updated,
                    removed = counts.emails_removed,
                    flushed = counts.changes_flushed,
                    "Cycle finished."
                );
                None
            }
            Err(e) => {
                let d = classify(&e);
                tracing::warn!(error = %e, disposition = ?d, "Cycle failed.");
                match d {
                    Disposition::Resync if !just_resynced => {
                        just_resynced = true;
                        if let Err(e) = driver.reset_checkpoints().await {
                            tracing::warn!(error = %e, "Could not drop checkpoints.");
                        }
                        // Resync right away, once; a second failure backs off.
                        continue;
                    }
                    Disposition::Retry { after } => Some(policy.backoff.next_delay(after)),
                    // Unreachable: try again soon, so the return of the server is noticed
                    // within seconds even after a long outage.
                    Disposition::Offline => {
                        Some(policy.backoff.next_delay_capped(policy.offline_backoff_cap))
                    }
                    _ => Some(policy.backoff.next_delay(None)),
                }
            }
        };
        if cancel.is_cancelled() {
            break;
        }
        match wait {
            // After a success: wait for the server (IDLE / push / poll), a wake, or shutdown.
            None => {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = wake.notified() => {}
                    r = driver.wait_for_change() => {
                        if let Err(e) = r {
                            // A broken IDLE/push just means: run a cycle now; it reconnects.
                            tracing::debug!(error = %e, "Wait ended with an error.");
                        }
                        tokio::select! {
                            biased;
                            () = cancel.cancelled() => break,
                            () = wake.notified() => {}
                            () = tokio::time::sleep_until(cycle_started + policy.min_cycle_interval) => {}
                        }
                    }
                }
            }
            // After a failure: back off, unless woken or shut down.
            Some(delay) => {
                tracing::info!(delay_s = delay.as_secs(), "Backing off.");
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    tracing::info!("Worker stopped.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    /// An in-memory cycle log: (started, finished ok?, error).
    type Row = (bool, Option<Result<(), String>>);
    #[derive(Default)]
    struct MemLog(Mutex<Vec<Row>>);

    #[async_trait::async_trait]
    impl CycleLog for MemLog {
        async fn start(&self, _: AccountId) -> Result<i64, EngineError> {
            let mut v = self.0.lock().expect("lock");
            v.push((true, None));
            Ok(v.len() as i64 - 1)
        }
        async fn finish(
            &self,
            h: i64,
            o: Result<(), &str>,
            _: SyncCounts,
        ) -> Result<(), EngineError> {
            let mut v = self.0.lock().expect("lock");
            if let Some(row) = v.get_mut(h as usize) {
                row.1 = Some(o.map_err(str::to_owned));
            }
            Ok(())
        }
    }

    const ACCOUNT: AccountId = AccountId(1);

    /// A subscriber that falls behind is told so (then reads on), never silently skipped.
    #[tokio::test]
    async fn a_slow_subscriber_gets_lagged() {
        let (tx, rx) = broadcast::channel(2);
        let mut events = Events::new(rx);
        for _ in 0..5 {
            let _ = tx.send(EngineEvent::LocalChange { account: ACCOUNT });
        }
        assert_eq!(events.recv().await, Some(EngineEvent::Lagged { missed: 3 }));
        assert_eq!(
            events.recv().await,
            Some(EngineEvent::LocalChange { account: ACCOUNT })
        );
        drop(tx);
        assert_eq!(
            events.recv().await,
            Some(EngineEvent::LocalChange { account: ACCOUNT })
        );
        assert_eq!(events.recv().await, None);
    }

    /// Store writes inside a cycle come out as events with their ids, in the documented order.
    #[tokio::test]
    async fn writes_in_a_scope_become_events_with_ids() {
        let (tx, mut rx) = broadcast::channel(16);
        with_events(&tx, ACCOUNT, async {
            // What the store's write functions record (they are tested with the store).
            mailsync_store::changes::record_queue(ChangeId(7), QueueFate::Done);
        })
        .await;
        assert_eq!(
            rx.recv().await.ok(),
            Some(EngineEvent::Change {
                account: ACCOUNT,
                change: ChangeId(7),
                fate: QueueFate::Done
            })
        );
        assert!(rx.try_recv().is_err(), "nothing else was written");
    }

    fn offline() -> EngineError {
        EngineError::Smtp(crate::smtp::SmtpError::Connect {
            server: "h:1".into(),
            reason: "refused".into(),
        })
    }

    fn transient() -> EngineError {
        EngineError::Smtp(crate::smtp::SmtpError::Other {
            reason: "try later".into(),
        })
    }

    /// A 6-minute outage (paused time): waits never exceed the offline cap, and the first cycle
    /// after the server returns comes within that cap.
    #[tokio::test(start_paused = true)]
    async fn an_outage_is_noticed_within_seconds_of_its_end() {
        let account = ACCOUNT;
        let log = Arc::new(MemLog::default());
        let t0 = Instant::now();
        let outage = Duration::from_secs(360);
        let starts = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        let mut driver = MockAccountDriver::new();
        let s2 = starts.clone();
        driver.expect_cycle().returning(move |_| {
            s2.lock().expect("lock").push(Instant::now());
            if Instant::now() - t0 < outage {
                Err(offline())
            } else {
                Ok(SyncCounts::default())
            }
        });
        driver.expect_wait_for_change().returning(|| Ok(()));
        let cancel = CancellationToken::new();
        let (tx, mut rx) = broadcast::channel(256);
        let l2 = log.clone();
        let c3 = cancel.clone();
        let policy = WorkerPolicy::default();
        let cap = policy.offline_backoff_cap;
        let handle = tokio::spawn(async move {
            run(
                &*l2,
                account,
                &mut driver,
                Arc::new(Notify::new()),
                c3,
                tx,
                policy,
            )
            .await;
        });
        loop {
            match rx.recv().await {
                Ok(EngineEvent::Synced { .. }) => break,
                Ok(_) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
        cancel.cancel();
        handle.await.expect("worker");
        let starts = starts.lock().expect("lock").clone();
        for w in starts.windows(2) {
            assert!(w[1] - w[0] <= cap, "a wait of {:?}", w[1] - w[0]);
        }
        let back = *starts.last().expect("a cycle");
        assert!(
            back - (t0 + outage) <= cap,
            "noticed after {:?}",
            back - (t0 + outage)
        );
    }

    /// Failures back off 5, 10, 20 s (paused time), a success resets, and each cycle is logged.
    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_then_resets_and_logs_every_cycle() {
        let log = Arc::new(MemLog::default());
        let account = ACCOUNT;
        let starts = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        let calls = Arc::new(AtomicU32::new(0));
        let mut driver = MockAccountDriver::new();
        let (s2, c2) = (starts.clone(), calls.clone());
        driver.expect_cycle().returning(move |_| {
            s2.lock().expect("lock").push(Instant::now());
            match c2.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err(transient()),
                _ => Ok(SyncCounts {
                    emails_added: 1,
                    ..Default::default()
                }),
            }
        });
        // The mock's server wait returns at once: the worker then simply runs another cycle.
        driver.expect_wait_for_change().returning(|| Ok(()));
        let cancel = CancellationToken::new();
        let (tx, mut rx) = broadcast::channel(16);
        let wake = Arc::new(Notify::new());
        let l2 = log.clone();
        let c3 = cancel.clone();
        let handle = tokio::spawn(async move {
            run(
                &*l2,
                account,
                &mut driver,
                wake,
                c3,
                tx,
                WorkerPolicy::default(),
            )
            .await;
        });
        // Wait for the success event.
        loop {
            match rx.recv().await {
                Ok(EngineEvent::Synced { .. }) => break,
                Ok(_) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
        cancel.cancel();
        handle.await.expect("worker");
        let starts = starts.lock().expect("lock").clone();
        let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(&gaps[..3], &[5, 10, 20], "gaps {gaps:?}");
        let rows = log.0.lock().expect("lock").clone();
        let errors = rows.iter().filter(|r| matches!(r.1, Some(Err(_)))).count();
        let oks = rows.iter().filter(|r| matches!(r.1, Some(Ok(())))).count();
        assert_eq!(errors, 3);
        assert!(oks >= 1);
        assert!(
            rows.iter().all(|r| r.1.is_some()),
            "every started cycle finished"
        );
    }

    /// A wake skips the backoff wait.
    #[tokio::test(start_paused = true)]
    async fn wake_skips_the_backoff() {
        let log = Arc::new(MemLog::default());
        let account = ACCOUNT;
        let calls = Arc::new(AtomicU32::new(0));
        let c2 = calls.clone();
        let mut driver = MockAccountDriver::new();
        driver.expect_cycle().returning(move |_| {
            c2.fetch_add(1, Ordering::SeqCst);
            Err(offline())
        });
        driver.expect_wait_for_change().returning(|| Ok(()));
        let cancel = CancellationToken::new();
        let (tx, _rx) = broadcast::channel(64);
        let wake = Arc::new(Notify::new());
        let (l2, c3, w2) = (log.clone(), cancel.clone(), wake.clone());
        let handle = tokio::spawn(async move {
            run(
                &*l2,
                account,
                &mut driver,
                w2,
                c3,
                tx,
                WorkerPolicy::default(),
            )
            .await;
        });
        // Let the first cycle fail; the worker now sleeps 5 s. Advance only 1 s, then wake.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let t0 = Instant::now();
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "woken cycle ran at once");
        assert!(Instant::now() - t0 < Duration::from_secs(1));
        cancel.cancel();
        handle.await.expect("worker");
    }

    /// Shutdown stops a worker that is between cycles within a second.
    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_a_waiting_worker_promptly() {
        let log = Arc::new(MemLog::default());
        let account = ACCOUNT;
        let mut driver = MockAccountDriver::new();
        driver
            .expect_cycle()
            .returning(|_| Ok(SyncCounts::default()));
        driver.expect_wait_for_change().returning(|| Ok(()));
        let cancel = CancellationToken::new();
        let (tx, mut rx) = broadcast::channel(1024);
        let wake = Arc::new(Notify::new());
        let (l2, c3) = (log.clone(), cancel.clone());
        let handle = tokio::spawn(async move {
            run(
                &*l2,
                account,
                &mut driver,
                wake,
                c3,
                tx,
                WorkerPolicy::default(),
            )
            .await;
        });
        let _ = rx.recv().await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), handle)
            .await
            .expect("stopped within 1 s")
            .expect("worker");
    }
}
