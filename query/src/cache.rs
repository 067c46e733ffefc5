//! Short-lived answer cache (moka). Keys are the normalised query (aligned window included),
//! so "the last hour" asked twice in the same minute is one entry. A short TTL keeps numbers
//! real-time; misses for the same key are computed once. Each cache holds at most a budget of
//! bytes, weighed by [`Footprint`]: a 10,000-bucket series weighs what it holds, not "one entry".
//! [`AnswerCache::invalidate_all`] forgets every answer, including one still being computed
//! from what ClickHouse held before: that one is answered to its callers, then dropped;
//! [`AnswerCache::invalidate_if`] forgets those whose key a write touched.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use prometheus::IntCounterVec;

use crate::api::model::{Ad, AdList, AdMetrics, AnalyticsReport, Breakdown, BreakdownGroup, Bucket, Series};
use crate::error::QueryError;

/// What moka and the key's own heap parts add to an entry, about.
const ENTRY_OVERHEAD: usize = 160;

/// About how many bytes a cached answer occupies: its own size and what it points to.
pub trait Footprint {
    fn footprint(&self) -> usize;
}

impl Footprint for Ad {
    fn footprint(&self) -> usize {
        let text = [&self.title, &self.description, &self.media_url, &self.target_url, &self.campaign_id];
        std::mem::size_of::<Ad>() + text.iter().map(|s| s.capacity()).sum::<usize>()
    }
}

impl Footprint for Option<Ad> {
    fn footprint(&self) -> usize {
        self.as_ref().map_or(std::mem::size_of::<Self>(), Ad::footprint)
    }
}

impl Footprint for Option<time::OffsetDateTime> {
    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

impl Footprint for AdList {
    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>() + self.ads.iter().map(Ad::footprint).sum::<usize>()
    }
}

impl Footprint for AnalyticsReport {
    fn footprint(&self) -> usize {
        let previous = self.previous.as_ref().map_or(0, |p| p.ads.capacity());
        std::mem::size_of::<Self>() + (self.ads.capacity() + previous) * std::mem::size_of::<AdMetrics>()
    }
}

impl Footprint for Series {
    fn footprint(&self) -> usize {
        let previous = self.previous.as_ref().map_or(0, |p| p.series.capacity());
        std::mem::size_of::<Self>()
            + self.tz.capacity()
            + (self.current.series.capacity() + previous) * std::mem::size_of::<Bucket>()
    }
}

impl Footprint for Breakdown {
    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.groups.iter().map(|g| std::mem::size_of::<BreakdownGroup>() + g.value.capacity()).sum::<usize>()
    }
}

#[derive(Clone)]
pub struct AnswerCache<K, V> {
    name: &'static str,
    cache: Cache<K, V>,
    lookups: IntCounterVec,
    /// Bumped by every `invalidate_all`, so that a computation it overtook is not kept.
    generation: Arc<AtomicU64>,
}

