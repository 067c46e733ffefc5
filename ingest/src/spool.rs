//! The fallback of the tracking endpoints. A browser never retries a click-through redirect or an
//! impression pixel, so an event of theirs that JetStream does not confirm would be lost; it is
//! kept here instead, on local disk, and published again, with the same `event_id`, once JetStream
//! answers.
//!
//! Storage: a redb database, `SPOOL_DIR/spool.redb`, one table from an increasing number to the
//! event's JSON. Each write is committed durably (fsync) before the request is answered, so a
//! `kill -9` loses nothing spooled; writes that arrive while one commits share the next commit.
//! The events held are bounded by `SPOOL_MAX_BYTES`; past it an event is refused, and counted as
//! lost. Replayed events are deleted only after JetStream confirmed them: an event replayed twice
//! (a crash between the two) is counted once, by its id, like any client retry.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use schemas::AdEvent;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::publisher::Publisher;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Most events written in one commit.
const MAX_PER_COMMIT: usize = 1_000;
/// Most events replayed at once (one `publish_many`).
const REPLAY_BATCH: usize = 1_000;
/// How often the spool is looked at while it is empty, or replayed while JetStream does not answer.
const REPLAY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool holds SPOOL_MAX_BYTES ({limit} bytes) of events already")]
    Full { limit: u64 },
    #[error("the spool failed: {0}")]
    Storage(String),
}

impl SpoolError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            SpoolError::Full { .. } => "spool_full",
            SpoolError::Storage(_) => "spool_failed",
        }
    }
}

fn storage(error: impl std::fmt::Display) -> SpoolError {
    SpoolError::Storage(error.to_string())
}

/// One event to keep, and who waits for it to be on disk.
struct Keep {
    payload: Vec<u8>,
    written: oneshot::Sender<Result<(), SpoolError>>,
}

/// What the spool holds, kept in step with the table by its only writer and its only deleter.
#[derive(Default)]
struct Held {
    events: AtomicU64,
    bytes: AtomicU64,
}

pub struct Spool {
    db: Arc<Database>,
    writes: mpsc::UnboundedSender<Keep>,
    held: Arc<Held>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, and starts the thread that writes to it.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| storage(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("spool.redb");
        let db = Arc::new(Database::create(&path).map_err(|e| storage(format!("opening {}: {e}", path.display())))?);
        let held = Arc::new(Held::default());
        let mut next_key = 0;
        {
            let write = db.begin_write().map_err(storage)?;
            {
                let table = write.open_table(EVENTS).map_err(storage)?;
                for entry in table.iter().map_err(storage)? {
                    let (key, payload) = entry.map_err(storage)?;
                    held.events.fetch_add(1, Ordering::Relaxed);
                    held.bytes.fetch_add(payload.value().len() as u64, Ordering::Relaxed);
                    next_key = key.value() + 1;
                }
            }
            write.commit().map_err(storage)?;
        }
        let (writes, queue) = mpsc::unbounded_channel();
        let writer = Writer { db: db.clone(), held: held.clone(), max_bytes, next_key };
        std::thread::Builder::new().name("spool-writer".into()).spawn(move || writer.run(queue)).map_err(storage)?;
        Ok(Spool { db, writes, held })
    }

    /// Returns once `event` is on disk.
    pub async fn keep(&self, event: &AdEvent) -> Result<(), SpoolError> {
        let (written, answer) = oneshot::channel();
        self.writes
            .send(Keep { payload: event.to_json(), written })
            .map_err(|_| storage("the spool writer stopped"))?;
        answer.await.unwrap_or_else(|_| Err(storage("the spool writer stopped")))
    }

    /// Events held now.
    pub fn events(&self) -> u64 {
        self.held.events.load(Ordering::Relaxed)
    }

