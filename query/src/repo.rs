//! Every SQL query of the query service. User input reaches ClickHouse only as bound
//! parameters (`{name:Type}`); the SQL text is fixed per call site.

use std::collections::BTreeMap;

use std::time::Instant;

use clickhouse::{Client, Row};
use prometheus::HistogramVec;
use schemas::ivt::InvalidReason;
use schemas::rows::AdRow;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::breakdown::{Dimension, Filters};
use crate::error::QueryError;
use crate::range::{Granularity, Rollup, Rows, Segment, Window, Zone};

/// Sums over a set of rollup rows: what every metric is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub clicks: u64,
    pub unique_clicks: u64,
    pub impressions: u64,
    pub unique_viewers: u64,
    pub playback_time_secs_sum: f64,
    pub playback_count: u64,
    pub watched_percent_sum: f64,
    pub watched_percent_count: u64,
    /// Median and 95th percentile of the playback times reported; `None` when none was.
    pub playback_p50_secs: Option<f64>,
    pub playback_p95_secs: Option<f64>,
    /// Events flagged as invalid traffic, in none of the numbers above.
    pub invalid_clicks: ByReason,
    pub invalid_impressions: ByReason,
}

/// Invalid events per reason, in [`InvalidReason::ALL`]'s order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByReason(pub [u64; InvalidReason::ALL.len()]);

impl ByReason {
    pub fn get(&self, reason: InvalidReason) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl Counts {
    /// Clicks per impression; `None` without impressions (a ratio over nothing is not 0).
    pub fn ctr(&self) -> Option<f64> {
        (self.impressions > 0).then(|| self.clicks as f64 / self.impressions as f64)
    }

    /// Mean playback over the clicks that reported one.
    pub fn avg_playback_time_secs(&self) -> Option<f64> {
        (self.playback_count > 0).then(|| self.playback_time_secs_sum / self.playback_count as f64)
    }

    /// Mean share watched over the clicks that reported one.
    pub fn avg_watched_percent(&self) -> Option<f64> {
        (self.watched_percent_count > 0).then(|| self.watched_percent_sum / self.watched_percent_count as f64)
    }
}

#[derive(Row, Deserialize)]
struct ClickAgg {
    key: String,
    clicks: u64,
    unique_clicks: u64,
    playback_time_secs_sum: f64,
    playback_count: u64,
    watched_percent_sum: f64,
    watched_percent_count: u64,
}

#[derive(Row, Deserialize)]
struct PlaybackAgg {
    key: String,
    /// p50 and p95: t-digest answers in Float32.
    quantiles: Vec<f32>,
}

#[derive(Row, Deserialize)]
struct InvalidAgg {
    key: String,
    kind: String,
    invalid_reason: String,
    events: u64,
}

#[derive(Row, Deserialize)]
struct ImpressionAgg {
    key: String,
    impressions: u64,
    unique_viewers: u64,
}

/// Which ads a read covers.
#[derive(Debug, Clone, Copy)]
pub enum Ads<'a> {
    All,
    One(Uuid),
    These(&'a [Uuid]),
}

impl Ads<'_> {
    /// The `WHERE` condition (with a trailing `AND`); ids are bound parameters.
    fn condition(&self) -> &'static str {
        match self {
            Ads::All => "",
            Ads::One(_) => "ad_id = {ad_id:UUID} AND ",
            Ads::These(_) => "ad_id IN {ad_ids:Array(UUID)} AND ",
        }
    }
}

/// Whether the metrics kept as states are computed: unique clicks and viewers, playback
/// percentiles. Merging states is most of the cost of a read over many ads, so a ranking by a
/// plain sum computes them for its top ads only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum States {
    Merged,
    Skipped,
}

/// What a read of the rollups computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Read {
    /// Every count, sum and unique-visitor number (or none of the latter, [`States::Skipped`]):
    /// all of [`Counts`] but the playback percentiles.
    Counts(States),
    /// The playback percentiles only: unlike the rest, they do not add up across the pieces of
    /// a window, so they are read over the whole of it.
    Percentiles,
}

