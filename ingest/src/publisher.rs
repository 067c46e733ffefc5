//! Publishes events to JetStream and waits for the ack.
//!
//! Wire protocol: NATS JetStream publish on `<prefix>.<kind>` with headers `Ads-Schema-Version`,
//! `Ads-Signature` (the payload's HMAC under `EVENT_SIGNING_KEY`, which the aggregator checks)
//! and `Nats-Msg-Id` (the stream drops a second publish of the same id within its duplicate
//! window):
//! - one event: the payload is its JSON, `Nats-Msg-Id` = event_id;
//! - a batch: events of one kind, one JSON document per line, as many per message as fit the
//!   server's payload limit; `Nats-Msg-Id` = `batch-` + SHA-256 of the kind and the event ids,
//!   so the stream drops a retried batch. One message per event would cap batches at
//!   JetStream's per-message rate; the aggregator counts each event once either way (it
//!   recognises stored event ids), so grouping costs no guarantee.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, PublishError};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, message::PublishMessage};
use schemas::input::TimestampLimits;
use schemas::stream::{subject, SigningKey, REQUEST_ID_HEADER, SCHEMA_VERSION_HEADER, SIGNATURE_HEADER};
use schemas::{AdEvent, EventKind, SCHEMA_VERSION};
use tokio::time::error::Elapsed;

use crate::error::IngestError;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Stored,
    /// The stream already held this event_id (or this exact batch): nothing new was stored.
    Duplicate,
}

#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    subject_prefix: String,
    timeout: Duration,
    signing: SigningKey,
    metrics: Metrics,
}

/// Room left in a message for headers and protocol framing.
const PAYLOAD_HEADROOM: usize = 4 * 1024;

impl Publisher {
    pub fn new(
        js: jetstream::Context,
        subject_prefix: String,
        timeout: Duration,
        signing: SigningKey,
        metrics: Metrics,
    ) -> Self {
        Self { js, subject_prefix, timeout, signing, metrics }
    }

    /// A message of `payload` with its id, schema version and signature.
    fn message(&self, payload: Vec<u8>, message_id: String) -> PublishMessage {
        let signature = self.signing.sign(&payload);
        PublishMessage::build()
            .payload(payload.into())
            .message_id(message_id)
            .header(SCHEMA_VERSION_HEADER, SCHEMA_VERSION.to_string().as_str())
            .header(SIGNATURE_HEADER, signature.as_str())
    }

    /// Returns once JetStream has stored the event (or already had it).
    pub async fn publish(&self, event: &AdEvent) -> Result<Published, IngestError> {
        let started = Instant::now();
        let message = with_request_id(self.message(event.to_json(), event.event_id.to_string()), [event]);
        let subject = subject(&self.subject_prefix, event.kind);
        let ack =
            tokio::time::timeout(self.timeout, async { self.js.send_publish(subject, message).await?.await }).await;
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        let outcome = outcome(ack, self.timeout);
        self.count(&outcome);
        outcome.map_err(|reason| IngestError::Publish { event_id: event.event_id, reason })
    }

    fn count(&self, outcome: &Result<Published, String>) {
        let label = match outcome {
            Ok(Published::Stored) => "stored",
            Ok(Published::Duplicate) => "duplicate",
            Err(_) => "failed",
        };
        self.metrics.messages_published.with_label_values(&[label]).inc();
    }

