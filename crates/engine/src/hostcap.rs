//! The optional daemon-wide cap on concurrent IMAP connections per server host, shared by the
//! sync connections (which IDLE or NOTIFY between cycles), the extra IDLE connections and the
//! on-demand connections for bodies and attachments.
//!
//! A deployment behind one address must stay under a provider's per-IP limit, however many
//! accounts it syncs. A connection takes a permit of its host before it connects and gives it
//! back when dropped. Because a waiting connection could otherwise wait forever behind idle
//! ones, a sync connection that is only waiting for news gives its permit up as soon as another
//! connection of the host waits ([`HostCap::contended`]): under a cap below the number of
//! accounts, the accounts take turns (each cycle reconnects) instead of starving. Extra IDLE
//! connections never wait: they are opened only with a free permit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One host's permits and how many connections wait for one.
#[derive(Debug)]
struct Host {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Notified whenever a connection starts waiting.
    contention: Notify,
}

/// The per-host connection cap of one daemon.
#[derive(Debug)]
pub struct HostCap {
    limit: usize,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

/// A place under a host's cap; dropping it frees the place.
#[derive(Debug)]
pub struct HostPermit {
    _permit: OwnedSemaphorePermit,
}

/// Counts a waiter while it waits (also when the wait is dropped).
struct Waiting<'a>(&'a Host);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HostCap {
    /// At most `limit` connections per host at once (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn host(&self, host: &str) -> Arc<Host> {
        let key = host.to_ascii_lowercase();
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Host {
                    permits: Arc::new(Semaphore::new(self.limit)),
                    waiting: AtomicUsize::new(0),
                    contention: Notify::new(),
                })
            })
            .clone()
    }

    /// Waits for a place under `host`'s cap (first come, first served). While it waits, the
    /// host counts as contended, and idle connections of the host give their places up.
    pub async fn acquire(&self, host: &str) -> HostPermit {
        let h = self.host(host);
        if let Ok(p) = h.permits.clone().try_acquire_owned() {
            return HostPermit { _permit: p };
        }
        h.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&h);
        h.contention.notify_waiters();
        match h.permits.clone().acquire_owned().await {
            Ok(p) => HostPermit { _permit: p },
            // The semaphore is never closed; should it be, the cap no longer applies.
            Err(_) => std::future::pending().await,
        }
    }

    /// A place under `host`'s cap if one is free now.
    pub fn try_acquire(&self, host: &str) -> Option<HostPermit> {
        self.host(host)
            .permits
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| HostPermit { _permit: p })
    }

    /// Whether a connection of `host` waits for a place now.
    pub fn is_contended(&self, host: &str) -> bool {
        self.host(host).waiting.load(Ordering::Acquire) > 0
    }

    /// Resolves once a connection of `host` waits for a place (at once if one does).
    pub async fn contended(&self, host: &str) {
        let h = self.host(host);
        loop {
            let notified = h.contention.notified();
            tokio::pin!(notified);
            // Registered before the check, so a waiter arriving in between is not missed.
            notified.as_mut().enable();
            if h.waiting.load(Ordering::Acquire) > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Places of `host` in use now.
    pub fn in_use(&self, host: &str) -> usize {
        self.limit - self.host(host).permits.available_permits()
    }
}

/// A connection and its place under its host's cap (given back when dropped).
pub(crate) struct Capped<C> {
    conn: C,
    _permit: Option<HostPermit>,
    cap: Option<(Arc<HostCap>, String)>,
}

impl<C> Capped<C> {
    /// `conn`, holding `permit` of `host` under `cap` (none: uncapped).
    pub(crate) fn new(
        conn: C,
        permit: Option<HostPermit>,
        cap: Option<(Arc<HostCap>, String)>,
    ) -> Self {
        Self {
            conn,
            _permit: permit,
            cap,
        }
    }

    /// Whether another connection of this one's host waits for a place.
    pub(crate) fn is_contended(&self) -> bool {
        self.cap.as_ref().is_some_and(|(c, h)| c.is_contended(h))
    }

    /// The cap and host this connection counts against (to watch for contention while the
    /// connection itself is borrowed).
    pub(crate) fn handle(&self) -> Option<(Arc<HostCap>, String)> {
        self.cap.clone()
    }
}

/// Resolves once a connection of the handle's host waits for a place (never when uncapped).
pub(crate) async fn contended(handle: Option<(Arc<HostCap>, String)>) {
    match handle {
        Some((c, h)) => c.contended(&h).await,
        None => std::future::pending().await,
    }
}

impl<C> std::ops::Deref for Capped<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> std::ops::DerefMut for Capped<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_cap_holds_per_host_and_waiters_are_seen() {
        let cap = Arc::new(HostCap::new(2));
        let a = cap.acquire("imap.example").await;
        let _b = cap.acquire("IMAP.example").await;
        assert_eq!(cap.in_use("imap.example"), 2);
        assert!(cap.try_acquire("imap.example").is_none());
        assert!(
            cap.try_acquire("other.example").is_some(),
            "hosts are capped separately"
        );
        assert!(!cap.is_contended("imap.example"));
        let c2 = cap.clone();
        let third = tokio::spawn(async move { c2.acquire("imap.example").await });
        tokio::time::timeout(Duration::from_secs(5), cap.contended("imap.example"))
            .await
            .expect("a waiter makes the host contended");
        assert!(!third.is_finished());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the freed place goes to the waiter")
            .expect("task");
        assert!(!cap.is_contended("imap.example"));
        assert_eq!(cap.in_use("imap.example"), 2);
    }

    #[tokio::test]
    async fn a_dropped_wait_is_no_longer_counted() {
        let cap = HostCap::new(1);
        let _a = cap.acquire("h").await;
        let r = tokio::time::timeout(Duration::from_millis(50), cap.acquire("h")).await;
        assert!(r.is_err());
        assert!(!cap.is_contended("h"));
    }
}
