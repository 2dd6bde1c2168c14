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
}

struct WorkerHandle {
    wake: Arc<Notify>,
    cancel: CancellationToken,
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
                .with_watch(policy.imap_watch()),
        ),
    }
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
                tracker: TaskTracker::new(),
                root: CancellationToken::new(),
                policy,
                fetcher: crate::fetcher::Fetcher::new(),
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
        let cycle = worker::run_cycle(
            self.store(),
            id,
            driver.as_mut(),
            &cancel,
            &self.inner.events,
        );
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
                let work = worker::run(
                    &store,
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

    /// Creates, renames/moves, deletes or (un)subscribes a mailbox on the server now (online
    /// only), then runs a cycle (or asks the lease holder for one) so the store follows.
    /// Returns the mailbox's row after the cycle (`None` after a delete, or when the cycle was
    /// delegated to another engine).
    pub async fn manage_mailbox(
        &self,
        account: AccountId,
        action: crate::MailboxAction,
    ) -> Result<Option<mailsync_store::mailboxes::Mailbox>, EngineError> {
        let acc = accounts::get(self.store().conn(), account).await?;
        let remote = crate::mailbox_admin::run(self.store(), &acc, &action).await?;
        self.sync_now(account).await?;
        Ok(match remote {
            Some(r) => {
                mailsync_store::mailboxes::find_by_remote_id(self.store().conn(), account, &r)
                    .await?
            }
            None => None,
        })
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
        let mut out = Vec::new();
        for a in accounts::list(c).await? {
            out.push(AccountStatus {
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