    /// Publishes many events with every message's ack in flight at once; returns each event's
    /// outcome, in order, once JetStream answered for all of them or the timeout passed.
    pub async fn publish_many(&self, events: &[AdEvent]) -> Vec<Result<Published, IngestError>> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let max_payload = self.js.client().server_info().max_payload.saturating_sub(PAYLOAD_HEADROOM);
        let mut groups = Vec::new();
        let mut acks = Vec::new();
        for Chunk { indices, payload } in chunk(events, max_payload) {
            let batch: Vec<&AdEvent> = indices.iter().map(|&i| &events[i]).collect();
            let kind = batch[0].kind;
            let message = with_request_id(self.message(payload, batch_message_id(kind, &batch)), batch.iter().copied());
            // Sending only queues the message; the acks are awaited together below.
            let sent = match tokio::time::timeout_at(
                deadline,
                self.js.send_publish(subject(&self.subject_prefix, kind), message),
            )
            .await
            {
                Ok(Ok(ack)) => Ok(ack),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("could not send to NATS within {:?}", self.timeout)),
            };
            acks.push(sent);
            groups.push(indices);
        }
        let timeout = self.timeout;
        let acks = futures::future::join_all(acks.into_iter().map(|sent| async move {
            match sent {
                Ok(ack) => outcome(tokio::time::timeout_at(deadline, ack).await, timeout),
                Err(reason) => Err(reason),
            }
        }))
        .await;
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        let mut outcomes: Vec<Result<Published, String>> = vec![Err("not published".to_owned()); events.len()];
        for (indices, chunk_outcome) in groups.into_iter().zip(acks) {
            self.count(&chunk_outcome);
            for i in indices {
                outcomes[i] = chunk_outcome.clone();
            }
        }
        events
            .iter()
            .zip(outcomes)
            .map(|(event, outcome)| outcome.map_err(|reason| IngestError::Publish { event_id: event.event_id, reason }))
            .collect()
    }
}

/// Adds the `Ads-Request-Id` header when every event of the message came in one request (a
/// group of single events from many requests has none; each event carries its own).
fn with_request_id<'a>(message: PublishMessage, events: impl IntoIterator<Item = &'a AdEvent>) -> PublishMessage {
    match one_request_id(events) {
        Some(id) => message.header(REQUEST_ID_HEADER, id),
        None => message,
    }
}

/// The request id all `events` share, if they share one.
fn one_request_id<'a>(events: impl IntoIterator<Item = &'a AdEvent>) -> Option<&'a str> {
    let mut ids = events.into_iter().map(|e| e.request_id.as_deref());
    let first = ids.next()??;
    ids.all(|id| id == Some(first)).then_some(first)
}

/// What one publish came to; `Err` holds the reason, for people.
fn outcome(ack: Result<Result<PublishAck, PublishError>, Elapsed>, timeout: Duration) -> Result<Published, String> {
    match ack {
        Ok(Ok(ack)) if ack.duplicate => Ok(Published::Duplicate),
        Ok(Ok(_)) => Ok(Published::Stored),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no ack from JetStream within {timeout:?}")),
    }
}

/// Events bound for one message: their indices in the request, and the payload.
#[derive(Debug, PartialEq)]
struct Chunk {
    indices: Vec<usize>,
    payload: Vec<u8>,
}

/// Groups events into messages: one kind per message, so subjects stay per kind; request
/// order within a kind, so a retried batch groups the same way; at most `max_bytes` of JSON
/// lines per message (an event larger than that alone still gets a message of its own).
fn chunk(events: &[AdEvent], max_bytes: usize) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for kind in [EventKind::Click, EventKind::Impression] {
        let mut current = Chunk { indices: Vec::new(), payload: Vec::new() };
        for (i, event) in events.iter().enumerate().filter(|(_, e)| e.kind == kind) {
            let line = AdEvent::to_json_lines([event]);
            if !current.indices.is_empty() && current.payload.len() + line.len() > max_bytes {
                chunks.push(std::mem::replace(&mut current, Chunk { indices: Vec::new(), payload: Vec::new() }));
            }
            current.indices.push(i);
            current.payload.extend_from_slice(&line);
        }
        if !current.indices.is_empty() {
            chunks.push(current);
        }
    }
    chunks
}

/// The same kind and event ids, in the same order, give the same id.
fn batch_message_id(kind: EventKind, events: &[&AdEvent]) -> String {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(kind.as_str().as_bytes());
    for event in events {
        digest.update(event.event_id.as_bytes());
    }
    let hex: String = digest.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("batch-{hex}")
}

/// Reads how long the stream keeps events: older timestamps are rejected at the door.
pub async fn stream_limits(js: &jetstream::Context, stream: &str) -> Result<TimestampLimits, GetStreamError> {
    let stream = js.get_stream(stream).await?;
    let info = stream.cached_info();
    let max_age = (!info.config.max_age.is_zero()).then_some(info.config.max_age);
    Ok(TimestampLimits { max_age })
}

