//! The unique visitors of closed UTC days, stored as numbers (migration 0012) so that the query
//! service reads one row where it would merge a day of unique-visitor states.
//!
//! Every pass finds the days before today whose stored numbers are missing, or whose `events`
//! no longer equal the day's count in the rollups (a late event arrived since), and computes
//! them again, exactly, from the raw rows. Passes run every `CLOSED_DAYS_INTERVAL_SECS`; the
//! query service never reads a stale row (it checks the count), so a pass that is late or
//! fails costs speed, never correctness. Several aggregators may run passes at once: a row is
//! a pure function of the raw rows, so computing it twice stores the same numbers.

use std::time::Duration;

use clickhouse::Client;
use schemas::stream::WrittenNotice;
use schemas::EventKind;
use time::OffsetDateTime;

use crate::sink::{CLICK_TABLE, IMPRESSION_TABLE};
use crate::written::Announcer;

/// How a pass is scheduled and bounded.
#[derive(Debug, Clone, clap::Args)]
pub struct ClosedDaysArgs {
    /// How often the aggregator stores the unique visitors of closed UTC days that lack them
    /// (or whose count changed). 0 turns it off: queries then merge every day's states.
    #[arg(long, env = "CLOSED_DAYS_INTERVAL_SECS", default_value_t = 30)]
    pub closed_days_interval_secs: u64,
}

/// Most days computed in one pass, oldest first: after a bulk load, the backlog is worked off
/// in several short passes, each of which shows its days' numbers as soon as it ends.
const DAYS_PER_PASS: u64 = 7;

/// Memory a day's distinct visitors may take before ClickHouse spills them to disk: an exact
/// count of a busy day's visitors would otherwise need them all in memory at once.
const GROUP_BY_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// Runs a pass every interval, for good; a failed pass is logged and the next one tries again.
/// Days stored are announced like a write of events at their time: the query service's
/// cached counts of those days came from the states, which the exact numbers may differ from.
pub async fn store_forever(client: Client, args: ClosedDaysArgs, raw_events_ttl_days: u32, written: Announcer) {
    if args.closed_days_interval_secs == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(args.closed_days_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for kind in EventKind::ALL {
            // A full pass may have left more: go on until a pass finds fewer.
            loop {
                match store_stale_days(&client, kind, raw_events_ttl_days).await {
                    Ok(days) => {
                        if let Some(earliest) = days.iter().min() {
                            tracing::info!(kind = kind.as_str(), ?days, "stored closed days' unique visitors");
                            written
                                .announce(WrittenNotice::new(0, 0, OffsetDateTime::from_unix_timestamp(*earliest).ok()))
                                .await;
                        }
                        if days.len() < DAYS_PER_PASS as usize {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, kind = kind.as_str(), "closed days' unique visitors not stored");
                        break;
                    }
                }
            }
        }
    }
}

/// One pass for `kind`: returns the days (unix seconds of their UTC midnight) it stored.
pub async fn store_stale_days(
    client: &Client,
    kind: EventKind,
    raw_events_ttl_days: u32,
) -> clickhouse::error::Result<Vec<i64>> {
    let days = client
        .query(&stale_days_sql(kind, raw_events_ttl_days))
        .param("kind", kind.as_str())
        .param("limit", DAYS_PER_PASS)
        .fetch_all::<i64>()
        .await?;
    for &day in &days {
        // The whole ads' row first: a pass cut short between the two leaves the per-ad rows
        // stale, and the next pass does both again.
        for sql in store_day_sql(kind) {
            client
                .query(&sql)
                .param("kind", kind.as_str())
                .param("day", day)
                .with_setting("max_bytes_before_external_group_by", GROUP_BY_MEMORY_BYTES.to_string())
                .execute()
                .await?;
        }
    }
    Ok(days)
}

/// The raw table of a kind (the sink's), and its day rollup's count column.
fn tables(kind: EventKind) -> (&'static str, &'static str) {
    match kind {
        EventKind::Click => (CLICK_TABLE, "clicks"),
        EventKind::Impression => (IMPRESSION_TABLE, "impressions"),
    }
}

/// The closed days (before today, within the raw tables' retention) on which a stored row,
/// per ad or for every ad together, is missing or counts other events than the rollup.
fn stale_days_sql(kind: EventKind, raw_events_ttl_days: u32) -> String {
    let (raw, count) = tables(kind);
    let rollup = format!("{raw}_per_day");
    // Beyond the raw tables' retention the raw rows are (being) expired: a row computed from
    // them would never match the rollup again. Those days keep the rows they have.
    let retained = match raw_events_ttl_days {
        0 => String::new(),
        days => format!("AND day >= toStartOfDay(now('UTC')) - toIntervalDay({})", days - 1),
    };
    let closed = format!("day < toStartOfDay(now('UTC')) {retained}");
    format!(
        "SELECT toInt64(toUnixTimestamp(day)) AS d FROM ( \
           SELECT r.day AS day FROM \
             (SELECT ad_id, day, sum({count}) AS events FROM {rollup} WHERE {closed} GROUP BY ad_id, day) AS r \
             LEFT JOIN (SELECT ad_id, day, events FROM ad_unique_visitors_per_day FINAL WHERE kind = {{kind:String}} AND {closed}) AS f \
             ON r.ad_id = f.ad_id AND r.day = f.day \
           WHERE r.events != f.events \
           UNION DISTINCT \
           SELECT r.day AS day FROM \
             (SELECT day, sum({count}) AS events FROM {rollup} WHERE {closed} GROUP BY day) AS r \
             LEFT JOIN (SELECT day, events FROM all_ads_unique_visitors_per_day FINAL WHERE kind = {{kind:String}} AND {closed}) AS f \
             ON r.day = f.day \
           WHERE r.events != f.events) \
         GROUP BY d ORDER BY d LIMIT {{limit:UInt64}}"
    )
}

/// The two inserts that store day `{day:Int64}`: every ad together, then each ad. Distinct
/// visitors are counted by grouping (which spills to disk) rather than `uniqExact` (which
/// does not); each row's `events` is the count its visitors came from.
fn store_day_sql(kind: EventKind) -> [String; 2] {
    let (raw, _) = tables(kind);
    let day_rows = format!(
        "FROM {raw} WHERE timestamp >= toDateTime64({{day:Int64}}, 3, 'UTC') \
         AND timestamp < toDateTime64({{day:Int64}} + 86400, 3, 'UTC')"
    );
    [
        format!(
            "INSERT INTO all_ads_unique_visitors_per_day (kind, day, events, visitors, computed_at) \
             SELECT {{kind:String}}, toDateTime({{day:Int64}}, 'UTC'), sum(n), count(), now64(3) \
             FROM (SELECT visitor_id, count() AS n {day_rows} GROUP BY visitor_id)"
        ),
        format!(
            "INSERT INTO ad_unique_visitors_per_day (kind, ad_id, day, events, visitors, computed_at) \
             SELECT {{kind:String}}, ad_id, toDateTime({{day:Int64}}, 'UTC'), sum(n), count(), now64(3) \
             FROM (SELECT ad_id, visitor_id, count() AS n {day_rows} GROUP BY ad_id, visitor_id) GROUP BY ad_id"
        ),
    ]
}
