//! Writes batches of events into the ClickHouse raw tables, exactly once.
//!
//! Wire protocol: ClickHouse HTTP, `RowBinaryWithNamesAndTypes` inserts (the `clickhouse` crate
//! checks our row types against the table on the first insert).
//!
//! Two mechanisms keep an event from being counted twice:
//! - **An event that comes back** — redelivered after a crash (inserted, not acked), or sent
//!   again by a client after JetStream's duplicate window: before inserting, events whose
//!   `event_id` is in `stored_event_ids_kv` (or earlier in the same batch) are dropped; the caller
//!   still acks their messages. That lookup sees an event only once the insert holding it has
//!   ended, and an insert can outlive the aggregator that sent it (killed, or gone on after a
//!   timeout): so the consumer first waits for the inserts ClickHouse began before it started,
//!   and a batch with redelivered messages for those begun before it was pulled
//!   ([`Sink::await_inserts_begun_before`]).
//! - **A retried insert** (the response was lost, or a materialized view failed half-way): the
//!   retry carries the same `insert_deduplication_token`, which the raw table and, through
//!   `deduplicate_blocks_in_dependent_materialized_views`, every materialized view's table
//!   recognise.
//!
//! A batch ClickHouse rejects for good ([`AggregatorError::Rejected`]: a constraint, a value out
//! of range) is halved, and each half written or halved again, until the rows at fault stand
//! alone; those are returned for the caller to dead-letter, and every other row is written. Each
//! part is an insert of its own rows, with their own token, so a crash half-way is recognised like
//! any other.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clickhouse::Client;
use futures::StreamExt;
use schemas::rows::{ClickRow, EventRow, ImpressionRow, InvalidEventRow};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::error::AggregatorError;
use crate::ivt::{self, History};
use crate::metrics::Metrics;

pub const CLICK_TABLE: &str = "click_events";
pub const IMPRESSION_TABLE: &str = "impression_events";
pub const INVALID_TABLE: &str = "invalid_events";
/// Event ids per `stored_event_ids_kv` lookup.
/// Inserts into this database that ClickHouse has been running for more than `{secs:Float64}`
/// seconds. The aggregator's ClickHouse user may read only these columns of `system.processes`.
pub const INSERTS_RUNNING_LONGER_THAN: &str = "SELECT count() FROM system.processes \
     WHERE query_kind = 'Insert' AND current_database = currentDatabase() AND elapsed > {secs:Float64}";

const LOOKUP_CHUNK: usize = 1_000;
/// Lookups of one batch in flight at once.
const PARALLEL_LOOKUPS: usize = 4;

