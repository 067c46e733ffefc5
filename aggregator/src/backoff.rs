//! Bounded exponential backoff with full jitter, for retrying ClickHouse inserts.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

impl Backoff {
    /// The longest wait before retry number `attempt` (0-based): base·2^attempt, capped at max.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(2u32.saturating_pow(attempt.min(30))).min(self.max)
    }

    /// A random wait in `[0, ceiling(attempt)]` so that many retrying clients spread out.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rng.random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(7), Duration::from_secs(10));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_under_the_ceiling() {
        let backoff = Backoff::default();
        let mut rng = rand::rng();
        for attempt in 0..12 {
            assert!(backoff.delay(attempt, &mut rng) <= backoff.ceiling(attempt));
        }
    }
}
