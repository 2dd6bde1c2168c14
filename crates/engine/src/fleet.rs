//! A fleet of daemons sharing one database's accounts through the account leases, and the
//! start-up discipline of a daemon with thousands of accounts.
//!
//! One coordinator per daemon engine ([`crate::Engine::start_fleet`]) runs every
//! [`crate::worker::WorkerPolicy::lease_renew`]:
//!
//! 1. heartbeat the daemon's `sync_daemons` row, then renew **all** its leases in one
//!    statement (`leases::renew_all`); a worker whose lease is missing from the answer was
//!    taken over after an expiry and is stopped. When renewals keep failing, every worker is
//!    stopped before the leases can expire (`ttl - renew` after the last success), so two
//!    daemons never work on one account.
//! 2. its share is `ceil(accounts / live daemons)`; holding more, it stops the workers of the
//!    excess (the most recently taken first), which release their leases when their batch in
//!    progress committed; holding fewer, it takes free accounts (never leased, released, or
//!    expired) up to its share. Accounts free for over two expiries are taken whatever the
//!    share, so none is left behind by a miscount. Releasing only above the share and taking
//!    only below it converges without thrashing.
//!
//! A daemon that dies stops heartbeating: its leases and its row expire after
//! `lease_ttl`, the survivors' shares grow and they take its accounts at their next tick
//! (takeover within `lease_ttl + lease_renew`). A daemon that joins is counted at once and the
//! others release its share at their next tick.
//!
//! First syncs are gated ([`Gate`]): at most [`FleetPolicy::max_first_syncs`] run at once, and
//! new connections start at most one per [`FleetPolicy::connect_interval`], so a daemon taking
//! thousands of accounts does not open thousands of connections in the same second.

use std::sync::Arc;
use std::time::Duration;

use mailsync_store::sync_log::SyncCounts;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::EngineError;
use crate::worker::AccountDriver;

/// How a daemon paces its workers' first cycles.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FleetPolicy {
    /// First syncs running at once (later cycles are not limited).
    pub max_first_syncs: usize,
    /// Least time between two first-cycle starts (each opens a connection).
    pub connect_interval: Duration,
}

impl Default for FleetPolicy {
    fn default() -> Self {
        Self {
            max_first_syncs: 16,
            connect_interval: Duration::from_millis(5),
        }
    }
}

impl FleetPolicy {
    /// Sets how many first syncs run at once (at least one).
    #[must_use]
    pub fn with_max_first_syncs(mut self, n: usize) -> Self {
        self.max_first_syncs = n.max(1);
        self
    }

    /// Sets the least time between two first-cycle starts.
    #[must_use]
    pub fn with_connect_interval(mut self, d: Duration) -> Self {
        self.connect_interval = d;
        self
    }
}

/// The gate every worker's first cycle passes: a bound on concurrent first syncs and a pace
/// for connection set-up.
#[derive(Debug)]
pub struct Gate {
    running: Arc<Semaphore>,
    next_start: Mutex<tokio::time::Instant>,
    interval: Duration,
}

impl Gate {
    /// A gate for `policy`.
    pub fn new(policy: &FleetPolicy) -> Self {
        Self {
            running: Arc::new(Semaphore::new(policy.max_first_syncs.max(1))),
            next_start: Mutex::new(tokio::time::Instant::now()),
            interval: policy.connect_interval,
        }
    }

    /// Waits for a slot (`None`: cancelled meanwhile). The permit bounds the first sync.
    async fn enter(&self, cancel: &CancellationToken) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            p = self.running.clone().acquire_owned() => p.ok()?,
        };
        let at = {
            let mut next = self.next_start.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            () = tokio::time::sleep_until(at) => Some(permit),
        }
    }
}

/// A driver whose first cycle passes the [`Gate`].
pub(crate) struct Gated {
    inner: Box<dyn AccountDriver>,
    gate: Option<Arc<Gate>>,
}

