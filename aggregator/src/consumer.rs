//! The consume loop: pull a batch, decode, write to ClickHouse, then ack.
//!
//! **Invariant:** a message is acked only after ClickHouse holds its row, or after the
//! dead-letter stream holds its copy. A crash anywhere before that means redelivery, which
//! [`crate::sink`] recognises.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::Batch;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use schemas::rows::EventRow;
use schemas::stream::{SignatureError, SigningKey, WrittenNotice, REQUEST_ID_HEADER, SIGNATURE_HEADER};
use schemas::AdEvent;
use service_kit::catalog::{AdStatus, Catalog};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::ConsumerArgs;
use crate::dead_letter::DeadLetters;
use crate::error::AggregatorError;
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::written::Announcer;

/// What a message must carry to be counted: a signature under `key`, from stream sequence
/// `required_from_seq` on (migration `0017`; earlier messages were published before ingest
/// signed).
pub struct Signatures {
    pub key: SigningKey,
    pub required_from_seq: u64,
}

impl Signatures {
    /// Whether `message` may be counted: signed by ingest, or older than signatures.
    fn check(&self, message: &Message) -> Result<(), SignatureError> {
        let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(u64::MAX);
        if sequence < self.required_from_seq {
            return Ok(());
        }
        let header = message.headers.as_ref().and_then(|h| h.get(SIGNATURE_HEADER)).map(|v| v.as_str());
        self.key.verify(&message.payload, header)
    }
}

pub struct Consumer {
    pub consumer: PullConsumer,
    pub signatures: Signatures,
    /// For reloading the catalog when an event names an ad the copy does not know.
    pub clickhouse: clickhouse::Client,
    pub sink: Sink,
    pub dead_letters: DeadLetters,
    /// Tells the query service that ClickHouse holds new events.
    pub written: Announcer,
    pub catalog: Arc<Catalog>,
    pub metrics: Metrics,
    pub args: ConsumerArgs,
}

