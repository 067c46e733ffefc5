//! Writes batches of events into the ClickHouse raw tables, exactly once.
//!
//! Wire protocol: ClickHouse HTTP, `RowBinaryWithNamesAndTypes` inserts (the `clickhouse` crate
//! checks our row types against the table on the first insert).
//!
//! Two mechanisms keep a row from being counted twice:
//! - **Redelivery after a crash** (inserted, not acked): before inserting, the rows whose
//!   `(stream_seq, event_id)` the table already holds are dropped; the caller still acks their
//!   messages. The event_id makes a recreated stream, whose sequences restart at 1, safe.
//! - **A retried insert** (the response was lost, or a materialized view failed half-way): the
//!   retry carries the same `insert_deduplication_token`, which the raw table and, through
//!   `deduplicate_blocks_in_dependent_materialized_views`, every rollup recognise.

use std::collections::HashSet;

use uuid::Uuid;
use std::time::Instant;

use clickhouse::Client;
use schemas::rows::{ClickRow, EventRow, ImpressionRow};
use serde::Serialize;

use crate::backoff::Backoff;
use crate::metrics::Metrics;

pub const CLICK_TABLE: &str = "click_events";
pub const IMPRESSION_TABLE: &str = "impression_events";

/// A row that knows which stream message it came from.
pub trait SequencedRow: clickhouse::RowOwned + clickhouse::RowWrite + Serialize + Send + Sync {
    fn stream_seq(&self) -> u64;
    fn event_id(&self) -> Uuid;
    fn key(&self) -> (u64, Uuid) {
        (self.stream_seq(), self.event_id())
    }
}

impl SequencedRow for ClickRow {
    fn stream_seq(&self) -> u64 {
        self.stream_seq
    }
    fn event_id(&self) -> Uuid {
        self.event_id
    }
}

impl SequencedRow for ImpressionRow {
    fn stream_seq(&self) -> u64 {
        self.stream_seq
    }
    fn event_id(&self) -> Uuid {
        self.event_id
    }
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct StoredKey {
    stream_seq: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    event_id: Uuid,
}

#[derive(Clone)]
pub struct Sink {
    client: Client,
    backoff: Backoff,
    metrics: Metrics,
}

/// What a write did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    pub inserted: usize,
    pub already_stored: usize,
}

impl Sink {
    pub fn new(client: Client, backoff: Backoff, metrics: Metrics) -> Self {
        Self { client, backoff, metrics }
    }

    /// Writes every row, retrying temporary failures with backoff until they succeed.
    /// Returns only once ClickHouse holds every row, so the caller may then ack.
    pub async fn write(&self, rows: Vec<EventRow>) -> WriteOutcome {
        let mut clicks = Vec::new();
        let mut impressions = Vec::new();
        for row in rows {
            match row {
                EventRow::Click(row) => clicks.push(row),
                EventRow::Impression(row) => impressions.push(row),
            }
        }
        let (a, b) = tokio::join!(self.write_table(CLICK_TABLE, clicks), self.write_table(IMPRESSION_TABLE, impressions));
        WriteOutcome { inserted: a.inserted + b.inserted, already_stored: a.already_stored + b.already_stored }
    }

    async fn write_table<R: SequencedRow>(&self, table: &'static str, rows: Vec<R>) -> WriteOutcome {
        if rows.is_empty() {
            return WriteOutcome::default();
        }
        let stored = self.retry(table, "look up stored rows", || self.stored_keys(table, &rows)).await;
        let total = rows.len();
        let rows: Vec<R> = rows.into_iter().filter(|r| !stored.contains(&r.key())).collect();
        let outcome = WriteOutcome { inserted: rows.len(), already_stored: total - rows.len() };
        if outcome.already_stored > 0 {
            tracing::warn!(table, rows = outcome.already_stored, "skipping redelivered events already stored");
            self.metrics.redelivered_skipped.with_label_values(&[table]).inc_by(outcome.already_stored as u64);
        }
        if rows.is_empty() {
            return outcome;
        }
        let token = dedup_token(table, rows.iter().map(SequencedRow::key));
        self.retry(table, "insert", || self.insert(table, &rows, &token)).await;
        self.metrics.inserted.with_label_values(&[table]).inc_by(rows.len() as u64);
        outcome
    }