    /// The oldest events held, up to `max`, with their keys.
    fn oldest(&self, max: usize) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let read = self.db.begin_read().map_err(storage)?;
        let table = read.open_table(EVENTS).map_err(storage)?;
        let oldest = table
            .iter()
            .map_err(storage)?
            .take(max)
            .map(|entry| entry.map(|(key, payload)| (key.value(), payload.value().to_vec())).map_err(storage))
            .collect();
        oldest
    }

    /// Deletes the events of `keys` (replayed, or unreadable).
    fn remove(&self, keys: &[u64]) -> Result<(), SpoolError> {
        let write = self.db.begin_write().map_err(storage)?;
        let mut bytes = 0;
        {
            let mut table = write.open_table(EVENTS).map_err(storage)?;
            for key in keys {
                if let Some(payload) = table.remove(key).map_err(storage)? {
                    bytes += payload.value().len() as u64;
                }
            }
        }
        write.commit().map_err(storage)?;
        self.held.events.fetch_sub(keys.len() as u64, Ordering::Relaxed);
        self.held.bytes.fetch_sub(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the spool's gauges; `oldest` is the oldest event held, if any.
    fn report(&self, metrics: &Metrics, oldest: Option<&[u8]>) {
        metrics.spool_events.set(self.events() as i64);
        metrics.spool_bytes.set(self.held.bytes.load(Ordering::Relaxed) as i64);
        metrics.spool_oldest_age_seconds.set(oldest.map_or(0.0, age_secs));
    }
}

/// Seconds since ingest received the spooled event `payload`.
fn age_secs(payload: &[u8]) -> f64 {
    AdEvent::from_json(payload)
        .map_or(0.0, |event| (OffsetDateTime::now_utc() - event.received_at).as_seconds_f64().max(0.0))
}

/// The spool's only writer: one thread, committing what arrived since its last commit at once.
struct Writer {
    db: Arc<Database>,
    held: Arc<Held>,
    max_bytes: u64,
    next_key: u64,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::UnboundedReceiver<Keep>) {
        while let Some(first) = queue.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_PER_COMMIT {
                match queue.try_recv() {
                    Ok(keep) => group.push(keep),
                    Err(_) => break,
                }
            }
            let mut room = self.max_bytes.saturating_sub(self.held.bytes.load(Ordering::Relaxed));
            let mut kept = Vec::with_capacity(group.len());
            for keep in group {
                let size = keep.payload.len() as u64;
                if size > room {
                    let _ = keep.written.send(Err(SpoolError::Full { limit: self.max_bytes }));
                } else {
                    room -= size;
                    kept.push(keep);
                }
            }
            let written = self.commit(&kept);
            for keep in kept {
                let _ = keep.written.send(written.clone());
            }
        }
    }

    /// Writes `kept` in one durable commit.
    fn commit(&mut self, kept: &[Keep]) -> Result<(), SpoolError> {
        if kept.is_empty() {
            return Ok(());
        }
        let write = self.db.begin_write().map_err(storage)?;
        let mut bytes = 0;
        {
            let mut table = write.open_table(EVENTS).map_err(storage)?;
            for keep in kept {
                table.insert(self.next_key, keep.payload.as_slice()).map_err(storage)?;
                self.next_key += 1;
                bytes += keep.payload.len() as u64;
            }
        }
        write.commit().map_err(storage)?;
        self.held.events.fetch_add(kept.len() as u64, Ordering::Relaxed);
        self.held.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
}

/// Publishes what the spool holds, oldest first, whenever it holds anything, and keeps its
/// metrics. Runs for as long as ingest does.
pub async fn replay_forever(spool: Arc<Spool>, publisher: Publisher, metrics: Metrics) {
    loop {
        let reader = spool.clone();
        let reported = metrics.clone();
        // One read serves the round and its gauges, and none while the spool is empty.
        let oldest = tokio::task::spawn_blocking(move || {
            let oldest = if reader.events() == 0 { Ok(Vec::new()) } else { reader.oldest(REPLAY_BATCH) };
            let first = oldest.as_ref().ok().and_then(|events| events.first()).map(|(_, payload)| payload.as_slice());
            reader.report(&reported, first);
            oldest
        })
        .await;
        let oldest = match oldest {
            Ok(Ok(oldest)) => oldest,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the spool");
                Vec::new()
            }
            Err(error) => {
                tracing::error!(%error, "the spool reader failed");
                Vec::new()
            }
        };
        if oldest.is_empty() {
            tokio::time::sleep(REPLAY_EVERY).await;
            continue;
        }
        let all_published = replay(&spool, oldest, &publisher, &metrics).await;
        if !all_published {
            tokio::time::sleep(REPLAY_EVERY).await;
        }
    }
}

