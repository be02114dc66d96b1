//! Capped exponential backoff with jitter for the socket's reconnects:
//! attempt n waits between half and all of min(base × 2ⁿ, cap), so a fleet
//! of tabs cut off by one restart does not come back in one wave.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The wait before the next attempt; `jitter` is a random number in
    /// [0, 1).
    pub fn next(&mut self, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(self.attempt.min(16)));
        let ceiling = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// After a success: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_its_cap_within_its_jitter_and_starts_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let top: Vec<_> = (0..8).map(|_| b.next(0.999_999)).collect();
        let expected = [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000];
        for (got, want) in top.iter().zip(expected) {
            assert!(got.as_millis().abs_diff(want) <= 1, "{got:?} vs {want}");
        }
        assert_eq!(b.failures(), 8);
        b.reset();
        assert_eq!(b.next(0.0), Duration::from_millis(250), "half of the base");
    }
}
