//! Backoff between failed sync cycles: 5 s doubling to a 300 s cap, reset on success; network
//! failures are capped much lower (see [`Backoff::next_delay_capped`]).

use std::time::Duration;

/// Exponential backoff with a cap. Pure: the caller sleeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    /// A server-given delay (`Retry-After`) wins when it is longer.
    pub fn next_delay(&mut self, server_hint: Option<Duration>) -> Duration {
        let shift = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let computed = self
            .base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.cap)
            .min(self.cap);
        match server_hint {
            Some(h) if h > computed => h.min(self.cap.max(h)),
            _ => computed,
        }
    }

    /// Like [`Backoff::next_delay`], but never more than `cap`, and shortened by up to a fifth
    /// at random so that many accounts (or daemons) cut off by one outage do not all come back
    /// at the same instant. Used for network-class failures: when the server is unreachable,
    /// waiting long only delays noticing its return.
    pub fn next_delay_capped(&mut self, cap: Duration) -> Duration {
        let d = self.next_delay(None).min(cap);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos());
        // 80..=100 % of the delay.
        d.mul_f64(0.8 + f64::from(nanos % 1000) / 5000.0)
    }

    /// Forgets past failures (after a successful cycle).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_5s_to_300s_and_resets() {
        let mut b = Backoff::default();
        let got: Vec<u64> = (0..9).map(|_| b.next_delay(None).as_secs()).collect();
        assert_eq!(got, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(None), Duration::from_secs(5));
    }

    #[test]
    fn network_failures_are_capped_with_jitter() {
        let mut b = Backoff::default();
        let cap = Duration::from_secs(12);
        for _ in 0..20 {
            let d = b.next_delay_capped(cap);
            assert!(d <= cap, "{d:?}");
            assert!(d >= Duration::from_secs(4), "{d:?}");
        }
    }

    #[test]
    fn server_hint_wins_when_longer() {
        let mut b = Backoff::default();
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(1))),
            Duration::from_secs(10)
        );
    }
}