/// How rollup rows are grouped: a fixed SQL expression, never user text. The answer's keys
/// are ad ids, `total`, or bucket starts in unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Ad,
    /// Everything in one group.
    Total,
    /// Buckets in a zone, whose name is bound as `{tz:String}`.
    Bucket(Granularity, Zone),
}

impl GroupBy {
    fn key_sql(&self) -> String {
        match self {
            GroupBy::Ad => "toString(ad_id)".to_owned(),
            GroupBy::Total => "'total'".to_owned(),
            GroupBy::Bucket(g, _) => format!("toString({})", g.bucket_start_sql("t")),
        }
    }
}

#[derive(Clone)]
pub struct Repo {
    client: Client,
    /// `query_clickhouse_query_duration_seconds{query}`.
    durations: HistogramVec,
}

impl Repo {
    pub fn new(client: Client, durations: HistogramVec) -> Self {
        Self { client, durations }
    }

    /// Runs `query`, recording its duration as `name`'s (errors included: a slow failure is a
    /// slow query too).
    async fn timed<T>(&self, name: &str, query: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let result = query.await;
        self.durations.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
        result
    }

    pub async fn list_ads(&self, offset: u64, limit: u32) -> Result<(Vec<AdRow>, u64), QueryError> {
        let ads = self
            .client
            .query("SELECT ?fields FROM ads FINAL ORDER BY created_at, id LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
            .param("limit", limit)
            .param("offset", offset)
            .fetch_all::<AdRow>();
        let total = self.client.query("SELECT count() FROM ads FINAL").fetch_one::<u64>();
        let (ads, total) = self.timed("ads", async { tokio::try_join!(ads, total) }).await?;
        Ok((ads, total))
    }

    pub async fn get_ad(&self, id: Uuid) -> Result<Option<AdRow>, QueryError> {
        let query = self.client.query("SELECT ?fields FROM ads FINAL WHERE id = {id:UUID}").param("id", id.to_string());
        Ok(self.timed("ad", query.fetch_optional::<AdRow>()).await?)
    }

    /// Stores a version of an ad; the one with the latest `updated_at` is the ad.
    pub async fn insert_ad(&self, row: &AdRow) -> Result<(), QueryError> {
        // Synchronously: the answer to a change must not precede the change being readable.
        let mut insert = self.client.insert::<AdRow>("ads").await?.with_setting("async_insert", "0");
        insert.write(row).await?;
        insert.end().await?;
        Ok(())
    }

    /// When ingest received the newest event stored so far; `None` before the first.
    pub async fn newest_event_received_at(&self) -> Result<Option<OffsetDateTime>, QueryError> {
        let query =
            self.client.query("SELECT toUnixTimestamp64Milli(max(newest_received_at)) FROM events_received_watermark");
        let newest: i64 = self.timed("watermark", query.fetch_one()).await?;
        Ok((newest > 0).then(|| OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(newest)))
    }

    /// What `read` computes over the window's rollup rows of `ads`, per group (keyed as
    /// [`GroupBy`] says); groups without events are absent.
    pub async fn rollups(
        &self,
        window: Window,
        ads: Ads<'_>,
        group: &GroupBy,
        read: Read,
    ) -> Result<BTreeMap<String, Counts>, QueryError> {
        let segments = match group {
            GroupBy::Ad | GroupBy::Total => window.segments(Rollup::Day),
            GroupBy::Bucket(g, zone) => window.series_segments(*g, zone),
        };
        let key = group.key_sql();
        let cut_hours = match group {
            GroupBy::Bucket(g, zone) if segments.iter().any(|s| matches!(s.rows, Rows::InCutHours)) => {
                window.cut_hours(*g, zone)?
            }
            _ => Vec::new(),
        };
        let bind = |sql: &str| {
            let mut query = self.client.query(sql);
            for (i, segment) in segments.iter().enumerate() {
                query = query
                    .param(&format!("from{i}"), segment.from.unix_timestamp())
                    .param(&format!("to{i}"), segment.to.unix_timestamp());
                if let Rows::InCutHours = segment.rows {
                    query = query.param(&format!("cut{i}"), cut_hours.clone());
                }
            }
            if let GroupBy::Bucket(_, zone) = group {
                query = query.param("tz", zone.name());
            }
            match ads {
                Ads::All => query,
                Ads::One(ad) => query.param("ad_id", ad.to_string()),
                Ads::These(ids) => query.param("ad_ids", ids.iter().map(Uuid::to_string).collect::<Vec<_>>()),
            }
        };
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        let Read::Counts(states) = read else {
            let playback_sql = format!(
                "SELECT {key} AS key, quantilesTDigestMerge(0.5, 0.95)(playback_time_secs_quantiles) AS quantiles FROM ({}) GROUP BY key",
                rollup_rows("click_playback", "playback_time_secs_quantiles", &segments, ads)
            );
            for row in self.timed("playback", bind(&playback_sql).fetch_all::<PlaybackAgg>()).await? {
                let counts = out.entry(row.key).or_default();
                let finite = |i: usize| row.quantiles.get(i).map(|&q| f64::from(q)).filter(|q| q.is_finite());
                (counts.playback_p50_secs, counts.playback_p95_secs) = (finite(0), finite(1));
            }
            return Ok(out);
        };
        let stored = StoredDays::of(ads, group);
        let clicks_sql = counts_sql(&CLICKS, &key, &segments, ads, stored, states);
        let impressions_sql = counts_sql(&IMPRESSIONS, &key, &segments, ads, stored, states);
        let invalid_sql = format!(
            "SELECT {key} AS key, kind, invalid_reason, sum(events) AS events FROM ({}) GROUP BY key, kind, invalid_reason",
            rollup_rows("invalid_events", "kind, invalid_reason, events", &segments, ads)
        );
        // Boxed: three fetches side by side make a future large enough to overflow a worker
        // thread's stack in debug builds when several windows are read at once.
        let (clicks, impressions, invalid) = tokio::try_join!(
            Box::pin(self.timed("clicks", bind(&clicks_sql).fetch_all::<ClickAgg>())),
            Box::pin(self.timed("impressions", bind(&impressions_sql).fetch_all::<ImpressionAgg>())),
            Box::pin(self.timed("invalid", bind(&invalid_sql).fetch_all::<InvalidAgg>()))
        )?;
        for row in clicks {
            let counts = out.entry(row.key).or_default();
            counts.clicks = row.clicks;
            counts.unique_clicks = row.unique_clicks;
            counts.playback_time_secs_sum = row.playback_time_secs_sum;
            counts.playback_count = row.playback_count;
            counts.watched_percent_sum = row.watched_percent_sum;
            counts.watched_percent_count = row.watched_percent_count;
        }
        for row in impressions {
            let counts = out.entry(row.key).or_default();
            counts.impressions = row.impressions;
            counts.unique_viewers = row.unique_viewers;
        }
        for row in invalid {
            // A reason or kind this build does not know yet is left out rather than misfiled.
            let Some(reason) = InvalidReason::parse(&row.invalid_reason) else { continue };
            let counts = out.entry(row.key).or_default();
            match row.kind.as_str() {
                "click" => counts.invalid_clicks.0[reason.index()] = row.events,
                "impression" => counts.invalid_impressions.0[reason.index()] = row.events,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// One group of a breakdown: clicks and their unique visitors, or impressions and theirs.
#[derive(Row, Deserialize)]
struct BreakdownAgg {
    key: String,
    events: u64,
    unique_visitors: u64,
}

impl Repo {
    /// Counts per value of `by` over the window, for the events matching `filters`. Only the
    /// counts and unique visitors are filled: the audience rollups keep nothing else.
    pub async fn breakdown(
        &self,
        window: Window,
        by: Dimension,
        filters: &Filters,
    ) -> Result<BTreeMap<String, Counts>, QueryError> {
        let segments = window.segments(Rollup::Day);
        let (key, join) = match by {
            Dimension::Ad => ("toString(r.ad_id)", ""),
            Dimension::Campaign => {
                ("c.campaign_id", " LEFT JOIN (SELECT id, campaign_id FROM ads FINAL) AS c ON c.id = r.ad_id")
            }
            Dimension::DeviceType => ("if(r.device_type = '', 'unknown', r.device_type)", ""),
            Dimension::Browser => ("if(r.browser = '', 'unknown', r.browser)", ""),
            Dimension::Country => ("if(r.country = '', 'unknown', r.country)", ""),
        };
        let sql = |kind: &str, count: &str| {
            format!(
                "SELECT key, sum(events) AS events, sum(visitors) AS unique_visitors FROM ( \
                 SELECT {key} AS key, sum(r.{count}) AS events, uniqMerge(r.unique_visitors) AS visitors \
                 FROM ({}) AS r{join} GROUP BY key, toStartOfDay(r.t)) GROUP BY key",
                audience_rows(kind, count, &segments, filters)
            )
        };
        let bind = |sql: String| {
            let mut query = self.client.query(&sql);
            for (i, segment) in segments.iter().enumerate() {
                query = query
                    .param(&format!("from{i}"), segment.from.unix_timestamp())
                    .param(&format!("to{i}"), segment.to.unix_timestamp());
            }
            if let Some(ad) = filters.ad_id {
                query = query.param("ad_id", ad.to_string());
            }
            if let Some(campaign) = &filters.campaign_id {
                query = query.param("campaign_id", campaign.as_str());
            }
            for (name, value) in [
                ("device_type", filters.device_type),
                ("browser", filters.browser),
                ("country", filters.country.as_deref()),
            ] {
                if let Some(value) = value {
                    query = query.param(name, value);
                }
            }
            query.fetch_all::<BreakdownAgg>()
        };
        let (clicks, impressions) = tokio::try_join!(
            self.timed("breakdown_clicks", bind(sql("click", "clicks"))),
            self.timed("breakdown_impressions", bind(sql("impression", "impressions")))
        )?;
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for row in clicks {
            let counts = out.entry(row.key).or_default();
            (counts.clicks, counts.unique_clicks) = (row.events, row.unique_visitors);
        }
        for row in impressions {
            let counts = out.entry(row.key).or_default();
            (counts.impressions, counts.unique_viewers) = (row.events, row.unique_visitors);
        }
        Ok(out)
    }
}

/// The audience rows of one kind covering the segments, with `ad_id`, the three dimensions,
/// `t` (a time in the rows' UTC day), `count` and `unique_visitors`: hour and day segments from
/// `<kind>_audience_per_<unit>`, the minutes at the edges aggregated from the raw table. Filter
/// values are bound parameters.
fn audience_rows(kind: &str, count: &str, segments: &[Segment], filters: &Filters) -> String {
    let mut conditions = String::new();
    if filters.ad_id.is_some() {
        conditions.push_str("ad_id = {ad_id:UUID} AND ");
    }
    if filters.campaign_id.is_some() {
        conditions.push_str("ad_id IN (SELECT id FROM ads FINAL WHERE campaign_id = {campaign_id:String}) AND ");
    }
    for (name, set) in [
        ("device_type", filters.device_type.is_some()),
        ("browser", filters.browser.is_some()),
        ("country", filters.country.is_some()),
    ] {
        if set {
            conditions.push_str(&format!("{name} = {{{name}:String}} AND "));
        }
    }
    segments
        .iter()
        .enumerate()
        .map(|(i, segment)| match segment.rollup {
            Rollup::Minute => format!(
                "SELECT ad_id, device_type, browser, country, toStartOfDay(timestamp) AS t, count() AS {count}, \
                 uniqState(visitor_id) AS unique_visitors FROM {kind}_events WHERE {conditions}\
                 timestamp >= toDateTime64({{from{i}:Int64}}, 3, 'UTC') AND timestamp < toDateTime64({{to{i}:Int64}}, 3, 'UTC') \
                 GROUP BY ad_id, device_type, browser, country, t"
            ),
            Rollup::Hour | Rollup::Day => {
                let time = segment.rollup.column();
                format!(
                    "SELECT ad_id, device_type, browser, country, {time} AS t, {count}, unique_visitors FROM {kind}_audience_per_{time} \
                     WHERE {conditions}{}",
                    segment.rollup.range_sql(i)
                )
            }
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// A billable event table as the counts read it: the rollups' count column, the unique
/// visitors' name in the answer, and the other sums (all columns of `<table>_per_<unit>`).
struct EventTable {
    /// `kind` in `ad_unique_visitors_per_day` and `all_ads_unique_visitors_per_day`.
    kind: &'static str,
    table: &'static str,
    count: &'static str,
    unique: &'static str,
    other_sums: &'static [&'static str],
}

const CLICKS: EventTable = EventTable {
    kind: "click",
    table: "click_events",
    count: "clicks",
    unique: "unique_clicks",
    other_sums: &["playback_time_secs_sum", "playback_count", "watched_percent_sum", "watched_percent_count"],
};

const IMPRESSIONS: EventTable = EventTable {
    kind: "impression",
    table: "impression_events",
    count: "impressions",
    unique: "unique_viewers",
    other_sums: &[],
};

impl EventTable {
    fn sums(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.count).chain(self.other_sums.iter().copied())
    }

    /// `sum(c) AS c, ...` of each summed column.
    fn summed(&self) -> String {
        self.sums().map(|c| format!("sum({c}) AS {c}")).collect::<Vec<_>>().join(", ")
    }

    /// `prefix` + each summed column, as is.
    fn columns(&self, prefix: &str) -> String {
        self.sums().map(|c| format!("{prefix}{c} AS {c}")).collect::<Vec<_>>().join(", ")
    }

    /// The answer's columns in [`ClickAgg`]'s or [`ImpressionAgg`]'s order: the count, the
    /// unique visitors as `unique`, then the other sums.
    fn answer(&self, unique: &str) -> String {
        let others = self.other_sums.iter().map(|c| format!(", sum({c}) AS {c}")).collect::<String>();
        format!("sum({count}) AS {count}, {unique} AS {name}{others}", count = self.count, name = self.unique)
    }
}

/// Which stored unique visitors of closed UTC days (migration 0012) can stand for a read's
/// whole days: each ad's when every group is one ad, every ad's together when a group spans
/// them all, none for a group of some ads (nothing stores their union).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredDays {
    PerAd,
    AllAds,
    None,
}

impl StoredDays {
    fn of(ads: Ads<'_>, group: &GroupBy) -> StoredDays {
        match (ads, group) {
            (_, GroupBy::Ad) | (Ads::One(_), _) => StoredDays::PerAd,
            (Ads::All, _) => StoredDays::AllAds,
            (Ads::These(_), _) => StoredDays::None,
        }
    }

    /// The day rows of segment `i` whose stored unique visitors are current (their `events`
    /// equal the day's count in the rollup), with the rollup's sums and `visitors`.
    fn current_rows(self, table: &EventTable, i: usize, ads: Ads<'_>) -> Option<String> {
        let EventTable { kind, table: events, count, .. } = table;
        let range = Rollup::Day.range_sql(i);
        let (summed, columns) = (table.summed(), table.columns("d."));
        match self {
            StoredDays::PerAd => {
                let ad = ads.condition();
                Some(format!(
                    "SELECT d.ad_id AS ad_id, d.t AS t, {columns}, s.visitors AS visitors \
                     FROM (SELECT ad_id, day AS t, {summed} FROM {events}_per_day WHERE {ad}{range} GROUP BY ad_id, t) AS d \
                     INNER JOIN (SELECT ad_id, day AS t, events, visitors FROM ad_unique_visitors_per_day FINAL \
                     WHERE kind = '{kind}' AND {ad}{range}) AS s ON d.ad_id = s.ad_id AND d.t = s.t AND d.{count} = s.events"
                ))
            }
            // Grouped as a total or by bucket, which never reads `ad_id`: a placeholder.
            StoredDays::AllAds => Some(format!(
                "SELECT toUUID('00000000-0000-0000-0000-000000000000') AS ad_id, d.t AS t, {columns}, s.visitors AS visitors \
                 FROM (SELECT day AS t, {summed} FROM {events}_per_day WHERE {range} GROUP BY t) AS d \
                 INNER JOIN (SELECT day AS t, events, visitors FROM all_ads_unique_visitors_per_day FINAL \
                 WHERE kind = '{kind}' AND {range}) AS s ON d.t = s.t AND d.{count} = s.events"
            )),
            StoredDays::None => None,
        }
    }

    /// The condition that leaves out of segment `i`'s day rows those `current` answers.
    fn not_in(self, current: &str) -> String {
        match self {
            StoredDays::PerAd => format!(" AND (ad_id, day) NOT IN (SELECT ad_id, t FROM ({current}))"),
            StoredDays::AllAds | StoredDays::None => format!(" AND day NOT IN (SELECT t FROM ({current}))"),
        }
    }
}

/// The counts of `table` per group `key`. With states merged, unique visitors are summed over
/// UTC days (ingest keys visitor ids by the UTC day of the event, so no id is in two days):
/// whole days the window covers come from the stored numbers where those are current, and the
/// rest (the edges, and days stored late or not yet) merge their states per day.
fn counts_sql(
    table: &EventTable,
    key: &str,
    segments: &[Segment],
    ads: Ads<'_>,
    stored: StoredDays,
    states: States,
) -> String {
    let ad = ads.condition();
    let sums = table.sums().collect::<Vec<_>>().join(", ");
    if states == States::Skipped {
        let rows = rollup_rows(table.table, &sums, segments, ads);
        return format!("SELECT {key} AS key, {} FROM ({rows}) GROUP BY key", table.answer("toUInt64(0)"));
    }
    let mut state_rows = Vec::new();
    let mut current_rows = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let time = segment.rollup.column();
        let mut rows = format!(
            "SELECT ad_id, {time} AS t, {sums}, unique_visitors FROM {events}_per_{time} WHERE {ad}{range}{rows}",
            events = table.table,
            range = segment.rollup.range_sql(i),
            rows = segment.rows_sql(i)
        );
        if segment.rollup == Rollup::Day {
            if let Some(current) = stored.current_rows(table, i, ads) {
                rows.push_str(&stored.not_in(&current));
                current_rows.push(current);
            }
        }
        state_rows.push(rows);
    }
    let mut per_day = vec![format!(
        "SELECT {key} AS key, {}, uniqMerge(unique_visitors) AS visitors FROM ({}) GROUP BY key, toStartOfDay(t)",
        table.summed(),
        state_rows.join(" UNION ALL ")
    )];
    per_day.extend(
        current_rows.iter().map(|rows| format!("SELECT {key} AS key, {}, visitors FROM ({rows})", table.columns(""))),
    );
    format!("SELECT key, {} FROM ({}) GROUP BY key", table.answer("sum(visitors)"), per_day.join(" UNION ALL "))
}

/// The rollup rows of one kind (`click_events` or `impression_events`) covering the segments:
/// one `SELECT` per segment on `<kind>_per_<minute|hour|day>`, each on the table's primary key,
/// glued with `UNION ALL`. Every row has `ad_id`, its time as `t`, and `columns`.
fn rollup_rows(kind: &str, columns: &str, segments: &[Segment], ads: Ads<'_>) -> String {
    let ad = ads.condition();
    segments
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let time = segment.rollup.column();
            format!(
                "SELECT ad_id, {time} AS t, {columns} FROM {kind}_per_{time} WHERE {ad}{}{}",
                segment.rollup.range_sql(i),
                segment.rows_sql(i)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_undefined_over_nothing() {
        let none = Counts::default();
        assert_eq!(none.ctr(), None);
        assert_eq!(none.avg_playback_time_secs(), None);
        let some =
            Counts { clicks: 1, impressions: 4, playback_time_secs_sum: 30.0, playback_count: 2, ..Counts::default() };
        assert_eq!(some.ctr(), Some(0.25));
        assert_eq!(some.avg_playback_time_secs(), Some(15.0));
    }
}
