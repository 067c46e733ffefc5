//! Publishes events to JetStream and waits for the ack.
//!
//! Wire protocol: NATS JetStream publish with header `Nats-Msg-Id` = event_id (the stream drops
//! a second publish of the same id within its duplicate window) and `Ads-Schema-Version`.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use schemas::input::TimestampLimits;
use schemas::stream::{subject, SCHEMA_VERSION_HEADER};
use schemas::AdEvent;

use crate::error::IngestError;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Stored,
    /// The stream already held this event_id: nothing new was stored.
    Duplicate,
}

#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    subject_prefix: String,
    timeout: Duration,
    metrics: Metrics,
}

impl Publisher {
    pub fn new(js: jetstream::Context, subject_prefix: String, timeout: Duration, metrics: Metrics) -> Self {
        Self { js, subject_prefix, timeout, metrics }
    }

    /// Returns once JetStream has stored the event (or already had it).
    pub async fn publish(&self, event: &AdEvent) -> Result<Published, IngestError> {
        let started = Instant::now();
        let message = PublishMessage::build()
            .payload(event.to_json().into())
            .message_id(event.event_id.to_string())
            .header(SCHEMA_VERSION_HEADER, event.schema_version.to_string().as_str());
        let subject = subject(&self.subject_prefix, event.kind);
        let ack = tokio::time::timeout(self.timeout, async {
            self.js.send_publish(subject, message).await?.await
        })
        .await
        .map_err(|_| IngestError::Publish {
            event_id: event.event_id,
            reason: format!("no ack from JetStream within {:?}", self.timeout),
        })?
        .map_err(|e| IngestError::Publish { event_id: event.event_id, reason: e.to_string() })?;
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        Ok(if ack.duplicate { Published::Duplicate } else { Published::Stored })
    }
}

/// Reads how long the stream keeps events: older timestamps are rejected at the door.
pub async fn stream_limits(js: &jetstream::Context, stream: &str) -> Result<TimestampLimits, async_nats::Error> {
    let info = js.get_stream(stream).await?.get_info().await?;
    let max_age = (!info.config.max_age.is_zero()).then_some(info.config.max_age);
    Ok(TimestampLimits { max_age })
}
