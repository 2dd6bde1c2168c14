//! Backoff between failed sync cycles: 5 s doubling to a 300 s cap, reset on success.

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