/// The stream's limits, filled in as soon as JetStream answers: at once, or (NATS down when
/// ingest starts) from a task that asks every second. `Err` only when JetStream answers that
/// the stream is not there.
pub async fn stream_limits_once_reached(
    js: &jetstream::Context,
    stream: &str,
) -> Result<Arc<OnceLock<TimestampLimits>>, GetStreamError> {
    let limits = Arc::new(OnceLock::new());
    match stream_limits(js, stream).await {
        Ok(known) => {
            let _ = limits.set(known);
        }
        Err(error) if matches!(error.kind(), GetStreamErrorKind::JetStream(_)) => return Err(error),
        Err(error) => {
            tracing::warn!(%error, "JetStream not reached: JSON events get 503 until it is; redirects and pixels spool");
            let (js, stream, filled) = (js.clone(), stream.to_owned(), limits.clone());
            tokio::spawn(async move {
                for attempt in 1_u64.. {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match stream_limits(&js, &stream).await {
                        Ok(known) => {
                            tracing::info!("JetStream reached");
                            let _ = filled.set(known);
                            return;
                        }
                        // Once a minute, so that a stream missing (not only unreachable) is seen.
                        Err(error) if attempt % 60 == 0 => {
                            tracing::warn!(%error, "JetStream still not reached; JSON events get 503")
                        }
                        Err(_) => {}
                    }
                }
            });
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    fn event(kind: EventKind, id: u128) -> AdEvent {
        let at = datetime!(2026-11-22 10:00 UTC);
        AdEvent { timestamp: at, received_at: at, ..AdEvent::new(kind, Uuid::from_u128(id), Uuid::from_u128(7)) }
    }

    #[test]
    fn a_message_names_its_request_only_when_all_its_events_share_one() {
        let with = |id: Option<&str>| AdEvent { request_id: id.map(str::to_owned), ..event(EventKind::Click, 1) };
        let (a, a2, b, none) = (with(Some("a")), with(Some("a")), with(Some("b")), with(None));
        assert_eq!(one_request_id([&a, &a2]), Some("a"));
        assert_eq!(one_request_id([&a, &b]), None);
        assert_eq!(one_request_id([&a, &none]), None);
        assert_eq!(one_request_id([&none]), None);
    }

    #[test]
    fn chunks_keep_kinds_apart_and_fit_the_payload_limit() {
        use EventKind::{Click, Impression};
        let events: Vec<AdEvent> =
            [Impression, Click, Impression, Click, Click].iter().zip(1..).map(|(&k, id)| event(k, id)).collect();
        let indices = |max_bytes| chunk(&events, max_bytes).into_iter().map(|c| c.indices).collect::<Vec<_>>();
        assert_eq!(indices(1 << 20), vec![vec![1, 3, 4], vec![0, 2]]);
        let line = events[0].to_json().len() + 1;
        assert_eq!(indices(2 * line), vec![vec![1, 3], vec![4], vec![0, 2]]);
        assert_eq!(indices(1), vec![vec![1], vec![3], vec![4], vec![0], vec![2]], "one event per message at least");
        let first = &chunk(&events, 1 << 20)[0];
        let decoded = AdEvent::from_message(&first.payload).unwrap();
        assert_eq!(decoded.iter().map(|e| e.event_id.as_u128()).collect::<Vec<_>>(), vec![2, 4, 5]);
    }

    #[test]
    fn batch_ids_depend_on_kind_and_ids_only() {
        let (a, b) = (event(EventKind::Click, 1), event(EventKind::Click, 2));
        let mut later = a.clone();
        later.received_at = datetime!(2026-11-22 11:00 UTC);
        assert_eq!(batch_message_id(EventKind::Click, &[&a, &b]), batch_message_id(EventKind::Click, &[&later, &b]));
        assert_ne!(batch_message_id(EventKind::Click, &[&a, &b]), batch_message_id(EventKind::Click, &[&b, &a]));
        assert_ne!(batch_message_id(EventKind::Click, &[&a]), batch_message_id(EventKind::Impression, &[&a]));
    }
}
