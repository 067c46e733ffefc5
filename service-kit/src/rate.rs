//! Token buckets per client. Ingest's are per address and count events; query's are per API key
//! (or address, for anonymous reads) and count requests. Both charge a request before its body
//! is read, so a client over its rate costs no more than its headers.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Why a client may not go on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateRefusal {
    /// Over its rate: what it asked for fits again after `retry_after_secs`.
    Wait { retry_after_secs: u32 },
    /// More at once than the burst: it never fits.
    OverBurst { burst: u32 },
}

pub struct RateLimiter<K: Hash + Eq + Clone> {
    buckets: governor::DefaultKeyedRateLimiter<K>,
    burst: u32,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> RateLimiter<K> {
    /// `per_second` sustained, and `burst` at once (one second's worth when absent); `None` when
    /// `per_second` is 0: no limit.
    pub fn new(per_second: u32, burst: Option<u32>) -> Option<Arc<Self>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate);
        let buckets = governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst));
        let limiter = Arc::new(Self { buckets, burst: burst.get() });
        // Forget idle clients now and then, so the buckets' memory stays bounded.
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(limiter) = weak.upgrade() else { return };
                limiter.buckets.retain_recent();
                limiter.buckets.shrink_to_fit();
            }
        });
        Some(limiter)
    }

    /// Takes `cost` from `key`'s bucket, all or none; a cost of 0 always passes.
    pub fn take(&self, key: &K, cost: usize) -> Result<(), RateRefusal> {
        let Some(n) = NonZeroU32::new(u32::try_from(cost).unwrap_or(u32::MAX)) else { return Ok(()) };
        match self.buckets.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(self.buckets.clock()));
                Err(RateRefusal::Wait { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u32 })
            }
            Err(governor::InsufficientCapacity(burst)) => Err(RateRefusal::OverBurst { burst }),
        }
    }

    /// The most one request may take at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// The bucket an address draws from: IPv6 clients get a /64 each (one subscriber's network), so
/// rotating addresses inside it does not escape the limit or grow the table.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_subscriber_shares_one_bucket_an_ipv4_address_has_its_own() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(address_key(v4), v4);
    }

    #[tokio::test]
    async fn a_bucket_gives_its_burst_then_says_how_long_to_wait() {
        assert!(RateLimiter::<u8>::new(0, None).is_none(), "0 is no limit");
        let limiter = RateLimiter::new(2, Some(3)).expect("a limit");
        assert_eq!(limiter.take(&1, 3), Ok(()));
        assert_eq!(limiter.take(&1, 1), Err(RateRefusal::Wait { retry_after_secs: 1 }));
        assert_eq!(limiter.take(&2, 1), Ok(()), "each key has its own bucket");
        assert_eq!(limiter.take(&2, 4), Err(RateRefusal::OverBurst { burst: 3 }));
        assert_eq!(limiter.take(&1, 0), Ok(()));
        assert_eq!(limiter.burst(), 3);
    }
}