impl Gated {
    pub(crate) fn new(inner: Box<dyn AccountDriver>, gate: Arc<Gate>) -> Self {
        Self {
            inner,
            gate: Some(gate),
        }
    }
}

#[async_trait::async_trait]
impl AccountDriver for Gated {
    async fn cycle(&mut self, cancel: &CancellationToken) -> Result<SyncCounts, EngineError> {
        match self.gate.take() {
            Some(gate) => {
                let Some(_permit) = gate.enter(cancel).await else {
                    return Err(EngineError::Cancelled);
                };
                self.inner.cycle(cancel).await
            }
            None => self.inner.cycle(cancel).await,
        }
    }

    async fn wait_for_change(&mut self) -> Result<(), EngineError> {
        self.inner.wait_for_change().await
    }

    async fn reset_checkpoints(&mut self) -> Result<(), EngineError> {
        self.inner.reset_checkpoints().await
    }
}

/// A daemon's share of `accounts` among `live` daemons: `ceil(accounts / live)`.
pub fn share(accounts: usize, live: usize) -> usize {
    accounts.div_ceil(live.max(1))
}

/// What the coordinator does at one tick, given what it holds: accounts to give up (the most
/// recently taken first) and how many free ones to take.
pub(crate) fn plan(held_newest_first: &[mailsync_store::AccountId], share: usize) -> Plan {
    if held_newest_first.len() > share {
        Plan {
            release: held_newest_first[..held_newest_first.len() - share].to_vec(),
            take: 0,
        }
    } else {
        Plan {
            release: Vec::new(),
            take: share - held_newest_first.len(),
        }
    }
}

/// See [`plan`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) release: Vec<mailsync_store::AccountId>,
    pub(crate) take: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_store::AccountId;

    #[test]
    fn shares_round_up_and_survive_zero() {
        assert_eq!(share(10, 3), 4);
        assert_eq!(share(9, 3), 3);
        assert_eq!(share(10, 0), 10);
        assert_eq!(share(0, 2), 0);
    }

    /// Three daemons on ten accounts after one joined two: the two release the excess, the
    /// joiner takes it, and then nobody moves (no thrashing).
    #[test]
    fn a_join_converges_and_then_stays_put() {
        let ids = |r: std::ops::Range<i64>| r.map(AccountId).collect::<Vec<_>>();
        let s = share(10, 3);
        let a = plan(&ids(0..5), s);
        let b = plan(&ids(5..10), s);
        assert_eq!(a.release.len() + b.release.len(), 2);
        assert_eq!(a.release, vec![AccountId(0)], "newest first is released");
        let j = plan(&[], s);
        assert_eq!(j.take, 4);
        // After: 4, 4, 2 (the joiner found only two free). Nobody releases any more.
        for held in [ids(0..4), ids(4..8), ids(8..10)] {
            assert!(plan(&held, s).release.is_empty());
        }
    }

    /// The gate lets `max_first_syncs` in at once and paces the starts.
    #[tokio::test(start_paused = true)]
    async fn the_gate_bounds_and_paces_first_syncs() {
        let gate = Arc::new(Gate::new(
            &FleetPolicy::default()
                .with_max_first_syncs(2)
                .with_connect_interval(Duration::from_millis(100)),
        ));
        let cancel = CancellationToken::new();
        let t0 = tokio::time::Instant::now();
        let p1 = gate.enter(&cancel).await.expect("slot");
        let p2 = gate.enter(&cancel).await.expect("slot");
        assert_eq!(tokio::time::Instant::now() - t0, Duration::from_millis(100));
        let g2 = gate.clone();
        let c2 = cancel.clone();
        let third = tokio::spawn(async move { g2.enter(&c2).await.is_some() });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!third.is_finished(), "a third waits while two run");
        drop(p1);
        assert!(third.await.expect("task"));
        drop(p2);
        cancel.cancel();
        assert!(
            gate.enter(&cancel).await.is_none(),
            "a cancelled wait gives no slot"
        );
    }
}