/// The ids of the requests a message's events came in, for the logs: its `Ads-Request-Id`
/// header, else those its events carry (none when it cannot be read).
fn request_ids(message: &Message) -> Vec<String> {
    let header = message.headers.as_ref().and_then(|h| h.get(REQUEST_ID_HEADER)).map(|v| v.as_str().to_owned());
    if let Some(id) = header {
        return vec![id];
    }
    let mut ids: Vec<String> =
        AdEvent::from_message(&message.payload).unwrap_or_default().into_iter().filter_map(|e| e.request_id).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// How long a pull may go without a message (for the first, beyond the wait it asked for)
/// before it is given up.
const PULL_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a message that cannot be counted yet (a temporary [`AggregatorError`]) waits to
/// come back.
const RETRY_DELAY: Duration = Duration::from_secs(5);

impl Consumer {
    /// Runs until `shutdown` turns true. The batch in hand is then given `grace` to be
    /// written and acked; past that it is abandoned, which loses nothing: unacked messages are
    /// redelivered to the next aggregator.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        // A predecessor killed mid-insert may leave ClickHouse running it: until it ends, its
        // events are not found stored, and a client's repeat of one would be written again.
        self.sink.await_inserts_begun_before(Instant::now()).await;
        while !*shutdown.borrow() {
            let started = Instant::now();
            let batch = self.pull().await;
            self.metrics.stage_seconds.with_label_values(&["pull"]).observe(started.elapsed().as_secs_f64());
            let full = batch.len() >= self.args.batch_max_messages;
            if !batch.is_empty() {
                let processing = self.process(batch, started);
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
            // A full batch means more is waiting: go on at once. Otherwise let events gather
            // until BATCH_MAX_WAIT_MS after this pull began, so that a trickle is written in
            // few inserts (each makes parts ClickHouse must merge), not one per event.
            if !full {
                let pause = self.args.batch_max_wait().saturating_sub(started.elapsed());
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        tracing::info!("consumer stopped");
    }

    /// One pull: what the stream holds for us now, up to `batch_max_messages` and
    /// `batch_max_bytes`, without waiting for more: on nats-server 2.9 a pull request waiting
    /// for a full batch can outlive its expiry by seconds while messages keep arriving, which
    /// holds batches back (BENCHMARKS.md). Only when there is
    /// nothing does it wait, up to `batch_max_wait`, for the first message; that waiting
    /// request is also what `rebuild` looks for to tell a running aggregator. The pacing is
    /// [`Consumer::run`]'s.
    async fn pull(&self) -> Vec<Message> {
        let max = self.args.batch_max_messages;
        let fetch =
            |max: usize| self.consumer.fetch().max_messages(max).max_bytes(self.args.batch_max_bytes).messages();
        let mut batch = collect(fetch(max).await, PULL_ANSWER_TIMEOUT).await;
        if batch.is_empty() {
            let wait = self.args.batch_max_wait();
            let first = self.consumer.batch().max_messages(1).expires(wait).messages().await;
            batch = collect(first, wait + PULL_ANSWER_TIMEOUT).await;
            if !batch.is_empty() && max > 1 {
                batch.extend(collect(fetch(max - 1).await, PULL_ANSWER_TIMEOUT).await);
            }
        }
        batch
    }

    async fn process(&self, batch: Vec<Message>, pulled: Instant) {
        self.metrics.batch_size.observe(batch.len() as f64);
        self.metrics.consumed.inc_by(batch.len() as u64);
        let mut decoded = Vec::with_capacity(batch.len());
        for message in batch {
            match self.signatures.check(&message).map_err(AggregatorError::from).and_then(|()| decode(&message)) {
                Ok(rows) => decoded.push((message, rows)),
                Err(error) => self.set_aside(message, &error).await,
            }
        }
        // An ad created moments ago may be newer than our catalog copy (ingest's may have been
        // refreshed first): reload before calling anything unknown. If the reload fails, an ad
        // missing from the copy may exist all the same: its messages wait and come back.
        let unknown = |row: &EventRow| self.catalog.status(row.ad_id()) == AdStatus::Unknown;
        let mut catalog_current = true;
        if decoded.iter().flat_map(|(_, rows)| rows).any(unknown) {
            catalog_current = self.catalog.reload_if_older(&self.clickhouse, Duration::from_secs(1)).await;
        }
        let mut rows = Vec::with_capacity(decoded.len());
        // Each message with the ids of its events, to find those of any ClickHouse rejects.
        let mut to_ack = Vec::with_capacity(decoded.len());
        for (message, message_rows) in decoded {
            // Inactive ads still count (the event was valid when accepted); unknown ones cannot
            // be attributed. While the catalog never loaded, nothing is "unknown". A message with
            // an unknown ad is dead-lettered whole.
            if let Some(row) = message_rows.iter().find(|row| unknown(row)) {
                let error = if catalog_current {
                    AggregatorError::UnknownAd(row.ad_id())
                } else {
                    AggregatorError::CatalogUnreachable(row.ad_id())
                };
                self.set_aside(message, &error).await;
            } else {
                let event_ids: Vec<Uuid> = message_rows.iter().map(EventRow::event_id).collect();
                rows.extend(message_rows);
                to_ack.push((message, event_ids));
            }
        }
        let started = Instant::now();
        if to_ack.iter().any(|(message, _)| message.info().is_ok_and(|info| info.delivered > 1)) {
            self.sink.await_inserts_begun_before(pulled).await;
        }
        let outcome = self.sink.write(rows).await;
        self.metrics.stage_seconds.with_label_values(&["write"]).observe(started.elapsed().as_secs_f64());
        if outcome.inserted > 0 {
            let last_stream_seq =
                to_ack.iter().filter_map(|(m, _)| m.info().ok()).map(|info| info.stream_sequence).max().unwrap_or(0);
            self.written
                .announce(WrittenNotice::new(outcome.inserted as u64, last_stream_seq, outcome.earliest_timestamp))
                .await;
        }
        let started = Instant::now();
        for (message, event_ids) in to_ack {
            // A message with an event ClickHouse refused goes to the dead letters whole; its
            // other events are stored, and a redrive finds them so (by event id) and skips them.
            if let Some((_, error)) = outcome.rejected.iter().find(|(id, _)| event_ids.contains(id)) {
                self.set_aside(message, error).await;
            } else if let Err(error) = message.ack().await {
                // Harmless: the message is redelivered and recognised as stored.
                tracing::warn!(%error, "ack failed");
            }
        }
        self.metrics.stage_seconds.with_label_values(&["ack"]).observe(started.elapsed().as_secs_f64());
        tracing::debug!(inserted = outcome.inserted, already_stored = outcome.already_stored, "batch done");
    }

    /// A message that cannot be counted: for a permanent `error`, copied to the dead-letter
    /// stream, then terminated, so it neither blocks the consumer nor disappears; for a
    /// temporary one, put back to come again after [`RETRY_DELAY`].
    async fn set_aside(&self, message: Message, error: &AggregatorError) {
        let Some(reason) = error.dead_letter_reason() else {
            tracing::warn!(%error, "retrying the message");
            if let Err(error) = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await {
                tracing::warn!(%error, "nak failed; the message comes back after ACK_WAIT_SECS");
            }
            return;
        };
        let detail = error.to_string();
        let request_ids = request_ids(&message).join(",");
        tracing::error!(subject = %message.subject, reason = reason.as_str(), %detail, request_id = request_ids, "dead-lettering a message");
        self.metrics.dead_letters.with_label_values(&[reason.as_str()]).inc();
        match self.dead_letters.send(&message, reason, &detail).await {
            Ok(()) => {
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(%error, "term failed; the message will be dead-lettered again");
                }
            }
            Err(error) => {
                tracing::error!(%error, "dead-letter stream unavailable; the message will be retried");
                let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            }
        }
    }
}

/// Returns once NATS has read every ack this client sent, or after [`service_kit::before_exit`]'s
/// bounds. The acks were only handed to the client, and its flush can return before they reach
/// the server (it waits for no answer); an ack NATS never read leaves its message to be
/// redelivered after `ACK_WAIT_SECS`. NATS reads a connection in order, so any answer to a
/// request sent after the acks means it has them all.
pub async fn confirm_acks(nats: &async_nats::Client, consumer: &PullConsumer) {
    let answered = async {
        loop {
            match consumer.get_info().await {
                Ok(_) => return Ok(()),
                Err(error)
                    if matches!(error.kind(), ConsumerInfoErrorKind::TimedOut | ConsumerInfoErrorKind::Request) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // An error the server answered with is an answer too.
                Err(error) => return Err(error),
            }
        }
    };
    match service_kit::before_exit(nats, "confirming the acks", answered).await {
        Some(Ok(())) => tracing::info!("NATS has read every ack"),
        Some(Err(error)) => {
            tracing::info!(%error, "NATS has read every ack (it answered the consumer lookup with an error)")
        }
        None => {}
    }
}

/// The rows of a message: one event, or a batch's events (all or none).
fn decode(message: &Message) -> Result<Vec<EventRow>, AggregatorError> {
    let events = AdEvent::from_message(&message.payload)?;
    // Without stream info there is no sequence for the dedup token; 0 still dedups by id.
    let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
    Ok(events.into_iter().map(|event| EventRow::from_event(crate::ivt::recheck(event), sequence)).collect())
}

/// The messages of one pull request; a broken request yields what arrived before it broke.
async fn collect<E: std::fmt::Display>(request: Result<Batch, E>, first_within: Duration) -> Vec<Message> {
    match request {
        Ok(answer) => read_answer(answer, first_within, PULL_ANSWER_TIMEOUT).await,
        Err(error) => {
            tracing::warn!(%error, "pull request failed");
            Vec::new()
        }
    }
}

/// Reads a pull's answer to its end, or until its first message has not come within
/// `first_within`, or the next one within `gap` of the one before. The limit is on the gap, not
/// on the whole answer: an answer that is slow (a loaded server) but still coming is read to its
/// end, since the messages of a request given up go on arriving, to nobody, and wait out
/// `ACK_WAIT_SECS` unacked before they are redelivered.
async fn read_answer<T, E: std::fmt::Display>(
    answer: impl futures::Stream<Item = Result<T, E>>,
    first_within: Duration,
    gap: Duration,
) -> Vec<T> {
    futures::pin_mut!(answer);
    let mut batch = Vec::new();
    loop {
        let within = if batch.is_empty() { first_within } else { gap };
        match tokio::time::timeout(within, answer.next()).await {
            Ok(Some(Ok(message))) => batch.push(message),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                // Messages of a broken pull are not acked, so they are redelivered.
                tracing::warn!(%error, "pull interrupted");
                break;
            }
            Err(_) => {
                // A request the server never answers (its consumer leader died with it, when a
                // NATS node fails) would stall the consumer for good: go on with what came.
                tracing::warn!(messages = batch.len(), "pull not answered in time; pulling again");
                break;
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::StreamExt;

    use super::read_answer;

    /// An answer whose messages come `every` apart, `count` of them, then ends.
    fn answer(count: usize, every: Duration) -> impl futures::Stream<Item = Result<usize, String>> {
        futures::stream::iter(0..count).then(move |i| async move {
            tokio::time::sleep(every).await;
            Ok(i)
        })
    }

    #[tokio::test]
    async fn a_slow_answer_is_read_to_its_end_however_long_it_takes_in_all() {
        // 1.5 s in all, longer than the gap allowed; no gap is.
        let started = Instant::now();
        let messages =
            read_answer(answer(5, Duration::from_millis(300)), Duration::from_secs(1), Duration::from_secs(1)).await;
        assert_eq!(messages, vec![0, 1, 2, 3, 4]);
        assert!(started.elapsed() > Duration::from_secs(1));
    }

    #[tokio::test]
    async fn an_answer_that_stops_or_never_starts_is_given_up() {
        let stops = answer(2, Duration::from_millis(10)).chain(futures::stream::pending());
        assert_eq!(read_answer(stops, Duration::from_secs(5), Duration::from_millis(200)).await, vec![0, 1]);
        let silent = futures::stream::pending::<Result<usize, String>>();
        assert_eq!(read_answer(silent, Duration::from_millis(200), Duration::from_secs(5)).await, Vec::<usize>::new());
    }

    #[tokio::test]
    async fn a_broken_answer_yields_what_came_before() {
        let broken = answer(3, Duration::from_millis(1))
            .chain(futures::stream::iter([Err("409 Server Shutdown".to_owned()), Ok(9)]));
        assert_eq!(read_answer(broken, Duration::from_secs(5), Duration::from_secs(5)).await, vec![0, 1, 2]);
    }
}
