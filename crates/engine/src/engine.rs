//! The public API for apps: accounts, workers (start, wake, stop, shutdown), local changes and
//! sends through the outbox, bodies on demand, status and a stream of change events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailsync_outbox::{Change, Enqueued, Outbox, OutgoingMessage, RetryPolicy};
use mailsync_store::accounts::{self, Account, NewAccount};
use mailsync_store::bodies::{self, Body};
use mailsync_store::sync_log::{self, SyncCounts, SyncLogEntry};
use mailsync_store::{AccountId, AccountKind, EmailId, Store, emails, leases, queue};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::EngineError;
use crate::search::SearchOutcome;
use crate::worker::{self, AccountDriver, EngineEvent, Events, WorkerPolicy};

/// Per-account status for `mailsync status` and UIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatus {
    /// The account.
    pub account: Account,
    /// The latest finished cycle.
    pub last_sync: Option<SyncLogEntry>,
    /// Queued changes.
    pub pending: u64,
    /// Evicted changes waiting for the user.
    pub failed: u64,
    /// Whether a worker runs for it in this process.
    pub running: bool,
    /// The engine (daemon) holding its lease now, and since when (`None`: nobody).
    pub held_by: Option<(String, Option<chrono::DateTime<chrono::Utc>>)>,
}

struct WorkerHandle {
    wake: Arc<Notify>,
    cancel: CancellationToken,
    /// When it started (a fleet daemon gives up its newest accounts first).
    since: tokio::time::Instant,
    /// Started by the fleet coordinator, whose batched heartbeat holds its lease.
    fleet: bool,
    /// Tells this handle from a later one for the same account.
    generation: u64,
}

/// What [`Engine::sync_now`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncNow {
    /// Ran the cycle here.
    Ran(SyncCounts),
    /// Another engine holds the account's lease (a daemon): it was asked to run a cycle now.
    Delegated {
        /// The lease's owner.
        owner: String,
    },
}

struct Inner {
    /// This engine's name as a lease owner.
    owner: String,
    /// Whether the wake-request poller runs.
    polling: std::sync::atomic::AtomicBool,
    store: Store,
    outbox: Arc<Outbox>,
    events: broadcast::Sender<EngineEvent>,
    workers: Mutex<HashMap<AccountId, WorkerHandle>>,
    /// Fleet workers whose task has not ended yet (still finishing a batch after a stop):
    /// the coordinator takes none of these again until it has.
    fleet_busy: Mutex<std::collections::HashSet<AccountId>>,
    generation: std::sync::atomic::AtomicU64,
    tracker: TaskTracker,
    root: CancellationToken,
    policy: WorkerPolicy,
    /// On-demand downloads: one connection per account, the parts cache.
    fetcher: crate::fetcher::Fetcher,
}

/// The sync engine. Cheap to clone; all clones share the workers.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Builds the protocol driver of an account.
pub fn driver_for(
    store: &Store,
    outbox: &Arc<Outbox>,
    account: Account,
    policy: &WorkerPolicy,
) -> Box<dyn AccountDriver> {
    match account.kind {
        AccountKind::Jmap => Box::new(
            crate::jmap_driver::JmapDriver::new(store.clone(), outbox.clone(), account)
                .with_poll_interval(policy.poll_interval),
        ),
        AccountKind::Imap => Box::new(
            crate::imap_driver::ImapDriver::new(store.clone(), outbox.clone(), account)
                .with_watch(policy.imap_watch())
                .with_host_cap(policy.host_cap.clone()),
        ),
    }
}

/// Heartbeats the engine's row in `sync_daemons`.
async fn leases_heartbeat(engine: &Engine) -> Result<(), EngineError> {
    Ok(mailsync_store::daemons::heartbeat(
        engine.store().conn(),
        engine.owner(),
        engine.inner.policy.lease_ttl,
        mailsync_store::now(),
    )
    .await?)
}

impl Engine {
    /// An engine over an opened store.
    pub fn new(store: Store) -> Self {
        Self::with_policy(store, WorkerPolicy::default())
    }

