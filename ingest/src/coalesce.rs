//! Group commit for single-event requests.
//!
//! Each `POST /ads/click` waits for JetStream's ack before its 202, so publishing one message
//! per request costs the broker (and the aggregator, which acks per message) a message per
//! event. Instead, requests hand their event to one task that keeps at most
//! `max_in_flight` messages awaiting their ack; events that arrive while all are busy are sent
//! together as one batch message (see [`crate::publisher`]). An idle server therefore publishes
//! each event alone (with `Nats-Msg-Id` = event_id, so a repeat answers `duplicate`); a busy one
//! publishes a few large messages instead of many small ones, and nobody waits longer than one
//! ack round trip for a slot.
//!
//! Counting is unaffected: a batch message is acked whole, its events are `accepted` only after
//! that ack, and the aggregator recognises any repeated event id. What changes under load is
//! only the answer to a repeat within JetStream's duplicate window: `accepted` instead of
//! `duplicate` when either copy travelled in a group.

use std::sync::Arc;

use schemas::AdEvent;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::IngestError;
use crate::publisher::{Published, Publisher};

/// Most events in one grouped message (the server's payload limit may split it further).
const MAX_GROUP: usize = 1_000;

struct Pending {
    event: AdEvent,
    reply: oneshot::Sender<Result<Published, IngestError>>,
}

/// Unbounded, because its length is bounded elsewhere: each queued event is a request waiting
/// for its answer, and requests are capped by `MAX_CONNECTIONS`.
#[derive(Clone)]
pub struct Coalescer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Coalescer {
    /// Starts the grouping task (it ends when every `Coalescer` clone is dropped).
    pub fn start(publisher: Publisher, max_in_flight: usize) -> Self {
        let (queue, events) = mpsc::unbounded_channel();
        tokio::spawn(run(publisher, events, max_in_flight));
        Self { queue }
    }

    /// Returns once JetStream has stored the event (alone or in a group), like
    /// [`Publisher::publish`].
    pub async fn publish(&self, event: AdEvent) -> Result<Published, IngestError> {
        let event_id = event.event_id;
        let lost = |reason: &str| IngestError::Publish { event_id, reason: reason.to_owned() };
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending { event, reply }).map_err(|_| lost("ingest is shutting down"))?;
        answer.await.unwrap_or_else(|_| Err(lost("the publisher stopped before JetStream answered")))
    }
}

async fn run(publisher: Publisher, mut events: mpsc::UnboundedReceiver<Pending>, max_in_flight: usize) {
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    while let Some(first) = events.recv().await {
        // Waiting for a slot is what lets a group form: events queue up meanwhile. While other
        // slots are free, an event goes alone.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut group = vec![first];
        while slots.available_permits() == 0 && group.len() < MAX_GROUP {
            match events.try_recv() {
                Ok(pending) => group.push(pending),
                Err(_) => break,
            }
        }
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let _slot = slot;
            publish_group(&publisher, group).await;
        });
    }
}

async fn publish_group(publisher: &Publisher, group: Vec<Pending>) {
    if group.len() == 1 {
        let Some(Pending { event, reply }) = group.into_iter().next() else { return };
        // The request may have gone (client disconnected): its answer has nowhere to go.
        let _ = reply.send(publisher.publish(&event).await);
        return;
    }
    let (events, replies): (Vec<AdEvent>, Vec<_>) = group.into_iter().map(|p| (p.event, p.reply)).unzip();
    for (reply, outcome) in replies.into_iter().zip(publisher.publish_many(&events).await) {
        let _ = reply.send(outcome);
    }
}