    /// The `(stream_seq, event_id)` pairs of `rows` that the table already holds.
    async fn stored_keys<R: SequencedRow>(
        &self,
        table: &str,
        rows: &[R],
    ) -> Result<HashSet<(u64, Uuid)>, clickhouse::error::Error> {
        // An exact set, not a range: a redelivered old message in a batch of new ones must not
        // make this read every row in between. The minmax index on stream_seq serves IN too.
        let seqs: Vec<u64> = rows.iter().map(SequencedRow::stream_seq).collect();
        let stored = self
            .client
            .query(&format!("SELECT stream_seq, event_id FROM {table} WHERE stream_seq IN {{seqs:Array(UInt64)}}"))
            .param("seqs", seqs)
            .fetch_all::<StoredKey>()
            .await?;
        Ok(stored.into_iter().map(|k| (k.stream_seq, k.event_id)).collect())
    }

    async fn insert<R: SequencedRow>(&self, table: &str, rows: &[R], token: &str) -> Result<(), clickhouse::error::Error> {
        let started = Instant::now();
        let mut insert = self
            .client
            .insert::<R>(table)
            .await?
            .with_setting("insert_deduplication_token", token)
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1")
            // A batch may span many months (old timestamps are valid while the stream keeps
            // them); failing it would block the consumer for good.
            .with_setting("throw_on_max_partitions_per_insert_block", "0");
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        self.metrics.insert_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn retry<T, F, Fut>(&self, table: &str, what: &str, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => return value,
                Err(error) => {
                    let delay = self.backoff.delay(attempt, &mut rand::rng());
                    tracing::warn!(table, what, attempt, %error, retry_in_ms = delay.as_millis() as u64, "clickhouse call failed");
                    self.metrics.insert_retries.inc();
                    tokio::time::sleep(delay).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

/// The same rows always give the same token, whatever order they were pulled in; event ids are
/// part of it so that a recreated stream (sequences restarting at 1) never reuses a token.
pub fn dedup_token(table: &str, keys: impl Iterator<Item = (u64, Uuid)>) -> String {
    let mut keys: Vec<(u64, Uuid)> = keys.collect();
    keys.sort_unstable();
    // FNV-1a over the sorted keys: stable across builds, unlike std's hasher.
    let hash = keys.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, (seq, id)| {
        seq.to_le_bytes()
            .iter()
            .chain(id.as_bytes())
            .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
    });
    let first = keys.first().map_or(0, |k| k.0);
    let last = keys.last().map_or(0, |k| k.0);
    format!("{table}:{first}-{last}:{}:{hash:016x}", keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seqs: &[u64]) -> impl Iterator<Item = (u64, Uuid)> + '_ {
        seqs.iter().map(|s| (*s, Uuid::from_u64_pair(7, *s)))
    }

    #[test]
    fn token_depends_on_the_set_of_rows_only() {
        let a = dedup_token("click_events", keys(&[3, 1, 2]));
        assert_eq!(a, dedup_token("click_events", keys(&[1, 2, 3])));
        assert_ne!(a, dedup_token("click_events", keys(&[1, 2, 4])));
        assert_ne!(a, dedup_token("click_events", keys(&[1, 3])));
        assert_ne!(a, dedup_token("impression_events", keys(&[1, 2, 3])));
        assert!(a.starts_with("click_events:1-3:3:"));
        // Same sequences, other events (a recreated stream): another token.
        let other = [(1, Uuid::from_u64_pair(8, 1)), (2, Uuid::from_u64_pair(8, 2)), (3, Uuid::from_u64_pair(8, 3))];
        assert_ne!(a, dedup_token("click_events", other.into_iter()));
    }
}