    /// An engine with a custom worker timing policy.
    pub fn with_policy(store: Store, policy: WorkerPolicy) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                owner: crate::lease::owner_name(),
                polling: std::sync::atomic::AtomicBool::new(false),
                // Big batches: an executor groups a batch's flag changes into UID sets, so 1,000
                // "mark read" changes go out as one UID STORE instead of ten.
                outbox: Arc::new(
                    Outbox::new(store.clone())
                        .with_policy(RetryPolicy::default().with_batch_size(1000)),
                ),
                store,
                events,
                workers: Mutex::new(HashMap::new()),
                fleet_busy: Mutex::new(std::collections::HashSet::new()),
                generation: std::sync::atomic::AtomicU64::new(0),
                tracker: TaskTracker::new(),
                root: CancellationToken::new(),
                fetcher: crate::fetcher::Fetcher::new().with_host_cap(policy.host_cap.clone()),
                policy,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.inner.outbox
    }

    /// Change events with ids (see [`EngineEvent`]) for a UI to redraw what changed: emails
    /// and mailboxes written, queued changes' fates, cycles. A subscriber that falls more than
    /// 1,024 events behind gets [`EngineEvent::Lagged`] instead of silent loss.
    pub fn subscribe(&self) -> Events {
        Events::new(self.inner.events.subscribe())
    }

    /// Tests an account's settings: resolves the secret (or obtains an OAuth 2 access token)
    /// and logs in (IMAP, and SMTP when configured) or fetches the session (JMAP). Nothing is
    /// stored. Returns how it authenticated, e.g. `IMAP OAUTHBEARER, SMTP XOAUTH2` or
    /// `JMAP Bearer`.
    pub async fn test_account(&self, account: &Account) -> Result<String, EngineError> {
        Self::test_login(account, true).await
    }

    /// The login test; `account add` leaves SMTP out (a send server down for a while must not
    /// keep an account from being added: sends wait in the outbox).
    async fn test_login(account: &Account, smtp: bool) -> Result<String, EngineError> {
        match account.kind {
            AccountKind::Jmap => crate::jmap_driver::connect(account).await.map(|_| {
                if account.oauth.is_some() {
                    "JMAP Bearer".to_owned()
                } else {
                    "JMAP Basic".to_owned()
                }
            }),
            AccountKind::Imap => crate::imap_driver::test(account, smtp).await,
        }
    }

    /// Tests the settings, then stores the account. Stores nothing when the test fails.
    pub async fn add_account(&self, new: NewAccount) -> Result<Account, EngineError> {
        self.add_account_with(new, None).await
    }

    /// [`Engine::add_account`] with OAuth 2 settings: the account's secret reference is then
    /// its refresh token's. Stores nothing when the test fails (no token is ever stored).
    pub async fn add_account_with(
        &self,
        new: NewAccount,
        oauth: Option<accounts::OAuth>,
    ) -> Result<Account, EngineError> {
        if accounts::find_by_name(self.store().conn(), &new.name)
            .await?
            .is_some()
        {
            // Checked before the connection test so a taken name fails fast, with the store's
            // own typed error (the same one `accounts::create` would return).
            return Err(mailsync_store::StoreError::AlreadyExists {
                what: "account",
                key: new.name,
            }
            .into());
        }
        let candidate = Account {
            id: AccountId(0),
            name: new.name.clone(),
            kind: new.kind,
            email: new.email.clone(),
            display_name: new.display_name.clone(),
            username: new.username.clone(),
            secret_ref: new.secret_ref.clone(),
            imap: new.imap.clone(),
            smtp: new.smtp.clone(),
            jmap_session_url: new.jmap_session_url.clone(),
            ca_file: new.ca_file.clone(),
            allow_plaintext: new.allow_plaintext,
            body_policy: new.body_policy,
            oauth: oauth.clone(),
            created_at: mailsync_store::now(),
            updated_at: mailsync_store::now(),
        };
        Self::test_login(&candidate, false).await?;
        Ok(accounts::create_with(self.store().conn(), new, oauth).await?)
    }

    /// Changes an account's settings (servers, security, user, secret reference, body policy,
    /// ...; not its id, name or kind) and keeps all of its data. The new settings are tested
    /// first; when the test fails nothing is stored. A worker running for the account is
    /// restarted with them, and the on-demand connection is reopened.
    pub async fn edit_account(&self, edited: Account) -> Result<Account, EngineError> {
        let current = accounts::get(self.store().conn(), edited.id).await?;
        if current.kind != edited.kind || current.name != edited.name {
            return Err(EngineError::Config(
                "an account's name and kind (IMAP/JMAP) cannot be changed; add a new account"
                    .into(),
            ));
        }
        self.test_account(&edited).await?;
        let stored = accounts::update(self.store().conn(), &edited).await?;
        self.inner.fetcher.forget(stored.id);
        if self.has_worker(stored.id) {
            self.stop(stored.id);
            self.start(stored.clone());
        }
        Ok(stored)
    }

    /// Stops the account's worker and deletes the account with all its data.
    pub async fn remove_account(&self, id: AccountId) -> Result<(), EngineError> {
        self.stop(id);
        self.inner.fetcher.forget(id);
        Ok(accounts::delete(self.store().conn(), id).await?)
    }

    /// This engine's name as a lease owner.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Runs one full cycle for an account (flush, sync), recorded in the sync log, holding the
    /// account's lease. [`EngineError::LeaseHeld`] when another engine holds it.
    pub async fn sync_once(&self, id: AccountId) -> Result<SyncCounts, EngineError> {
        let account = accounts::get(self.store().conn(), id).await?;
        let policy = &self.inner.policy;
        let owner = &self.inner.owner;
        if let Some(holder) =
            crate::lease::try_acquire(self.store(), id, owner, policy.lease_ttl).await?
        {
            return Err(EngineError::LeaseHeld {
                account: id,
                owner: holder,
            });
        }
        let mut driver = driver_for(self.store(), self.outbox(), account, policy);
        let cancel = self.inner.root.child_token();
        let log = crate::lease::OwnedLog {
            store: self.store(),
            owner,
        };
        let cycle = worker::run_cycle(&log, id, driver.as_mut(), &cancel, &self.inner.events);
        let (res, lost) = crate::lease::hold(self.store(), id, owner, policy, &cancel, cycle).await;
        if lost {
            Err(EngineError::LeaseLost(id))
        } else {
            res
        }
    }

    /// Runs a cycle here, or, when another engine (a daemon) holds the account's lease, asks
    /// it to run one now instead of racing it.
    pub async fn sync_now(&self, id: AccountId) -> Result<SyncNow, EngineError> {
        match self.sync_once(id).await {
            Err(EngineError::LeaseHeld { owner, .. }) => {
                leases::request_wake(self.store().conn(), id, mailsync_store::now()).await?;
                tracing::info!(account = %id, %owner, "Asked the lease holder to sync now.");
                Ok(SyncNow::Delegated { owner })
            }
            other => other.map(SyncNow::Ran),
        }
    }

    /// Polls the database for wake requests addressed to this engine's leases (changes made by
    /// other processes) and wakes the workers, every [`WorkerPolicy::wake_poll`]. Started with
    /// the first worker; one indexed query per poll.
    fn poll_wakes(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.polling.swap(true, Ordering::SeqCst) {
            return;
        }
        let engine = self.clone();
        let cancel = self.inner.root.clone();
        let every = self.inner.policy.wake_poll;
        self.inner.tracker.spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
                match leases::take_wakes(engine.store().conn(), engine.owner()).await {
                    Ok(ids) => {
                        for id in ids {
                            tracing::info!(account = %id, "Woken by another process.");
                            engine.wake(id);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "Wake poll failed."),
                }
            }
        });
    }

    /// Starts a worker for an account (no-op when one runs). The worker holds the account's
    /// lease while it runs (waiting for it while another engine holds it) and renews it.
    pub fn start(&self, account: Account) {
        let id = account.id;
        let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        if workers.contains_key(&id) {
            return;
        }
        let wake = Arc::new(Notify::new());
        let cancel = self.inner.root.child_token();
        workers.insert(
            id,
            WorkerHandle {
                wake: wake.clone(),
                cancel: cancel.clone(),
                since: tokio::time::Instant::now(),
                fleet: false,
                generation: self.next_generation(),
            },
        );
        let store = self.store().clone();
        let outbox = self.outbox().clone();
        let events = self.inner.events.clone();
        let policy = self.inner.policy.clone();
        let owner = self.inner.owner.clone();
        self.inner.tracker.spawn(async move {
            loop {
                // Wait for the lease: another engine may work on this account.
                loop {
                    match crate::lease::try_acquire(&store, id, &owner, policy.lease_ttl).await {
                        Ok(None) => break,
                        Ok(Some(holder)) => {
                            tracing::debug!(account = %id, %holder, "Lease held elsewhere; waiting.");
                        }
                        Err(e) => tracing::warn!(account = %id, error = %e, "Cannot take the lease."),
                    }
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                let lost = cancel.child_token();
                let mut driver = driver_for(&store, &outbox, account.clone(), &policy);
                let log = crate::lease::OwnedLog {
                    store: &store,
                    owner: &owner,
                };
                let work = worker::run(
                    &log,
                    id,
                    driver.as_mut(),
                    wake.clone(),
                    lost.clone(),
                    events.clone(),
                    policy.clone(),
                );
                let ((), was_lost) =
                    crate::lease::hold(&store, id, &owner, &policy, &lost, work).await;
                if !was_lost || cancel.is_cancelled() {
                    return;
                }
            }
        });
        self.poll_wakes();
    }

    fn next_generation(&self) -> u64 {
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs this engine as one daemon of a fleet sharing the database's accounts (all of
    /// them, or `only` those): a coordinator heartbeats the daemon and its leases in batches,
    /// takes its share of the free accounts, gives up the excess when others join, takes over
    /// the accounts of daemons that died, and starts a worker for each account it holds, whose
    /// first cycle passes the start-up [`crate::fleet::Gate`]. See [`crate::fleet`].
    pub fn start_fleet(&self, only: Option<Vec<AccountId>>, fleet: crate::fleet::FleetPolicy) {
        let engine = self.clone();
        let cancel = self.inner.root.clone();
        let gate = Arc::new(crate::fleet::Gate::new(&fleet));
        self.inner.tracker.spawn(async move {
            let policy = engine.inner.policy.clone();
            let mut last_ok = tokio::time::Instant::now();
            // Register, then let daemons started together see each other before taking any.
            if let Err(e) = leases_heartbeat(&engine).await {
                tracing::warn!(error = %e, "Fleet heartbeat failed.");
            }
            let settle = policy.lease_renew.min(Duration::from_secs(1));
            let mut wait = settle;
            loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = policy.lease_renew;
                match engine.fleet_tick(only.as_deref(), &gate).await {
                    Ok(()) => last_ok = tokio::time::Instant::now(),
                    Err(e) => {
                        tracing::warn!(error = %e, "Fleet heartbeat failed.");
                        // Stop before the leases can expire, so no one else works beside us.
                        if last_ok.elapsed() + policy.lease_renew >= policy.lease_ttl {
                            tracing::warn!(
                                "Leases not renewed for too long; stopping every worker."
                            );
                            for id in engine.fleet_workers() {
                                engine.stop(id);
                            }
                        }
                        wait = policy.lease_renew.min(Duration::from_secs(1));
                    }
                }
            }
            if let Err(e) =
                mailsync_store::daemons::remove(engine.store().conn(), engine.owner()).await
            {
                tracing::debug!(error = %e, "Could not remove the daemon row; it expires.");
            }
        });
        self.poll_wakes();
    }

    /// The live daemons of the fleet on this database (this one included once started).
    pub async fn daemons(&self) -> Result<Vec<mailsync_store::daemons::Daemon>, EngineError> {
        Ok(mailsync_store::daemons::live(self.store().conn(), mailsync_store::now()).await?)
    }

    /// Registers this engine as a live daemon now (the coordinator keeps it so); for a
    /// single-daemon check before starting.
    pub async fn register_daemon(&self) -> Result<(), EngineError> {
        leases_heartbeat(self).await
    }

    /// Fleet workers running here, newest first.
    fn fleet_workers(&self) -> Vec<AccountId> {
        let workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(tokio::time::Instant, AccountId)> = workers
            .iter()
            .filter(|(_, w)| w.fleet)
            .map(|(id, w)| (w.since, *id))
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// One coordinator tick (see [`crate::fleet`]).
    async fn fleet_tick(
        &self,
        only: Option<&[AccountId]>,
        gate: &Arc<crate::fleet::Gate>,
    ) -> Result<(), EngineError> {
        let c = self.store().conn();
        let policy = &self.inner.policy;
        let owner = self.owner();
        let now = mailsync_store::now();
        mailsync_store::daemons::heartbeat(c, owner, policy.lease_ttl, now).await?;
        let held = leases::renew_all(c, owner, policy.lease_ttl, now).await?;
        let mut running = self.fleet_workers();
        running.retain(|id| {
            let ok = held.binary_search(id).is_ok();
            if !ok {
                tracing::warn!(account = %id, "Lease taken by another daemon; stopping.");
                self.stop(*id);
            }
            ok
        });
        let live = mailsync_store::daemons::live(c, now).await?.len();
        let all: HashMap<AccountId, Account> = accounts::list(c)
            .await?
            .into_iter()
            .filter(|a| only.is_none_or(|o| o.contains(&a.id)))
            .map(|a| (a.id, a))
            .collect();
        let share = crate::fleet::share(all.len(), live);
        let plan = crate::fleet::plan(&running, share);
        for id in plan.release {
            tracing::info!(account = %id, share, live, "Giving the account to another daemon.");
            self.stop(id);
        }
        let mut take = plan.take;
        // Free for two expiries: taken whatever the share (nobody else did).
        let orphaned = now - chrono::Duration::from_std(policy.lease_ttl * 2).unwrap_or_default();
        let busy: std::collections::HashSet<AccountId> = self
            .inner
            .fleet_busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for f in leases::free(c, now, u64::MAX).await? {
            let Some(account) = all.get(&f.account_id) else {
                continue;
            };
            let orphan = f.since.is_some_and(|t| t < orphaned);
            if (take == 0 && !orphan) || busy.contains(&f.account_id) {
                continue;
            }
            if crate::lease::try_acquire(self.store(), f.account_id, owner, policy.lease_ttl)
                .await?
                .is_none()
            {
                tracing::info!(account = %f.account_id, share, live, "Took the account.");
                self.start_held(account.clone(), gate.clone());
                take = take.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Starts a fleet worker for an account whose lease this engine holds; the worker releases
    /// it when it stops (a no-op when it was lost to another daemon).
    fn start_held(&self, account: Account, gate: Arc<crate::fleet::Gate>) {
        let id = account.id;
        let wake = Arc::new(Notify::new());
        let cancel = self.inner.root.child_token();
        let generation = self.next_generation();
        {
            let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
            if workers.contains_key(&id) {
                return;
            }
            workers.insert(
                id,
                WorkerHandle {
                    wake: wake.clone(),
                    cancel: cancel.clone(),
                    since: tokio::time::Instant::now(),
                    fleet: true,
                    generation,
                },
            );
        }
        self.inner
            .fleet_busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        let engine = self.clone();
        self.inner.tracker.spawn(async move {
            let store = engine.store();
            let policy = engine.inner.policy.clone();
            let log = crate::lease::OwnedLog {
                store,
                owner: engine.owner(),
            };
            let mut driver = crate::fleet::Gated::new(
                driver_for(store, engine.outbox(), account, &policy),
                gate,
            );
            worker::run(
                &log,
                id,
                &mut driver,
                wake,
                cancel,
                engine.inner.events.clone(),
                policy,
            )
            .await;
            drop(driver);
            if let Err(e) = leases::release(store.conn(), id, engine.owner()).await {
                tracing::warn!(account = %id, error = %e, "Could not release the lease; it expires.");
            }
            {
                let mut workers = engine.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
                if workers.get(&id).is_some_and(|w| w.generation == generation) {
                    workers.remove(&id);
                }
            }
            engine
                .inner
                .fleet_busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    /// Whether a worker runs for the account in this engine.
    fn has_worker(&self, id: AccountId) -> bool {
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id)
    }

    /// Wakes the account's worker here, or asks whichever engine holds its lease (a daemon in
    /// another process) to run a cycle now.
    async fn wake_anywhere(&self, account: AccountId) {
        if self.has_worker(account) {
            self.wake(account);
        } else if let Err(e) =
            leases::request_wake(self.store().conn(), account, mailsync_store::now()).await
        {
            // The change is queued all the same; the daemon's next cycle sends it.
            tracing::warn!(account = %account, error = %e, "Could not ask the daemon to sync now.");
        }
    }

    /// Starts a worker for every account.
    pub async fn start_all(&self) -> Result<usize, EngineError> {
        let all = accounts::list(self.store().conn()).await?;
        let n = all.len();
        for a in all {
            self.start(a);
        }
        Ok(n)
    }

    /// Makes an account's worker skip its wait and run a cycle now.
    pub fn wake(&self, id: AccountId) {
        if let Some(w) = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            w.wake.notify_one();
        }
    }

    /// Stops one account's worker (it finishes the batch in progress).
    pub fn stop(&self, id: AccountId) {
        if let Some(w) = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        {
            w.cancel.cancel();
        }
    }

    /// Stops every worker and waits for them, at most `grace`; after that, the remaining tasks
    /// are dropped (their open transaction rolls back, so nothing half-written remains).
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.root.cancel();
        self.inner.tracker.close();
        let clean = tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok();
        if !clean {
            tracing::warn!(?grace, "Workers did not stop in time.");
        }
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        clean
    }

    /// Applies a local change at once and queues it for the server; wakes the account's worker.
    pub async fn enqueue(
        &self,
        account: AccountId,
        change: Change,
    ) -> Result<Enqueued, EngineError> {
        let e = worker::with_events(
            &self.inner.events,
            account,
            self.outbox().enqueue(account, change),
        )
        .await?;
        let _ = self.inner.events.send(EngineEvent::LocalChange { account });
        self.wake_anywhere(account).await;
        Ok(e)
    }

    /// Applies several local changes of one account in one transaction (all or nothing) and
    /// queues them; wakes the account's worker.
    pub async fn enqueue_all(
        &self,
        account: AccountId,
        changes: Vec<Change>,
    ) -> Result<Vec<Enqueued>, EngineError> {
        let e = worker::with_events(
            &self.inner.events,
            account,
            self.outbox().enqueue_all(account, changes),
        )
        .await?;
        let _ = self.inner.events.send(EngineEvent::LocalChange { account });
        self.wake_anywhere(account).await;
        Ok(e)
    }

    /// Saves a draft (`draft = None`: a new one in the Drafts mailbox) and queues its upload;
    /// saves made before the upload merge into one. Returns the draft's email id.
    pub async fn save_draft(
        &self,
        account: AccountId,
        draft: Option<EmailId>,
        message: OutgoingMessage,
    ) -> Result<EmailId, EngineError> {
        let (id, _) = self.outbox().save_draft(account, draft, message).await?;
        self.local_change(account).await;
        Ok(id)
    }

    /// Discards a draft (removed from the server permanently).
    pub async fn discard_draft(
        &self,
        account: AccountId,
        draft: EmailId,
    ) -> Result<Enqueued, EngineError> {
        let e = self.outbox().discard_draft(account, draft).await?;
        self.local_change(account).await;
        Ok(e)
    }

    /// Sends a draft: its latest content goes through the exactly-once send, and the draft
    /// leaves Drafts (queued together, in one transaction).
    pub async fn send_draft(
        &self,
        account: AccountId,
        draft: EmailId,
    ) -> Result<Enqueued, EngineError> {
        let e = self.outbox().send_draft(account, draft).await?;
        self.local_change(account).await;
        Ok(e)
    }

    async fn local_change(&self, account: AccountId) {
        let _ = self.inner.events.send(EngineEvent::LocalChange { account });
        self.wake_anywhere(account).await;
    }

    /// Queues a message to send; it goes out at the next cycle (now, if a worker runs).
    pub async fn send(
        &self,
        account: AccountId,
        message: OutgoingMessage,
    ) -> Result<Enqueued, EngineError> {
        self.enqueue(account, Change::send(message)).await
    }

    /// Creates, renames/moves, deletes or (un)subscribes a mailbox through the outbox: applied
    /// to the database at once and queued (it survives a crash and is sent by the next cycle,
    /// offline too); the account's worker is woken. Returns the mailbox the change leaves
    /// (`None` after a delete) and what the queue did. A name that exists locally, an invalid
    /// name or an unknown mailbox is refused here and changes nothing.
    pub async fn queue_mailbox(
        &self,
        account: AccountId,
        action: crate::MailboxAction,
    ) -> Result<(Option<mailsync_store::MailboxId>, Enqueued), EngineError> {
        let out = worker::with_events(
            &self.inner.events,
            account,
            self.outbox().manage_mailbox(account, action),
        )
        .await?;
        self.local_change(account).await;
        Ok(out)
    }

    /// [`Engine::queue_mailbox`], then a cycle now (here, or by the daemon holding the lease,
    /// waited for up to 10 s): the server's answer decides. Returns the mailbox as stored
    /// after the cycle (with the server's identity). A refusal is `EngineError::Refused` with
    /// the server's one-line reason (the change is in the failed list and the local change
    /// was reverted); a cycle that could not run (offline) is its error, with the change
    /// still queued.
    pub async fn manage_mailbox(
        &self,
        account: AccountId,
        action: crate::MailboxAction,
    ) -> Result<Option<mailsync_store::mailboxes::Mailbox>, EngineError> {
        let (id, queued) = self.queue_mailbox(account, action).await?;
        let row = match queued.change_id() {
            Some(c) => self
                .outbox()
                .pending(account)
                .await?
                .into_iter()
                .find(|p| p.id == c),
            None => None,
        };
        if let SyncNow::Delegated { .. } = self.sync_now(account).await? {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while let Some(r) = &row {
                let still = self
                    .outbox()
                    .pending(account)
                    .await?
                    .iter()
                    .any(|p| p.id == r.id);
                if !still || std::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        if let Some(r) = &row
            && let Some(reason) = self.eviction_of(account, r).await?
        {
            return Err(EngineError::Refused(reason));
        }
        Ok(match id {
            Some(id) => match mailsync_store::mailboxes::get(self.store().conn(), id).await {
                Ok(m) => Some(m),
                Err(mailsync_store::StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        })
    }

    /// Why a queued change (as listed by [`Outbox::pending`](mailsync_outbox::Outbox::pending)
    /// before a flush) was evicted, if it is in the failed list now (matched by kind and the
    /// time it was queued).
    pub async fn eviction_of(
        &self,
        account: AccountId,
        change: &mailsync_outbox::PendingItem,
    ) -> Result<Option<String>, EngineError> {
        Ok(self
            .outbox()
            .failed(account)
            .await?
            .into_iter()
            .find(|f| f.kind == change.kind && f.created_at == change.created_at)
            .map(|f| f.reason))
    }

    /// The body of an email: cached, or fetched from the server, cached and returned.
    pub async fn body(&self, email: EmailId) -> Result<Body, EngineError> {
        if let Some(b) = bodies::get(self.store().conn(), email).await?
            && !b.truncated
        {
            return Ok(b);
        }
        let e = emails::get(self.store().conn(), email).await?;
        let account = accounts::get(self.store().conn(), e.account_id).await?;
        self.inner
            .fetcher
            .fetch_body(self.store(), &account, email, &e.remote_id)
            .await?;
        bodies::get(self.store().conn(), email)
            .await?
            .ok_or(EngineError::Store(mailsync_store::StoreError::NotFound {
                what: "body on the server for email",
                key: email.to_string(),
            }))
    }

    /// Searches the local index and, with `server`, each account's server too (IMAP
    /// `UID SEARCH`, JMAP `Email/query`; for bodies not cached and mail not synced yet),
    /// merged by email row and marked by origin (see [`crate::search`]). Server hits the
    /// database does not hold are not written by the search: the account is synced once
    /// (`sync_now`; a daemon holding the lease is asked to) so the ordinary sync stores them,
    /// and they are given their row's id when it ran here. A server that cannot be searched
    /// is listed in [`SearchOutcome::failed`] and the other results stand.
    pub async fn search(
        &self,
        account: Option<AccountId>,
        q: &mailsync_store::search::Query,
        server: bool,
        limit: u64,
    ) -> Result<SearchOutcome, EngineError> {
        let local = mailsync_store::search::search(self.store(), account, q, limit).await?;
        let mut found = Vec::new();
        let mut failed = Vec::new();
        if server {
            let targets = match account {
                Some(a) => vec![accounts::get(self.store().conn(), a).await?],
                None => accounts::list(self.store().conn()).await?,
            };
            for acc in targets {
                let hits = match self
                    .inner
                    .fetcher
                    .server_search(self.store(), &acc, q, limit)
                    .await
                {
                    Ok(h) => h,
                    // `in:` names a mailbox of another account: nothing to search here.
                    Err(EngineError::Store(mailsync_store::StoreError::BadQuery { .. }))
                        if account.is_none() =>
                    {
                        continue;
                    }
                    Err(e) if account.is_some() && matches!(e, EngineError::Store(_)) => {
                        return Err(e);
                    }
                    Err(e) => {
                        failed.push((acc.id, e));
                        continue;
                    }
                };
                let hits = self.store_unknown(&acc, hits).await?;
                found.extend(hits.into_iter().map(|h| (acc.id, h)));
            }
        }
        let hits = crate::search::merge(self.store(), local, found, limit).await?;
        Ok(SearchOutcome { hits, failed })
    }

    /// Server hits without a row: one sync of the account stores them (the only write path),
    /// then they are looked up again by their remote id.
    async fn store_unknown(
        &self,
        account: &Account,
        mut hits: Vec<crate::search::ServerHit>,
    ) -> Result<Vec<crate::search::ServerHit>, EngineError> {
        let missing: Vec<String> = hits
            .iter()
            .filter(|h| h.email.is_none())
            .map(|h| h.remote_id.clone())
            .collect();
        if missing.is_empty() {
            return Ok(hits);
        }
        match self.sync_now(account.id).await {
            Ok(SyncNow::Ran(_)) => {}
            Ok(SyncNow::Delegated { .. }) => return Ok(hits),
            Err(e) => {
                tracing::warn!(account = %account.name, error = %e, "Sync for search hits failed.");
                return Ok(hits);
            }
        }
        let ids = emails::ids_by_remote_ids(self.store().conn(), account.id, &missing).await?;
        for h in &mut hits {
            if h.email.is_none() {
                h.email = ids.get(&h.remote_id).copied();
            }
        }
        Ok(hits)
    }

    /// Where downloaded attachment parts are cached (default: `mailsync-parts` in the
    /// system's temporary directory).
    pub fn set_parts_dir(&self, dir: std::path::PathBuf) {
        self.inner.fetcher.set_parts_dir(dir);
    }

    /// The parts cache directory.
    pub fn parts_dir(&self) -> std::path::PathBuf {
        self.inner.fetcher.parts_dir()
    }

    /// How many on-demand connections (bodies, parts) this engine has opened: one per
    /// account while it stays usable.
    pub fn on_demand_connections(&self) -> u64 {
        self.inner.fetcher.connects()
    }

    /// Writes attachment `part` of an email (its part id or blob id, as listed in the
    /// `attachments` table) to the file `dest`, decoded: from the parts cache, else downloaded
    /// over the account's on-demand connection into the cache first, streaming (memory stays
    /// bounded whatever the size). `dest` is checked writable before any download and is
    /// written whole or not at all.
    pub async fn save_attachment(
        &self,
        email: EmailId,
        part: &str,
        dest: &std::path::Path,
    ) -> Result<crate::fetcher::SavedPart, EngineError> {
        self.inner
            .fetcher
            .save_part(self.store(), email, part, dest)
            .await
    }

    /// Status of every account.
    pub async fn status(&self) -> Result<Vec<AccountStatus>, EngineError> {
        let c = self.store().conn();
        let running: Vec<AccountId> = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        let now = mailsync_store::now();
        let held: HashMap<AccountId, (String, Option<chrono::DateTime<chrono::Utc>>)> =
            leases::all(c)
                .await?
                .into_iter()
                .filter_map(|l| {
                    let owner = l.holder_at(now)?.to_owned();
                    Some((l.account_id, (owner, l.acquired_at)))
                })
                .collect();
        let mut out = Vec::new();
        for a in accounts::list(c).await? {
            out.push(AccountStatus {
                held_by: held.get(&a.id).cloned(),
                last_sync: sync_log::last_finished(c, a.id).await?,
                pending: queue::count(c, a.id).await?,
                failed: queue::count_failed(c, a.id).await?,
                running: running.contains(&a.id),
                account: a,
            });
        }
        Ok(out)
    }
}
