//! Prometheus metrics of the query service (`query_*`).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub cache_lookups: IntCounterVec,
    /// One ClickHouse query's duration, by what it reads (`clicks`, `impressions`, ...).
    pub clickhouse_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let cache_lookups = IntCounterVec::new(
            Opts::new("query_cache_lookups_total", "Answer cache lookups by cache and outcome (hit, miss)"),
            &["cache", "outcome"],
        )?;
        let clickhouse_seconds = HistogramVec::new(
            HistogramOpts::new("query_clickhouse_query_duration_seconds", "Duration of one ClickHouse query, by what it reads")
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            &["query"],
        )?;
        registry.register(Box::new(cache_lookups.clone()))?;
        registry.register(Box::new(clickhouse_seconds.clone()))?;
        Ok(Self { registry, cache_lookups, clickhouse_seconds })
    }
}
