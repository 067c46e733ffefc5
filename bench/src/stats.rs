//! Latency summaries: exact percentiles over every sample (a run holds at most a few million).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(mut samples_us: Vec<u64>) -> Self {
        if samples_us.is_empty() {
            return Self::default();
        }
        samples_us.sort_unstable();
        let n = samples_us.len();
        // Nearest rank: the smallest sample with at least q of all samples at or below it.
        let rank = |q: f64| samples_us[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            samples: n,
            mean_us: samples_us.iter().sum::<u64>() / n as u64,
            p50_us: rank(0.50),
            p95_us: rank(0.95),
            p99_us: rank(0.99),
            max_us: samples_us[n - 1],
        }
    }
}

pub fn micros(duration: Duration) -> u64 {
    duration.as_micros().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let latency = Latency::of((1..=100).rev().collect());
        assert_eq!((latency.p50_us, latency.p95_us, latency.p99_us, latency.max_us), (50, 95, 99, 100));
        assert_eq!(latency.mean_us, 50);
        assert_eq!(Latency::of(vec![7]).p99_us, 7);
        assert_eq!(Latency::of(Vec::new()).samples, 0);
    }
}
