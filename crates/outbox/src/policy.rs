//! Retry policy: exponential backoff with full jitter, eviction limit, batch size; and the
//! injectable clock and randomness it runs on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How the outbox retries.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry waits up to this long; each further one doubles it.
    pub base: Duration,
    /// No computed delay exceeds this.
    pub cap: Duration,
    /// No delay is shorter than this (keeps a row from being retried in the same flush, and a
    /// zero jitter draw from hammering the server).
    pub min_delay: Duration,
    /// A server's `retry_after` is honoured up to this long.
    pub max_retry_after: Duration,
    /// A change is evicted after this many transient failures.
    pub max_transient_failures: u32,
    /// At most this many items per executor call.
    pub batch_size: usize,
}

impl Default for RetryPolicy {
    /// 2 s base, 5 min cap, 1 s floor, `retry_after` up to 1 h, eviction after 5 transient
    /// failures, batches of 100.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(300),
            min_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(3600),
            max_transient_failures: 5,
            batch_size: 100,
        }
    }
}

impl RetryPolicy {
    /// Sets [`RetryPolicy::base`].
    #[must_use]
    pub fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets [`RetryPolicy::cap`].
    #[must_use]
    pub fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets [`RetryPolicy::min_delay`] (at least 1 ms).
    #[must_use]
    pub fn with_min_delay(mut self, d: Duration) -> Self {
        self.min_delay = d.max(Duration::from_millis(1));
        self
    }

    /// Sets [`RetryPolicy::max_transient_failures`] (at least 1).
    #[must_use]
    pub fn with_max_transient_failures(mut self, n: u32) -> Self {
        self.max_transient_failures = n.max(1);
        self
    }

    /// Sets [`RetryPolicy::batch_size`] (at least 1).
    #[must_use]
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The ceiling of the delay after the `failures`-th transient failure (1-based):
    /// `min(cap, base * 2^(failures-1))`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay before the next attempt after the `failures`-th transient failure: a draw in
    /// `[0, ceiling]` (full jitter), or the server's `retry_after` when given (clamped to
    /// `max_retry_after`); never below `min_delay`.
    pub fn delay(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        jitter: &dyn Jitter,
    ) -> Duration {
        let d = match retry_after {
            Some(r) => r.min(self.max_retry_after),
            None => jitter.draw(self.ceiling(failures)),
        };
        d.max(self.min_delay.max(Duration::from_millis(1)))
    }
}

/// Where "now" comes from. Times are truncated to microseconds (what both database backends keep).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        mailsync_store::now()
    }
}

/// A wall clock that advances with `tokio::time`: the wall time at creation plus the elapsed
/// [`tokio::time::Instant`]. Under `#[tokio::test(start_paused = true)]` it moves only when the
/// test advances time, which makes backoff schedules testable.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock anchored now.
    pub fn new() -> Self {
        Self {
            wall: mailsync_store::now(),
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.origin.elapsed();
        let t = self.wall
            + chrono::Duration::from_std(elapsed).unwrap_or_else(|_| chrono::Duration::zero());
        DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
    }
}

/// A clock that moves only when told to: deterministic schedules in tests that also do real
/// I/O (tokio's paused time auto-advances while a database call is pending, which fires the
/// connection pool's timeouts). Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock showing `start` (truncated to microseconds).
    pub fn new(start: DateTime<Utc>) -> Self {
        let t = DateTime::from_timestamp_micros(start.timestamp_micros()).unwrap_or(start);
        Self(Arc::new(Mutex::new(t)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::zero());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The random part of the backoff.
pub trait Jitter: Send + Sync + std::fmt::Debug {
    /// A duration in `[0, max]`.
    fn draw(&self, max: Duration) -> Duration;
}

/// Uniform draws from the thread-local RNG: "full jitter" (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct FullJitter;

impl Jitter for FullJitter {
    fn draw(&self, max: Duration) -> Duration {
        use rand::Rng as _;
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// A fixed fraction of the ceiling (`1.0` = no jitter): deterministic schedules for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn draw(&self, max: Duration) -> Duration {
        max.mul_f64(self.0.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=10).map(|n| p.ceiling(n).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(p.ceiling(u32::MAX), p.cap);
        assert_eq!(p.ceiling(0), p.base);
    }

    #[test]
    fn delay_is_jittered_within_bounds_and_floored() {
        let p = RetryPolicy::default();
        for n in 1..8 {
            for _ in 0..200 {
                let d = p.delay(n, None, &FullJitter);
                assert!(
                    d >= p.min_delay && d <= p.ceiling(n).max(p.min_delay),
                    "{d:?}"
                );
            }
        }
        assert_eq!(p.delay(3, None, &FixedJitter(1.0)), Duration::from_secs(8));
        assert_eq!(p.delay(3, None, &FixedJitter(0.5)), Duration::from_secs(4));
        assert_eq!(p.delay(3, None, &FixedJitter(0.0)), p.min_delay);
    }

    #[test]
    fn retry_after_overrides_and_is_clamped() {
        let p = RetryPolicy::default();
        let j = FixedJitter(1.0);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(90)), &j),
            Duration::from_secs(90)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(10 * 3600)), &j),
            p.max_retry_after
        );
        assert_eq!(p.delay(1, Some(Duration::ZERO), &j), p.min_delay);
    }

    #[test]
    fn full_jitter_spreads() {
        let max = Duration::from_secs(100);
        let draws: Vec<Duration> = (0..400).map(|_| FullJitter.draw(max)).collect();
        assert!(draws.iter().all(|d| *d <= max));
        assert!(draws.iter().any(|d| *d < max / 4));
        assert!(draws.iter().any(|d| *d > max * 3 / 4));
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::new(mailsync_store::now());
        let shared = c.clone();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        shared.advance(Duration::from_millis(1500));
        assert_eq!((c.now() - t0).num_milliseconds(), 1500);
    }

    /// The whole retry schedule of one change, slept through in paused tokio time: the attempts
    /// happen at the cumulative ceilings (no jitter), and the clock the outbox reads agrees.
    #[tokio::test(start_paused = true)]
    async fn retry_schedule_in_paused_time() {
        let p = RetryPolicy::default();
        let clock = TokioClock::new();
        let t0 = clock.now();
        let started = tokio::time::Instant::now();
        let mut due = t0;
        let mut attempts = Vec::new();
        for failures in 1..p.max_transient_failures {
            due += chrono::Duration::from_std(p.delay(failures, None, &FixedJitter(1.0)))
                .unwrap_or_default();
            let wait = (due - clock.now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            attempts.push(started.elapsed().as_secs());
            assert!(clock.now() >= due);
        }
        assert_eq!(attempts, vec![2, 6, 14, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::new();
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(42)).await;
        assert_eq!((c.now() - t0).num_seconds(), 42);
    }
}
