//! Prometheus metrics of the aggregator (`aggregator_*`).

use prometheus::{Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
    /// Where a batch's time goes: `pull`, `lookup` (stored event ids), `ivt_lookup` (visitors'
    /// earlier events, [`crate::ivt`]), `write` (lookups and inserts), `ack`.
    pub stage_seconds: HistogramVec,
    /// Sampled by [`crate::lag`].
    pub consumer_pending: IntGauge,
    pub consumer_ack_pending: IntGauge,
    pub oldest_unprocessed_age_seconds: Gauge,
    pub stream_bytes: IntGauge,
    pub stream_max_bytes: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let consumed = IntCounter::new(
            "aggregator_messages_consumed_total",
            "Messages read from the stream (a batch message holds many events)",
        )?;
        let inserted = IntCounterVec::new(
            Opts::new("aggregator_events_inserted_total", "Rows inserted into ClickHouse raw tables"),
            &["table"],
        )?;
        let already_stored = IntCounter::new(
            "aggregator_events_already_stored_total",
            "Events ClickHouse already held (redeliveries, late client retries): acked, not inserted again",
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "aggregator_dead_letters_total",
                "Messages copied to the dead-letter stream and terminated, by reason",
            ),
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
        let consumer_pending = IntGauge::new(
            "aggregator_consumer_pending_messages",
            "Messages in the stream not yet delivered to the consumer (sampled)",
        )?;
        let consumer_ack_pending = IntGauge::new(
            "aggregator_consumer_ack_pending_messages",
            "Messages delivered and not yet acked (sampled)",
        )?;
        let oldest_unprocessed_age_seconds = Gauge::new(
            "aggregator_oldest_unprocessed_event_age_seconds",
            "How long ago the oldest message not yet acked was stored in the stream; 0 when none waits (sampled)",
        )?;
        let stream_bytes = IntGauge::new("aggregator_stream_bytes", "Bytes the event stream holds (sampled)")?;
        let stream_max_bytes = IntGauge::new(
            "aggregator_stream_max_bytes",
            "The event stream's size limit, STREAM_MAX_BYTES (sampled); at it, ingest refuses new events with 503",
        )?;
        registry.register(Box::new(stream_bytes.clone()))?;
        registry.register(Box::new(stream_max_bytes.clone()))?;
        registry.register(Box::new(consumer_pending.clone()))?;
        registry.register(Box::new(consumer_ack_pending.clone()))?;
        registry.register(Box::new(oldest_unprocessed_age_seconds.clone()))?;
        registry.register(Box::new(consumed.clone()))?;
        registry.register(Box::new(inserted.clone()))?;
        registry.register(Box::new(already_stored.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(insert_retries.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(insert_seconds.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        Ok(Self {
            registry,
            consumed,
            inserted,
            already_stored,
            dead_letters,
            insert_retries,
            batch_size,
            insert_seconds,
            stage_seconds,
            consumer_pending,
            consumer_ack_pending,
            oldest_unprocessed_age_seconds,
            stream_bytes,
            stream_max_bytes,
        })
    }
}
