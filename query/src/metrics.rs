//! Prometheus metrics of the query service (`query_*`).

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub cache_lookups: IntCounterVec,
    /// One ClickHouse query's duration, by what it reads (`clicks`, `impressions`, ...).
    pub clickhouse_seconds: HistogramVec,
    /// The aggregator's write announcements heard, each of which dropped the cached answers.
    pub write_notices: IntCounter,
    pub connections_refused: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let cache_lookups = IntCounterVec::new(
            Opts::new("query_cache_lookups_total", "Answer cache lookups by cache and outcome (hit, miss)"),
            &["cache", "outcome"],
        )?;
        let clickhouse_seconds = HistogramVec::new(
            HistogramOpts::new(
                "query_clickhouse_query_duration_seconds",
                "Duration of one ClickHouse query, by what it reads",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            &["query"],
        )?;
        let write_notices = IntCounter::new(
            "query_write_notices_total",
            "Write announcements heard from the aggregator; each drops the cached answers about events",
        )?;
        let connections_refused = IntCounter::new(
            "query_connections_refused_total",
            "Connections answered 503 (Retry-After: 1) at once because the query service held MAX_CONNECTIONS already",
        )?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(cache_lookups.clone()))?;
        registry.register(Box::new(clickhouse_seconds.clone()))?;
        registry.register(Box::new(write_notices.clone()))?;
        Ok(Self { registry, cache_lookups, clickhouse_seconds, write_notices, connections_refused })
    }
}
