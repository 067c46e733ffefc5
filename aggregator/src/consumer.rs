//! The consume loop: pull a batch, decode, write to ClickHouse, then ack.
//!
//! **Invariant:** a message is acked only after ClickHouse holds its row. A crash anywhere
//! before the ack means redelivery, which [`crate::sink`] recognises.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use schemas::event::DecodeError;
use schemas::rows::EventRow;
use schemas::AdEvent;
use tokio::sync::watch;

use crate::config::ConsumerArgs;
use crate::metrics::Metrics;
use crate::sink::Sink;

pub struct Consumer {
    pub consumer: PullConsumer,
    pub sink: Sink,
    pub metrics: Metrics,
    pub args: ConsumerArgs,
}

impl Consumer {
    /// Runs until `shutdown` turns true. The batch in hand is then given `grace` to be
    /// written and acked; past that it is abandoned, which loses nothing: unacked messages are
    /// redelivered to the next aggregator.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        while !*shutdown.borrow() {
            let batch = tokio::select! {
                batch = self.pull() => batch,
                _ = shutdown.changed() => break,
            };
            if batch.is_empty() {
                continue;
            }
            let processing = self.process(batch);
            tokio::pin!(processing);
            tokio::select! {
                () = &mut processing => {}
                _ = shutdown.changed() => {
                    if tokio::time::timeout(grace, processing).await.is_err() {
                        tracing::warn!("batch not written within the shutdown grace; it will be redelivered");
                    }
                    break;
                }
            }
        }
        tracing::info!("consumer stopped");
    }

    /// One pull: up to `batch_max_events` messages, waiting at most `batch_max_wait`.
    async fn pull(&self) -> Vec<Message> {
        let request = self
            .consumer
            .batch()
            .max_messages(self.args.batch_max_events)
            .expires(self.args.batch_max_wait())
            .messages()
            .await;
        let mut messages = match request {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "pull request failed");
                tokio::time::sleep(self.args.batch_max_wait()).await;
                return Vec::new();
            }
        };
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            match message {
                Ok(message) => batch.push(message),
                Err(error) => {
                    // Messages of a broken pull are not acked, so they are redelivered.
                    tracing::warn!(%error, "pull interrupted");
                    break;
                }
            }
        }
        batch
    }

    async fn process(&self, batch: Vec<Message>) {
        self.metrics.batch_size.observe(batch.len() as f64);
        self.metrics.consumed.inc_by(batch.len() as u64);
        let mut rows = Vec::with_capacity(batch.len());
        let mut to_ack = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(&message) {
                Ok(row) => {
                    rows.push(row);
                    to_ack.push(message);
                }
                Err(reason) => self.reject(message, reason).await,
            }
        }
        let outcome = self.sink.write(rows).await;
        for message in &to_ack {
            if let Err(error) = message.ack().await {
                // Harmless: the message is redelivered and recognised as stored.
                tracing::warn!(%error, "ack failed");
            }
        }
        tracing::debug!(inserted = outcome.inserted, already_stored = outcome.already_stored, "batch done");
    }

    /// A message that can never become a row: terminated, so it does not block the consumer.
    async fn reject(&self, message: Message, reason: PoisonReason) {
        let (label, detail) = match &reason {
            PoisonReason::NoInfo(e) => ("no_info", e.clone()),
            PoisonReason::Decode(DecodeError::Json(e)) => ("bad_json", e.to_string()),
            PoisonReason::Decode(e @ DecodeError::UnknownVersion(_)) => ("unknown_schema_version", e.to_string()),
        };
        tracing::error!(subject = %message.subject, reason = label, detail, "poison message terminated");
        self.metrics.poison.with_label_values(&[label]).inc();
        if let Err(error) = message.ack_with(AckKind::Term).await {
            tracing::warn!(%error, "term failed");
        }
    }
}

pub enum PoisonReason {
    NoInfo(String),
    Decode(DecodeError),
}

fn decode(message: &Message) -> Result<EventRow, PoisonReason> {
    let seq = message.info().map_err(|e| PoisonReason::NoInfo(e.to_string()))?.stream_sequence;
    let event = AdEvent::from_json(&message.payload).map_err(PoisonReason::Decode)?;
    Ok(EventRow::from_event(event, seq))
}