impl<K, V> AnswerCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache named `name` (the metric's `cache` label) of at most `max_bytes`.
    pub fn new(name: &'static str, ttl: Duration, max_bytes: u64, lookups: IntCounterVec) -> Self
    where
        V: Footprint,
    {
        let cache = Cache::builder()
            .time_to_live(ttl)
            .max_capacity(max_bytes)
            .support_invalidation_closures()
            .weigher(|_key: &K, value: &V| {
                let bytes = ENTRY_OVERHEAD + std::mem::size_of::<K>() + value.footprint();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        Self { name, cache, lookups, generation: Arc::default() }
    }

    /// Forgets the answer for `key`.
    pub async fn invalidate(&self, key: &K) {
        self.cache.invalidate(key).await;
    }

    /// Forgets every answer, and any being computed now once it is done.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    /// Forgets the answers whose key `matches`, and any being computed now once it is done
    /// (whatever its key: this is for rare events, not worth telling those apart).
    pub fn invalidate_if(&self, matches: impl Fn(&K) -> bool + Send + Sync + 'static) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = self.cache.invalidate_entries_if(move |key, _| matches(key)) {
            tracing::warn!(%error, cache = self.name, "forgetting every answer instead of those a write touched");
            self.cache.invalidate_all();
        }
    }

    /// The cached answer for `key`, or `compute`'s (errors are not cached).
    pub async fn get_or_compute<F>(&self, key: K, compute: F) -> Result<V, QueryError>
    where
        F: std::future::Future<Output = Result<V, QueryError>>,
    {
        let mut computed = false;
        let generation = self.generation.load(Ordering::SeqCst);
        let result = self
            .cache
            .try_get_with(key.clone(), async {
                computed = true;
                compute.await
            })
            .await
            .map_err(|e: Arc<QueryError>| (*e).clone());
        // moka keeps what a computation returns even when `invalidate_all` came while it ran,
        // on data older than the invalidation: drop it here.
        if computed && self.generation.load(Ordering::SeqCst) != generation {
            self.cache.invalidate(&key).await;
        }
        let outcome = if computed { "miss" } else { "hit" };
        self.lookups.with_label_values(&[self.name, outcome]).inc();
        result
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Opts;

    use super::*;

    /// A value that says what it weighs.
    #[derive(Clone)]
    struct Weighs(usize);

    impl Footprint for Weighs {
        fn footprint(&self) -> usize {
            self.0
        }
    }

    fn lookups() -> IntCounterVec {
        IntCounterVec::new(Opts::new("lookups", "test"), &["cache", "outcome"]).expect("counter")
    }

    #[tokio::test]
    async fn holds_no_more_bytes_than_its_budget() {
        let cache = AnswerCache::new("test", Duration::from_secs(60), 100_000, lookups());
        for key in 0..100u32 {
            cache.get_or_compute(key, async { Ok(Weighs(10_000)) }).await.expect("computed");
        }
        cache.cache.run_pending_tasks().await;
        assert!(cache.cache.weighted_size() <= 100_000, "{} bytes kept", cache.cache.weighted_size());
        assert!(cache.cache.entry_count() <= 10, "{} entries kept", cache.cache.entry_count());
        assert!(cache.cache.entry_count() > 0);
    }

    #[tokio::test]
    async fn counts_hits_and_misses_and_does_not_keep_errors() {
        let counter = lookups();
        let cache = AnswerCache::new("test", Duration::from_secs(60), 1_000_000, counter.clone());
        let failed =
            cache.get_or_compute(1u32, async { Err::<Weighs, _>(QueryError::ClickHouse("down".into())) }).await;
        assert!(failed.is_err());
        let computed = cache.get_or_compute(1u32, async { Ok(Weighs(8)) }).await.expect("computed");
        let again = cache.get_or_compute(1u32, async { Ok(Weighs(9)) }).await.expect("cached");
        assert_eq!((computed.0, again.0), (8, 8));
        assert_eq!(counter.with_label_values(&["test", "miss"]).get(), 2);
        assert_eq!(counter.with_label_values(&["test", "hit"]).get(), 1);
    }

    #[tokio::test]
    async fn forgets_answers_and_one_computed_across_the_invalidation() {
        let cache = AnswerCache::new("test", Duration::from_secs(60), 1_000_000, lookups());
        cache.get_or_compute(1u32, async { Ok(Weighs(1)) }).await.expect("computed");
        cache.invalidate_all();
        assert_eq!(cache.get_or_compute(1u32, async { Ok(Weighs(2)) }).await.expect("recomputed").0, 2);
        // An invalidation while an answer is computed: the caller gets it, the cache drops it.
        let overtaken = cache.get_or_compute(2u32, async {
            cache.invalidate_all();
            Ok(Weighs(3))
        });
        assert_eq!(overtaken.await.expect("computed").0, 3);
        assert_eq!(cache.get_or_compute(2u32, async { Ok(Weighs(4)) }).await.expect("recomputed").0, 4);
        assert_eq!(cache.get_or_compute(2u32, async { Ok(Weighs(5)) }).await.expect("cached").0, 4);
    }

    #[tokio::test]
    async fn forgets_the_answers_a_predicate_names_and_keeps_the_others() {
        let cache = AnswerCache::new("test", Duration::from_secs(60), 1_000_000, lookups());
        for key in 0..4u32 {
            cache.get_or_compute(key, async move { Ok(Weighs(key as usize)) }).await.expect("computed");
        }
        cache.invalidate_if(|key| *key >= 2);
        let answers: Vec<usize> =
            futures::future::join_all((0..4u32).map(|key| cache.get_or_compute(key, async { Ok(Weighs(9)) })))
                .await
                .into_iter()
                .map(|answer| answer.expect("answer").0)
                .collect();
        assert_eq!(answers, vec![0, 1, 9, 9]);
        // One computed across it is answered, not kept.
        let overtaken = cache.get_or_compute(7u32, async {
            cache.invalidate_if(|key| *key == 100);
            Ok(Weighs(1))
        });
        assert_eq!(overtaken.await.expect("computed").0, 1);
        assert_eq!(cache.get_or_compute(7u32, async { Ok(Weighs(2)) }).await.expect("recomputed").0, 2);
    }
}
