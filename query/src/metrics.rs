//! Prometheus metrics of the query service (`query_*`).

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub cache_lookups: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let cache_lookups = IntCounterVec::new(
            Opts::new("query_cache_lookups_total", "Answer cache lookups by cache and outcome (hit, miss)"),
            &["cache", "outcome"],
        )?;
        registry.register(Box::new(cache_lookups.clone()))?;
        Ok(Self { registry, cache_lookups })
    }
}
