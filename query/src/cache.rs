//! Short-lived answer cache (moka). Keys are the normalised query (aligned window included),
//! so "the last hour" asked twice in the same minute is one entry. A short TTL keeps numbers
//! real-time; misses for the same key are computed once.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use prometheus::IntCounterVec;

use crate::error::QueryError;

#[derive(Clone)]
pub struct AnswerCache<K, V> {
    name: &'static str,
    cache: Cache<K, V>,
    lookups: IntCounterVec,
}

impl<K, V> AnswerCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(name: &'static str, ttl: Duration, max_entries: u64, lookups: IntCounterVec) -> Self {
        let cache = Cache::builder().time_to_live(ttl).max_capacity(max_entries).build();
        Self { name, cache, lookups }
    }

    /// Forgets the answer for `key`.
    pub async fn invalidate(&self, key: &K) {
        self.cache.invalidate(key).await;
    }

    /// Forgets every answer.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// The cached answer for `key`, or `compute`'s (errors are not cached).
    pub async fn get_or_compute<F>(&self, key: K, compute: F) -> Result<V, QueryError>
    where
        F: std::future::Future<Output = Result<V, QueryError>>,
    {
        let mut computed = false;
        let result = self
            .cache
            .try_get_with(key, async {
                computed = true;
                compute.await
            })
            .await
            .map_err(|e: Arc<QueryError>| (*e).clone());
        let outcome = if computed { "miss" } else { "hit" };
        self.lookups.with_label_values(&[self.name, outcome]).inc();
        result
    }
}
