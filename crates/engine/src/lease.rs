//! Holding an account's lease (see `mailsync_store::leases`) around the work on it: acquire,
//! renew every [`WorkerPolicy::lease_renew`] while the work runs, release when it ends.
//!
//! The heartbeat runs beside the work in the same task (`join!`), not in a spawned one, and
//! never interrupts it: when the lease is lost (renewals failed past the expiry, or another
//! owner took it) it cancels the work's token, and the work stops after its batch in progress.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mailsync_store::{AccountId, Store, leases};
use tokio_util::sync::CancellationToken;

use crate::error::EngineError;
use crate::worker::WorkerPolicy;

/// A lease owner name unique to one engine: host, process id, start time and a counter.
pub fn owner_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "{host}/pid {}/{started}/{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Takes the account's lease for `owner`. `Ok(None)`: held now; `Ok(Some(holder))`: another
/// live owner has it. A busy database is retried briefly.
pub async fn try_acquire(
    store: &Store,
    account: AccountId,
    owner: &str,
    ttl: Duration,
) -> Result<Option<String>, EngineError> {
    let mut attempt = 0u32;
    loop {
        let now = mailsync_store::now();
        match leases::acquire(store.conn(), account, owner, ttl, now).await {
            Ok(true) => return Ok(None),
            Ok(false) => {
                let holder = leases::get(store.conn(), account)
                    .await?
                    .and_then(|l| l.holder_at(now).map(str::to_owned));
                match holder {
                    Some(h) => return Ok(Some(h)),
                    // Expired or released between the two statements: try again.
                    None if attempt < 8 => {}
                    None => return Ok(Some("another engine".into())),
                }
            }
            Err(e) if e.is_transient() && attempt < 8 => {}
            Err(e) => return Err(e.into()),
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
    }
}

/// Runs `work` while holding the (already acquired) lease: renews it every
/// `policy.lease_renew`; when it is lost, cancels `lost` (which `work` must watch). Releases it
/// afterwards unless lost. Returns the work's output and whether the lease was lost.
pub async fn hold<T>(
    store: &Store,
    account: AccountId,
    owner: &str,
    policy: &WorkerPolicy,
    lost: &CancellationToken,
    work: impl Future<Output = T>,
) -> (T, bool) {
    let done = CancellationToken::new();
    let work = async {
        let out = work.await;
        done.cancel();
        out
    };
    let heartbeat = async {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = done.cancelled() => return false,
                () = tokio::time::sleep(policy.lease_renew) => {}
            }
            let now = mailsync_store::now();
            match leases::renew(store.conn(), account, owner, policy.lease_ttl, now).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::warn!(account = %account, "Lease taken by another owner; stopping.");
                    lost.cancel();
                    return true;
                }
                Err(e) if last_ok.elapsed() < policy.lease_ttl => {
                    tracing::warn!(account = %account, error = %e, "Lease heartbeat failed; retrying.");
                }
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "Lease expired without a heartbeat; stopping.");
                    lost.cancel();
                    return true;
                }
            }
        }
    };
    let (out, was_lost) = tokio::join!(work, heartbeat);
    if !was_lost && let Err(e) = leases::release(store.conn(), account, owner).await {
        // It expires on its own.
        tracing::warn!(account = %account, error = %e, "Could not release the lease.");
    }
    (out, was_lost)
}

/// The sync log as an engine writes it: every cycle row names the engine's lease owner, so
/// who synced an account when can be audited (no two owners' cycles of one account overlap).
pub struct OwnedLog<'a> {
    /// The store.
    pub store: &'a Store,
    /// The engine's lease owner name.
    pub owner: &'a str,
}

#[async_trait::async_trait]
impl crate::worker::CycleLog for OwnedLog<'_> {
    async fn start(&self, account: AccountId) -> Result<i64, EngineError> {
        Ok(
            mailsync_store::sync_log::start_by(self.store.conn(), account, Some(self.owner))
                .await?
                .0,
        )
    }
    async fn finish(
        &self,
        handle: i64,
        outcome: Result<(), &str>,
        counts: mailsync_store::sync_log::SyncCounts,
    ) -> Result<(), EngineError> {
        crate::worker::CycleLog::finish(self.store, handle, outcome, counts).await
    }
    async fn index_noted(&self, max_notes: u64) -> Result<u64, EngineError> {
        crate::worker::CycleLog::index_noted(self.store, max_notes).await
    }
    async fn collect_noted(&self) -> Result<(), EngineError> {
        crate::worker::CycleLog::collect_noted(self.store).await
    }
}
