//! Prometheus metrics of ingest (`ingest_*`).

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub received: IntCounterVec,
    pub accepted: IntCounterVec,
    pub rejected: IntCounterVec,
    pub publish_seconds: Histogram,
    /// Messages JetStream answered for, by outcome: `stored`, `duplicate` (it held the id
    /// already), `failed` (an error or no ack in time).
    pub messages_published: IntCounterVec,
    /// Tracking requests (`GET /c/...`, `GET /i/...`) answered although their event was not
    /// recorded, by endpoint and reason: the person was redirected, the pixel sent.
    pub tracking_unrecorded: IntCounterVec,
    /// Connections answered 503 at once because ingest held `MAX_CONNECTIONS` already.
    pub connections_refused: IntCounter,
    /// Tracked events JetStream did not confirm, kept in the spool instead, by endpoint.
    pub spooled: IntCounterVec,
    /// Spooled events JetStream has since confirmed.
    pub spool_replayed: IntCounter,
    pub spool_events: IntGauge,
    pub spool_bytes: IntGauge,
    /// Since ingest received the oldest event in the spool.
    pub spool_oldest_age_seconds: Gauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let received =
            IntCounterVec::new(Opts::new("ingest_events_received_total", "Event requests received"), &["kind"])?;
        let accepted = IntCounterVec::new(
            Opts::new("ingest_events_accepted_total", "Events acknowledged by JetStream (202), duplicates included"),
            &["kind", "duplicate"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new("ingest_events_rejected_total", "Event requests answered with an error, by reason"),
            &["kind", "reason"],
        )?;
        let publish_seconds = Histogram::with_opts(HistogramOpts::new(
            "ingest_publish_duration_seconds",
            "From publish to JetStream's ack",
        ))?;
        let messages_published = IntCounterVec::new(
            Opts::new(
                "ingest_messages_published_total",
                "Messages published to JetStream (one holds one or many events), by outcome",
            ),
            &["outcome"],
        )?;
        let tracking_unrecorded = IntCounterVec::new(
            Opts::new(
                "ingest_tracking_unrecorded_total",
                "Redirects and pixels answered whose event was not recorded, by endpoint and reason",
            ),
            &["endpoint", "reason"],
        )?;
        let connections_refused = IntCounter::new(
            "ingest_connections_refused_total",
            "Connections answered 503 (Retry-After: 1) at once because ingest held MAX_CONNECTIONS already",
        )?;
        let spooled = IntCounterVec::new(
            Opts::new(
                "ingest_events_spooled_total",
                "Redirect and pixel events JetStream did not confirm, kept in the local spool, by endpoint",
            ),
            &["endpoint"],
        )?;
        let spool_replayed =
            IntCounter::new("ingest_spool_replayed_total", "Spooled events published into the stream since")?;
        let spool_events = IntGauge::new("ingest_spool_events", "Events in the local spool, waiting for JetStream")?;
        let spool_bytes =
            IntGauge::new("ingest_spool_bytes", "Bytes of events in the local spool (SPOOL_MAX_BYTES bounds them)")?;
        let spool_oldest_age_seconds = Gauge::new(
            "ingest_spool_oldest_age_seconds",
            "Seconds since ingest received the oldest event in the spool (0: empty)",
        )?;
        for spool_metric in [
            Box::new(spooled.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(spool_replayed.clone()),
            Box::new(spool_events.clone()),
            Box::new(spool_bytes.clone()),
            Box::new(spool_oldest_age_seconds.clone()),
        ] {
            registry.register(spool_metric)?;
        }
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(tracking_unrecorded.clone()))?;
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(messages_published.clone()))?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(publish_seconds.clone()))?;
        Ok(Self {
            registry,
            received,
            accepted,
            rejected,
            publish_seconds,
            messages_published,
            tracking_unrecorded,
            connections_refused,
            spooled,
            spool_replayed,
            spool_events,
            spool_bytes,
            spool_oldest_age_seconds,
        })
    }
}
