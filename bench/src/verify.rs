//! Exactly once, checked after the load: every event id that got a 202 is in ClickHouse once,
//! billable or flagged as invalid traffic, and nothing else is.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::Stack;
use schemas::EventKind;
use serde::Serialize;
use uuid::Uuid;

/// What the clients were told about their events.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Distinct ids answered 202 (accepted or duplicate), by kind.
    pub clicks: HashSet<Uuid>,
    pub impressions: HashSet<Uuid>,
    /// Ids whose fate the client cannot know: a 503, a lost connection, a timeout. They may or
    /// may not be stored.
    pub uncertain: HashSet<Uuid>,
    /// Events sent without an `event_id` whose id the client never learned, so ingest
    /// assigned one it was not told: unanswered (each may be stored, once), or answered 202
    /// without naming the event. Only the total can account for them.
    pub uncertain_unnamed: u64,
}

impl Outcomes {
    pub fn stored(&mut self, kind: EventKind, id: Uuid) {
        match kind {
            EventKind::Click => self.clicks.insert(id),
            EventKind::Impression => self.impressions.insert(id),
        };
    }

    pub fn uncertain(&mut self, id: Uuid) {
        self.uncertain.insert(id);
    }

    pub fn uncertain_unnamed(&mut self) {
        self.uncertain_unnamed += 1;
    }

    pub fn merge(&mut self, other: Outcomes) {
        self.clicks.extend(other.clicks);
        self.impressions.extend(other.impressions);
        self.uncertain.extend(other.uncertain);
        self.uncertain_unnamed += other.uncertain_unnamed;
    }

    /// Uncertain events that no later answer settled (an unnamed one cannot be settled).
    fn still_uncertain(&self) -> u64 {
        let named =
            self.uncertain.iter().filter(|id| !self.clicks.contains(id) && !self.impressions.contains(id)).count()
                as u64;
        named + self.uncertain_unnamed
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Which phases had run.
    pub after: String,
    /// Unprocessed messages in the stream when the wait began, and how long draining took.
    pub pending_at_start: u64,
    pub drain_secs: f64,
    pub expected_clicks: u64,
    pub expected_impressions: u64,
    /// Events answered 503 or not at all: each may or may not be stored.
    pub uncertain: u64,
    /// Rows of each kind, billable (`click_events`, `impression_events`) and flagged
    /// (`invalid_events`) together.
    pub stored_clicks: u64,
    pub stored_impressions: u64,
    /// Of those, the ones flagged as invalid traffic.
    pub flagged_clicks: u64,
    pub flagged_impressions: u64,
    /// Every rollup table (`click_events_per_*`, `impression_events_per_*`,
    /// `invalid_events_per_*`) with its sum of events: each must equal its raw table's rows.
    pub rollups: BTreeMap<String, u64>,
    pub ok: bool,
}

/// Waits until the aggregator has written and acked everything in the stream, then compares
/// ClickHouse with `outcomes`.
pub async fn drain_and_check(
    stack: &Stack,
    outcomes: &Outcomes,
    after: &str,
    timeout: Duration,
) -> anyhow::Result<Verification> {
    let started = Instant::now();
    let (_, pending_at_start, _) = stack.stream_state().await;
    loop {
        // Only with nothing pending and nothing unacked can no insert still be on its way.
        let (_, pending, unacked) = stack.stream_state().await;
        if pending == 0 && unacked == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "the aggregator did not drain the stream within {timeout:?}: {pending} pending, {unacked} unacked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let count = |sql: &'static str| async move {
        let text = stack.sql(sql).await.map_err(anyhow::Error::msg).with_context(|| sql.to_owned())?;
        text.parse::<u64>().with_context(|| format!("{sql}: {text:?} is not a count"))
    };
    let billable_clicks = count("SELECT count() FROM click_events").await?;
    let billable_impressions = count("SELECT count() FROM impression_events").await?;
    let flagged_clicks = count("SELECT count() FROM invalid_events WHERE kind = 'click'").await?;
    let flagged_impressions = count("SELECT count() FROM invalid_events WHERE kind = 'impression'").await?;
    let (stored_clicks, stored_impressions) =
        (billable_clicks + flagged_clicks, billable_impressions + flagged_impressions);
    let rollups = rollup_sums(stack).await?;
    anyhow::ensure!(!rollups.is_empty(), "no rollup tables found");
    let rollups_agree = rollups.iter().all(|(table, &sum)| {
        sum == raw_rows_of(table, billable_clicks, billable_impressions, flagged_clicks + flagged_impressions)
    });
    let (expected_clicks, expected_impressions) = (outcomes.clicks.len() as u64, outcomes.impressions.len() as u64);
    let uncertain = outcomes.still_uncertain();
    let stored = stored_clicks + stored_impressions;
    let expected = expected_clicks + expected_impressions;
    let exact = stored_clicks == expected_clicks && stored_impressions == expected_impressions;
    // An uncertain event may have been stored (once): then only the total is bounded.
    let within = uncertain > 0 && (expected..=expected + uncertain).contains(&stored);
    Ok(Verification {
        after: after.to_owned(),
        pending_at_start,
        drain_secs,
        expected_clicks,
        expected_impressions,
        uncertain,
        stored_clicks,
        stored_impressions,
        flagged_clicks,
        flagged_impressions,
        rollups,
        ok: (exact || within) && rollups_agree,
    })
}

/// The raw rows a rollup table must add up to.
pub fn raw_rows_of(rollup: &str, clicks: u64, impressions: u64, flagged: u64) -> u64 {
    match rollup {
        r if r.starts_with("click_") => clicks,
        r if r.starts_with("impression_") => impressions,
        _ => flagged,
    }
}

/// Sums every rollup table there is (the set grows with the migrations).
async fn rollup_sums(stack: &Stack) -> anyhow::Result<BTreeMap<String, u64>> {
    let tables = stack
        .sql(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine != 'MaterializedView' \
             AND (startsWith(name, 'click_events_per_') OR startsWith(name, 'impression_events_per_') \
             OR startsWith(name, 'invalid_events_per_')) ORDER BY name",
        )
        .await
        .map_err(anyhow::Error::msg)
        .context("listing the rollup tables")?;
    let mut sums = BTreeMap::new();
    for table in tables.lines() {
        let column = match table {
            t if t.starts_with("click_") => "clicks",
            t if t.starts_with("impression_") => "impressions",
            _ => "events",
        };
        let sql = format!("SELECT sum({column}) FROM {table}");
        let text = stack.sql(&sql).await.map_err(anyhow::Error::msg).with_context(|| sql.clone())?;
        sums.insert(table.to_owned(), text.parse().with_context(|| format!("{sql}: {text:?} is not a count"))?);
    }
    Ok(sums)
}
