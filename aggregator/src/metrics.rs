//! Prometheus metrics of the aggregator (`aggregator_*`).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub consumed: IntCounter,
    pub inserted: IntCounterVec,
    pub already_stored: IntCounter,
    pub dead_letters: IntCounterVec,
    pub insert_retries: IntCounter,
    pub batch_size: Histogram,
    pub insert_seconds: Histogram,
    /// Where a batch's time goes: `pull`, `lookup` (stored event ids), `write` (lookup and
    /// inserts), `ack`.
    pub stage_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let consumed = IntCounter::new("aggregator_messages_consumed_total", "Messages read from the stream (a batch message holds many events)")?;
        let inserted = IntCounterVec::new(
            Opts::new("aggregator_events_inserted_total", "Rows inserted into ClickHouse raw tables"),
            &["table"],
        )?;
        let already_stored = IntCounter::new(
            "aggregator_events_already_stored_total",
            "Events ClickHouse already held (redeliveries, late client retries): acked, not inserted again",
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new("aggregator_dead_letters_total", "Messages copied to the dead-letter stream and terminated, by reason"),
            &["reason"],
        )?;
        let insert_retries =
            IntCounter::new("aggregator_insert_retries_total", "ClickHouse inserts retried after an error")?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("aggregator_batch_size_messages", "Messages per pulled batch")
                .buckets(prometheus::exponential_buckets(1.0, 4.0, 9)?),
        )?;
        let insert_seconds = Histogram::with_opts(HistogramOpts::new(
            "aggregator_clickhouse_insert_duration_seconds",
            "Duration of one ClickHouse insert",
        ))?;
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("aggregator_batch_stage_duration_seconds", "Time a batch spends in each stage")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
            &["stage"],
        )?;
        registry.register(Box::new(consumed.clone()))?;
        registry.register(Box::new(inserted.clone()))?;
        registry.register(Box::new(already_stored.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(insert_retries.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(insert_seconds.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        Ok(Self { registry, consumed, inserted, already_stored, dead_letters, insert_retries, batch_size, insert_seconds, stage_seconds })
    }
}