/// Waits until ClickHouse has ended every insert into `client`'s database that it began before
/// `since`. Should ClickHouse not answer, it returns: what the caller does next fails the same
/// way, and is retried.
pub async fn await_inserts_begun_before(client: &Client, since: Instant) {
    let mut last_report = Instant::now();
    loop {
        let running = client
            .query(INSERTS_RUNNING_LONGER_THAN)
            .param("secs", since.elapsed().as_secs_f64())
            .fetch_one::<u64>()
            .await;
        match running {
            Ok(0) => return,
            Ok(inserts) if last_report.elapsed() >= Duration::from_secs(10) => {
                tracing::warn!(
                    inserts,
                    waited_secs = since.elapsed().as_secs(),
                    "waiting for inserts ClickHouse began earlier"
                );
                last_report = Instant::now();
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "could not tell whether earlier inserts still run");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A raw-table row that knows which stream message it came from.
pub trait SequencedRow: clickhouse::RowOwned + clickhouse::RowWrite + Serialize + Send + Sync {
    fn key(&self) -> (u64, Uuid);
    fn timestamp(&self) -> OffsetDateTime;
}

macro_rules! sequenced_rows {
    ($($row:ty),*) => {$(
        impl SequencedRow for $row {
            fn key(&self) -> (u64, Uuid) {
                (self.stream_seq, self.event_id)
            }
            fn timestamp(&self) -> OffsetDateTime {
                self.timestamp
            }
        }
    )*};
}

sequenced_rows!(ClickRow, ImpressionRow, InvalidEventRow);

#[derive(Clone)]
pub struct Sink {
    client: Client,
    backoff: Backoff,
    metrics: Metrics,
    /// The invalid-traffic rules that read visitors' history; none: no such rule.
    history: Option<History>,
}

/// What a write did, for logs, tests and the write announcement.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub inserted: usize,
    pub already_stored: usize,
    /// The earliest `timestamp` among the events inserted.
    pub earliest_timestamp: Option<OffsetDateTime>,
    /// The events ClickHouse refused for good, each with its error; none of them was written.
    pub rejected: Vec<(Uuid, AggregatorError)>,
}

impl WriteOutcome {
    /// Adds what another part of the same write did.
    fn merge(&mut self, part: WriteOutcome) {
        self.inserted += part.inserted;
        self.already_stored += part.already_stored;
        self.earliest_timestamp = self.earliest_timestamp.into_iter().chain(part.earliest_timestamp).min();
        self.rejected.extend(part.rejected);
    }
}

impl Sink {
    pub fn new(client: Client, backoff: Backoff, metrics: Metrics) -> Self {
        Self { client, backoff, metrics, history: None }
    }

    /// Applies [`ivt`]'s rules to every batch before writing it.
    pub fn with_invalid_traffic_rules(mut self, rules: ivt::Rules) -> Self {
        self.history = Some(History::new(self.client.clone(), rules));
        self
    }

    /// Waits until ClickHouse has ended every insert into this database that it began before
    /// `pulled`: one may hold the events of redelivered messages, whose ids the lookup would
    /// miss while it runs. Should ClickHouse not answer, the write's own retries take over.
    pub async fn await_inserts_begun_before(&self, pulled: Instant) {
        await_inserts_begun_before(&self.client, pulled).await;
    }

    /// Writes every event not stored yet, retrying temporary failures with backoff until they
    /// succeed. Returns only once ClickHouse holds every event but those it rejected for good,
    /// so the caller may then ack.
    pub async fn write(&self, rows: Vec<EventRow>) -> WriteOutcome {
        if rows.is_empty() {
            return WriteOutcome::default();
        }
        let ids: Vec<Uuid> = rows.iter().map(EventRow::event_id).collect();
        // The two reads before the insert do not depend on each other, so they run at once and
        // a batch waits for the longer one, not both (while ClickHouse is short of CPU they slow
        // each other down and the gain is small: BENCHMARKS.md). A repeat's history is read for
        // nothing, but repeats are rare and dropped below.
        let stored_ids = async {
            let started = Instant::now();
            let stored = self.retry("look up stored event ids", || self.stored_event_ids(&ids)).await;
            self.metrics.stage_seconds.with_label_values(&["lookup"]).observe(started.elapsed().as_secs_f64());
            stored
        };
        let earlier_events = async {
            let history = self.history.as_ref()?;
            let started = Instant::now();
            let history_before = self.retry("look up visitors' earlier events", || history.before(&rows)).await;
            self.metrics.stage_seconds.with_label_values(&["ivt_lookup"]).observe(started.elapsed().as_secs_f64());
            Some((history.rules(), history_before))
        };
        let (stored, earlier) = tokio::join!(stored_ids, earlier_events);
        let (fresh, already_stored) = drop_repeats(rows, &stored);
        if already_stored > 0 {
            tracing::warn!(events = already_stored, "skipping events already stored");
            self.metrics.already_stored.inc_by(already_stored as u64);
        }
        let fresh = match earlier {
            Some((rules, history_before)) => ivt::flag(fresh, rules, &history_before),
            None => fresh,
        };
        let mut clicks = Vec::new();
        let mut impressions = Vec::new();
        let mut invalid = Vec::new();
        for row in fresh {
            match row {
                EventRow::Click(row) => clicks.push(row),
                EventRow::Impression(row) => impressions.push(row),
                EventRow::Invalid(row) => invalid.push(row),
            }
        }
        let (clicks, impressions, invalid) = tokio::join!(
            self.insert_all(CLICK_TABLE, clicks),
            self.insert_all(IMPRESSION_TABLE, impressions),
            self.insert_all(INVALID_TABLE, invalid)
        );
        let mut outcome = WriteOutcome { already_stored, ..WriteOutcome::default() };
        for table in [clicks, impressions, invalid] {
            outcome.merge(table);
        }
        outcome
    }

    /// Which of `ids` ClickHouse already holds (key-value reads).
    async fn stored_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, clickhouse::error::Error> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Stored {
            #[serde(with = "clickhouse::serde::uuid")]
            event_id: Uuid,
        }
        // Query parameters travel as HTTP form fields, which ClickHouse caps (128 KiB by
        // default): 1,000 ids (~39 KB) per lookup stays well below. A few lookups run at once,
        // which more than halves a large batch's wait.
        let lookups: Vec<_> = ids
            .chunks(LOOKUP_CHUNK)
            .map(|chunk| {
                let chunk: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
                let query = self
                    .client
                    .query("SELECT DISTINCT event_id FROM stored_event_ids_kv WHERE event_id IN {ids:Array(UUID)}")
                    .param("ids", chunk);
                async move { query.fetch_all::<Stored>().await }
            })
            .collect();
        let mut found = futures::stream::iter(lookups).buffer_unordered(PARALLEL_LOOKUPS);
        let mut stored = HashSet::new();
        while let Some(rows) = found.next().await {
            stored.extend(rows?.into_iter().map(|s| s.event_id));
        }
        Ok(stored)
    }

    /// Inserts `rows`, all of them but those ClickHouse rejects for good, which halving the
    /// batch (again and again, until they stand alone) leaves out.
    async fn insert_all<R: SequencedRow>(&self, table: &'static str, rows: Vec<R>) -> WriteOutcome {
        let mut outcome = WriteOutcome::default();
        let mut parts = vec![rows];
        while let Some(mut part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            let token = dedup_token(table, part.iter().map(SequencedRow::key));
            match self.retry_unless_rejected(|| self.insert(table, &part, &token)).await {
                Ok(()) => {
                    self.metrics.inserted.with_label_values(&[table]).inc_by(part.len() as u64);
                    outcome.merge(WriteOutcome {
                        inserted: part.len(),
                        earliest_timestamp: part.iter().map(R::timestamp).min(),
                        ..WriteOutcome::default()
                    });
                }
                Err(error) if part.len() == 1 => {
                    tracing::error!(table, event_id = %part[0].key().1, %error, "ClickHouse rejects an event for good");
                    outcome.rejected.push((part[0].key().1, error));
                }
                Err(error) => {
                    tracing::warn!(table, rows = part.len(), %error, "ClickHouse rejects a batch for good; halving it to find the rows at fault");
                    let second_half = part.split_off(part.len() / 2);
                    parts.push(second_half);
                    parts.push(part);
                }
            }
        }
        outcome
    }

    async fn insert<R: SequencedRow>(
        &self,
        table: &str,
        rows: &[R],
        token: &str,
    ) -> Result<(), clickhouse::error::Error> {
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

    /// Calls `op` until it succeeds. For reads: an error there is no row's fault.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => return value,
                Err(error) => self.back_off(what, &mut attempt, &error).await,
            }
        }
    }

    /// Calls `op` until it succeeds or ClickHouse rejects its rows for good.
    async fn retry_unless_rejected<F, Fut>(&self, mut op: F) -> Result<(), AggregatorError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), clickhouse::error::Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await.map_err(AggregatorError::from_clickhouse) {
                Ok(()) => return Ok(()),
                Err(AggregatorError::Unavailable(error)) => self.back_off("insert", &mut attempt, &error).await,
                Err(rejected) => return Err(rejected),
            }
        }
    }

    async fn back_off(&self, what: &str, attempt: &mut u32, error: &clickhouse::error::Error) {
        let delay = self.backoff.delay(*attempt, &mut rand::rng());
        tracing::warn!(what, attempt, %error, retry_in_ms = delay.as_millis() as u64, "clickhouse call failed");
        self.metrics.insert_retries.inc();
        tokio::time::sleep(delay).await;
        *attempt = attempt.saturating_add(1);
    }
}