/// Publishes `oldest` and deletes from the spool what JetStream confirmed. Returns whether it
/// confirmed them all.
async fn replay(spool: &Arc<Spool>, oldest: Vec<(u64, Vec<u8>)>, publisher: &Publisher, metrics: &Metrics) -> bool {
    let mut done = Vec::with_capacity(oldest.len());
    let mut keys = Vec::with_capacity(oldest.len());
    let mut events = Vec::with_capacity(oldest.len());
    for (key, payload) in oldest {
        match AdEvent::from_json(&payload) {
            Ok(event) => {
                keys.push(key);
                events.push(event);
            }
            // Only ingest writes here, so only a build that cannot read an older one's events
            // (a schema version dropped) gets here: nothing could ever publish it.
            Err(error) => {
                tracing::error!(%error, "dropping a spooled event this build cannot read");
                metrics.tracking_unrecorded.with_label_values(&["spool", "spool_unreadable"]).inc();
                done.push(key);
            }
        }
    }
    let outcomes = publisher.publish_many(&events).await;
    let mut replayed = 0;
    for (key, outcome) in keys.into_iter().zip(outcomes) {
        if outcome.is_ok() {
            done.push(key);
            replayed += 1;
        }
    }
    let all_published = replayed == events.len();
    if done.is_empty() {
        return all_published;
    }
    let deleter = spool.clone();
    match tokio::task::spawn_blocking(move || deleter.remove(&done)).await {
        Ok(Ok(())) => {
            metrics.spool_replayed.inc_by(replayed as u64);
            tracing::info!(events = replayed, left = spool.events(), "replayed spooled events into the stream");
        }
        // Published but still spooled: replayed again later, and counted once by event id.
        Ok(Err(error)) => tracing::error!(%error, "cannot delete replayed events from the spool"),
        Err(error) => tracing::error!(%error, "the spool deleter failed"),
    }
    all_published
}

#[cfg(test)]
mod tests {
    use schemas::EventKind;
    use uuid::Uuid;

    use super::*;

    fn event(id: u128) -> AdEvent {
        let event = AdEvent::new(EventKind::Impression, Uuid::from_u128(id), Uuid::from_u128(7));
        AdEvent { received_at: event.received_at - time::Duration::seconds(30), ..event }
    }

    fn scratch() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("ingest-spool-test-{}", Uuid::now_v7()))
    }

    #[tokio::test]
    async fn kept_events_outlive_the_process_in_order() {
        let dir = scratch();
        let spool = Spool::open(&dir, 1 << 20).expect("open");
        for id in 1..=3 {
            spool.keep(&event(id)).await.expect("keep");
        }
        assert_eq!(spool.events(), 3);
        assert!(age_secs(&spool.oldest(1).expect("read")[0].1) >= 30.0);
        drop(spool);
        // The writer thread ends once its queue is gone; the file is then free again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spool = Spool::open(&dir, 1 << 20).expect("reopen");
        assert_eq!(spool.events(), 3);
        let oldest = spool.oldest(2).expect("read");
        let ids: Vec<Uuid> = oldest.iter().map(|(_, p)| AdEvent::from_json(p).expect("event").event_id).collect();
        assert_eq!(ids, [Uuid::from_u128(1), Uuid::from_u128(2)]);
        spool.remove(&oldest.iter().map(|(key, _)| *key).collect::<Vec<_>>()).expect("remove");
        assert_eq!(spool.events(), 1);
        spool.keep(&event(4)).await.expect("keep after reopening");
        let ids: Vec<Uuid> = spool
            .oldest(10)
            .expect("read")
            .iter()
            .map(|(_, p)| AdEvent::from_json(p).expect("event").event_id)
            .collect();
        assert_eq!(ids, [Uuid::from_u128(3), Uuid::from_u128(4)], "new keys follow the old ones");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_and_takes_again_once_replayed() {
        let dir = scratch();
        let size = event(1).to_json().len() as u64;
        let spool = Spool::open(&dir, 2 * size).expect("open");
        spool.keep(&event(1)).await.expect("first");
        spool.keep(&event(2)).await.expect("second");
        let refused = spool.keep(&event(3)).await;
        assert!(matches!(refused, Err(SpoolError::Full { .. })), "{refused:?}");
        assert_eq!(spool.events(), 2);
        let keys: Vec<u64> = spool.oldest(1).expect("read").iter().map(|(key, _)| *key).collect();
        spool.remove(&keys).expect("remove");
        spool.keep(&event(3)).await.expect("room again");
        let _ = std::fs::remove_dir_all(dir);
    }
}