/// Keeps the first row of each event id not in `stored`; returns them and how many were dropped.
pub fn drop_repeats(rows: Vec<EventRow>, stored: &HashSet<Uuid>) -> (Vec<EventRow>, usize) {
    let total = rows.len();
    let mut seen = HashSet::with_capacity(total);
    let fresh: Vec<EventRow> = rows
        .into_iter()
        .filter(|row| {
            let id = row.event_id();
            !stored.contains(&id) && seen.insert(id)
        })
        .collect();
    let dropped = total - fresh.len();
    (fresh, dropped)
}

/// The same rows always give the same token, whatever order they were pulled in; event ids are
/// part of it so that a recreated stream (sequences restarting at 1) never reuses a token.
pub fn dedup_token(table: &str, keys: impl Iterator<Item = (u64, Uuid)>) -> String {
    let mut keys: Vec<(u64, Uuid)> = keys.collect();
    keys.sort_unstable();
    let hash =
        schemas::rows::fnv1a64(keys.iter().flat_map(|(seq, id)| seq.to_le_bytes().into_iter().chain(id.into_bytes())));
    let first = keys.first().map_or(0, |k| k.0);
    let last = keys.last().map_or(0, |k| k.0);
    format!("{table}:{first}-{last}:{}:{hash:016x}", keys.len())
}

#[cfg(test)]
mod tests {
    use schemas::{AdEvent, EventKind};

    use super::*;

    fn click(id: u128, seq: u64) -> EventRow {
        EventRow::from_event(AdEvent::new(EventKind::Click, Uuid::from_u128(id), Uuid::nil()), seq)
    }

    #[test]
    fn repeats_in_clickhouse_or_in_the_batch_are_dropped() {
        let stored = HashSet::from([Uuid::from_u128(2)]);
        let rows = vec![click(1, 10), click(2, 11), click(3, 12), click(1, 13)];
        let (fresh, dropped) = drop_repeats(rows, &stored);
        assert_eq!(dropped, 2);
        let kept: Vec<(u64, Uuid)> = fresh
            .iter()
            .map(|r| match r {
                EventRow::Click(c) => c.key(),
                EventRow::Impression(i) => i.key(),
                EventRow::Invalid(i) => i.key(),
            })
            .collect();
        assert_eq!(kept, vec![(10, Uuid::from_u128(1)), (12, Uuid::from_u128(3))]);
    }

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
        // Fixed across builds (checked against a Python FNV-1a): a retry after an upgrade must
        // carry the same token.
        assert_eq!(a, "click_events:1-3:3:357a5600892fdb4c");
        // Same sequences, other events (a recreated stream): another token.
        let other = [(1, Uuid::from_u64_pair(8, 1)), (2, Uuid::from_u64_pair(8, 2)), (3, Uuid::from_u64_pair(8, 3))];
        assert_ne!(a, dedup_token("click_events", other.into_iter()));
    }
}
