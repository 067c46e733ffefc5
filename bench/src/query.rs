//! Query latency over a month of events. Millions of rows are generated straight into the raw
//! tables with SQL (the materialized views fill the rollups, as for the aggregator's inserts),
//! then one client makes the three reads a dashboard makes, one after another: each with its
//! answer cached (the same URL again) and not (every request a new cache key).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::Stack;
use schemas::EventKind;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Args;
use crate::load::{single_events, Window};
use crate::stats::{micros, Latency};
use crate::workload::{bench_ad, bench_ad_sql, skewed_index_sql, Mix};

const MONTH_MS: i64 = 30 * 24 * 3600 * 1000;
/// Ads the varying requests cycle over: the most popular ones, as on a dashboard.
const POPULAR_ADS: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct QueryReport {
    pub generated_impressions: u64,
    pub generated_clicks: u64,
    pub generated_visitors: u64,
    pub insert_secs: f64,
    /// Rows and active parts per table after the inserts (ClickHouse merges in the background).
    pub tables: BTreeMap<String, TableSize>,
    /// How long the aggregator took, after the load, to store the closed days' unique visitors
    /// (`closed_days`): the cases run once it had, as in a steady state.
    pub closed_days_stored_secs: f64,
    /// The paced load of single events sent while the cases ran, so that the aggregator keeps
    /// writing and announcing writes, as under live traffic: events/s asked and stored.
    pub background_rate: u64,
    pub background_stored_per_sec: f64,
    pub cases: Vec<QueryCase>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    pub rows: u64,
    pub active_parts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryCase {
    pub name: String,
    pub cached: bool,
    /// The first measured URL (path and query).
    pub example: String,
    pub requests: u64,
    /// Answers other than 200.
    pub errors: u64,
    pub latency: Latency,
    /// The query service's own count of its answer cache, over the measured requests.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// The same for the query service's counts of past pieces (`past_counts`): a miss reads a
    /// piece of the window before today from ClickHouse.
    pub past_hits: u64,
    pub past_misses: u64,
    /// Write announcements the query service received while the case ran (each drops its
    /// cached answers about events).
    pub write_notices: u64,
    /// The same numbers in plain SQL over the raw tables, for the same windows (uncached
    /// cases): its statements run at once, as the API's do.
    pub plain_sql: Option<Latency>,
}

/// Inserts the generated events; returns how long that took, in seconds.
pub async fn generate(stack: &Stack, args: &Args) -> anyhow::Result<f64> {
    let started = Instant::now();
    let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)?;
    for (kind, total) in [(EventKind::Impression, args.query_impressions), (EventKind::Click, args.query_clicks)] {
        let mut done = 0;
        while done < total {
            let rows = args.insert_chunk_rows.min(total - done);
            let sql = insert_sql(kind, rows, args.ads, args.query_visitors, now_ms);
            stack
                .sql(&sql)
                .await
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("generating {} rows", kind.as_str()))?;
            done += rows;
            eprintln!("bench: generated {done} of {total} {}s", kind.as_str());
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Waits (at most `limit`) until ClickHouse merges no parts of the stack's tables: right after
/// a bulk load, background merges take most of the CPU, and a steady state has none running.
async fn settle(stack: &Stack, limit: Duration) {
    let started = Instant::now();
    let merging = "SELECT count() FROM system.merges WHERE database = currentDatabase()";
    while stack.count(merging).await > 0 && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("bench: waited {:.1} s for ClickHouse's merges", started.elapsed().as_secs_f64());
}

/// Measures the cases over whatever the tables hold, once the merges have settled.
pub async fn measure(stack: &Stack, mix: &Mix, args: &Args, insert_secs: f64) -> anyhow::Result<QueryReport> {
    let closed_days_stored_secs = wait_for_closed_days(stack, Duration::from_secs(600)).await?;
    settle(stack, Duration::from_secs(180)).await;
    let tables = table_sizes(stack).await?;
    let stored_before = stored_events(stack).await?;
    let started = Instant::now();
    let background = (args.query_background_rate > 0).then(|| {
        // Ends when aborted below; its events are stored like any, but not checked one by one.
        let window = Window::starting_now(Duration::ZERO, Duration::from_secs(24 * 3600));
        let (addr, mix, rate) = (stack.ingest.addr, mix.clone(), args.query_background_rate as f64);
        tokio::spawn(async move { single_events(addr, BACKGROUND_CONNECTIONS, &mix, window, Some(rate)).await })
    });
    let mut cases = Vec::new();
    for case in cases_at(OffsetDateTime::now_utc()) {
        eprintln!("bench: query case {} ({})", case.name, if case.cached { "cached" } else { "uncached" });
        match measure_case(stack, &case, args).await {
            Ok(measured) => cases.push(measured),
            Err(error) => {
                background.inspect(|load| load.abort());
                return Err(error);
            }
        }
    }
    if let Some(load) = background {
        load.abort();
    }
    let background_stored_per_sec =
        (stored_events(stack).await?.saturating_sub(stored_before)) as f64 / started.elapsed().as_secs_f64();
    Ok(QueryReport {
        generated_impressions: args.query_impressions,
        generated_clicks: args.query_clicks,
        generated_visitors: args.query_visitors,
        insert_secs,
        tables,
        closed_days_stored_secs,
        background_rate: args.query_background_rate,
        background_stored_per_sec,
        cases,
    })
}

/// Connections of the background load: enough for its pace at a few milliseconds an answer.
const BACKGROUND_CONNECTIONS: usize = 16;

/// Rows in the raw tables, billable and flagged.
async fn stored_events(stack: &Stack) -> anyhow::Result<u64> {
    let sql = "SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events) + (SELECT count() FROM invalid_events)";
    let text = stack.sql(sql).await.map_err(anyhow::Error::msg)?;
    text.trim().parse().with_context(|| format!("{sql}: {text:?}"))
}

/// Waits (at most `limit`) until every closed day has its unique visitors stored by the
/// aggregator and current; returns how long that took, in seconds.
async fn wait_for_closed_days(stack: &Stack, limit: Duration) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let text = stack.sql(e2e::UNSTORED_CLOSED_DAYS).await.map_err(anyhow::Error::msg)?;
        if text.trim() == "0" {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "closed days' unique visitors not stored within {limit:?}: {} left",
            text.trim()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("bench: waited {secs:.1} s for the closed days' unique visitors");
    Ok(secs)
}

/// `rows` events of `kind` over the 30 days before `now_ms`: ads with the load generator's
/// skewed popularity, visitors (client IP + user agent) drawn from `visitors`, fresh event ids.
/// A visitor's id is keyed by the UTC day of the event, as ingest keys it.
fn insert_sql(kind: EventKind, rows: u64, ads: usize, visitors: u64, now_ms: i64) -> String {
    // rand(n) with different n are independent draws within a row.
    let ad = bench_ad_sql(&skewed_index_sql(ads, 1));
    let common = format!(
        "generateUUIDv4() AS event_id, {ad} AS ad_id, \
         fromUnixTimestamp64Milli(toInt64({now_ms} - rand64(2) % {MONTH_MS}), 'UTC') AS timestamp, \
         timestamp AS received_at, IPv4NumToString(toUInt32(167772160 + visitor)) AS client_ip, \
         concat('Mozilla/5.0 (bench visitor ', toString(visitor % 97), ')') AS user_agent, \
         sipHash64(visitor, toDate(timestamp)) AS visitor_id, 1 AS schema_version, 0 AS stream_seq"
    );
    let visitor = format!("(SELECT rand(3) % {visitors} AS visitor FROM numbers({rows}))");
    let columns =
        "event_id, ad_id, timestamp, received_at, client_ip, user_agent, visitor_id, schema_version, stream_seq";
    match kind {
        EventKind::Impression => format!("INSERT INTO impression_events ({columns}) SELECT {common} FROM {visitor}"),
        EventKind::Click => format!(
            "INSERT INTO click_events ({columns}, playback_time_secs, watched_percent) \
             SELECT {common}, (rand(4) % 600) / 10 AS playback_time_secs, (rand(5) % 1001) / 10 AS watched_percent FROM {visitor}"
        ),
    }
}

async fn table_sizes(stack: &Stack) -> anyhow::Result<BTreeMap<String, TableSize>> {
    let sql = "SELECT table, sum(rows), count() FROM system.parts WHERE database = currentDatabase() AND active \
               GROUP BY table ORDER BY table FORMAT TSV";
    let text = stack.sql(sql).await.map_err(anyhow::Error::msg).context("reading table sizes")?;
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [table, rows, parts] = fields[..] else { anyhow::bail!("unexpected system.parts line {line:?}") };
            Ok((table.to_owned(), TableSize { rows: rows.parse()?, active_parts: parts.parse()? }))
        })
        .collect()
}

struct Case {
    name: &'static str,
    /// The query service's cache that answers it (label of `query_cache_lookups_total`).
    cache: &'static str,
    cached: bool,
    url: Box<dyn Fn(usize) -> String>,
    /// Plain SQL over the raw tables computing the same numbers as the `i`-th request
    /// (uncached cases only): what an analyst without the API would run.
    sql: Option<Box<dyn Fn(usize) -> Vec<String>>>,
}

/// One question, asked twice: the same URL again (cached) and a new window each time
/// (uncached), beside plain SQL for the same window.
struct Question {
    name: &'static str,
    cache: &'static str,
    cached_url: String,
    url: Box<dyn Fn(usize) -> String>,
    sql: Box<dyn Fn(usize) -> Vec<String>>,
}

/// The metrics of one kind's raw rows in plain SQL, as the API computes them: counts, distinct
/// visitors (exact), and for clicks the playback means and percentiles.
fn raw_metrics_sql(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Click => {
            "count() AS clicks, uniqExact(visitor_id) AS unique_clicks, avg(playback_time_secs) AS avg_playback, \
             avg(watched_percent) AS avg_watched, quantilesTDigest(0.5, 0.95)(playback_time_secs) AS playback_quantiles"
        }
        EventKind::Impression => "count() AS impressions, uniqExact(visitor_id) AS unique_viewers",
    }
}

/// Clicks and impressions side by side per `group` (a SQL expression over `timestamp` and
/// `ad_id`, or a constant), over the raw rows matching `filter`; the invalid traffic per group
/// and reason too, as the API answers it.
fn raw_report_sql(group: &str, filter: &str, order_limit: &str) -> String {
    format!(
        "SELECT * FROM (SELECT {group} AS g, {clicks} FROM click_events WHERE {filter} GROUP BY g) AS c \
         FULL JOIN (SELECT {group} AS g, {impressions} FROM impression_events WHERE {filter} GROUP BY g) AS i USING (g) \
         FULL JOIN (SELECT {group} AS g, sumMap(map(concat(kind, '/', invalid_reason), toUInt64(1))) AS invalid \
                    FROM invalid_events WHERE {filter} GROUP BY g) AS v USING (g) {order_limit} FORMAT Null",
        clicks = raw_metrics_sql(EventKind::Click),
        impressions = raw_metrics_sql(EventKind::Impression),
    )
}

/// The cases, two per question (cached, then uncached). Uncached requests name an explicit
/// window (30 days, or 7 for the breakdown), shifted one more minute back for each request:
/// windows are whole minutes, so each is a new cache key.
fn cases_at(now: OffsetDateTime) -> Vec<Case> {
    let to = now.replace_second(0).and_then(|t| t.replace_nanosecond(0)).unwrap_or(now) + time::Duration::MINUTE;
    let bounds = move |days: i64, i: usize| {
        let end = to - time::Duration::minutes(i as i64);
        (end - time::Duration::days(days), end)
    };
    let query_window = move |days: i64, i: usize| {
        let (from, to) = bounds(days, i);
        let format = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        format!("from={}&to={}", format(from), format(to))
    };
    let sql_window = move |days: i64, i: usize| {
        let (from, to) = bounds(days, i);
        format!(
            "timestamp >= toDateTime64({}, 3, 'UTC') AND timestamp < toDateTime64({}, 3, 'UTC')",
            from.unix_timestamp(),
            to.unix_timestamp()
        )
    };
    let window = move |i: usize| query_window(30, i);
    let week = move |i: usize| query_window(7, i);
    let popular = |i: usize| bench_ad(i % POPULAR_ADS);
    let one_ad = move |i: usize| format!("ad_id = '{}' AND {}", popular(i), sql_window(30, i));
    let top = bench_ad(0);
    let series = |name: &'static str, granularity: &'static str, tz: &'static str, bucket: &'static str| Question {
        name,
        cache: "series",
        cached_url: format!("/ads/{top}/analytics?timeframe=30d&granularity={granularity}&tz={tz}"),
        url: Box::new(move |i| {
            format!("/ads/{}/analytics?{}&granularity={granularity}&tz={tz}", popular(i), window(i))
        }),
        sql: Box::new(move |i| vec![raw_report_sql(bucket, &one_ad(i), "ORDER BY g")]),
    };
    let ranking = |name: &'static str, metric: &'static str| Question {
        name,
        cache: "reports",
        cached_url: format!("/ads/analytics?timeframe=30d&sort={metric}&limit=10"),
        url: Box::new(move |i| format!("/ads/analytics?{}&sort={metric}&limit=10", window(i))),
        sql: Box::new(move |i| {
            let window = sql_window(30, i);
            vec![
                raw_report_sql("ad_id", &window, &format!("ORDER BY {metric} DESC LIMIT 10")),
                raw_report_sql("0", &window, ""),
            ]
        }),
    };
    let questions = vec![
        Question {
            name: "one ad, 30-day totals",
            cache: "reports",
            cached_url: format!("/ads/analytics?ad_id={top}&timeframe=30d"),
            url: Box::new(move |i| format!("/ads/analytics?ad_id={}&{}", popular(i), window(i))),
            sql: Box::new(move |i| vec![raw_report_sql("ad_id", &one_ad(i), "")]),
        },
        series("one ad, 30 days hourly, UTC", "hour", "UTC", "toStartOfHour(timestamp)"),
        series(
            "one ad, 30 days hourly, Asia/Kolkata",
            "hour",
            "Asia/Kolkata",
            "toStartOfHour(timestamp, 'Asia/Kolkata')",
        ),
        series("one ad, 30 days daily, UTC", "day", "UTC", "toStartOfDay(timestamp)"),
        series("one ad, 30 days daily, Asia/Kolkata", "day", "Asia/Kolkata", "toStartOfDay(timestamp, 'Asia/Kolkata')"),
        ranking("top 10 ads by clicks, 30 days", "clicks"),
        // Ranking by a metric kept as states: every ad's unique visitors are needed.
        ranking("top 10 ads by unique viewers, 30 days", "unique_viewers"),
        Question {
            name: "every ad's totals, 30 days",
            cache: "reports",
            cached_url: "/ads/analytics?timeframe=30d".to_owned(),
            url: Box::new(move |i| format!("/ads/analytics?{}", window(i))),
            sql: Box::new(move |i| {
                let window = sql_window(30, i);
                vec![raw_report_sql("ad_id", &window, ""), raw_report_sql("0", &window, "")]
            }),
        },
        Question {
            name: "breakdown by country, 7 days",
            cache: "breakdowns",
            cached_url: "/ads/analytics/breakdown?by=country&timeframe=7d".to_owned(),
            url: Box::new(move |i| format!("/ads/analytics/breakdown?by=country&{}", week(i))),
            sql: Box::new(move |i| {
                let filter = sql_window(7, i);
                vec![format!(
                    "SELECT * FROM (SELECT country, count() AS clicks, uniqExact(visitor_id) AS unique_clicks FROM click_events WHERE {filter} GROUP BY country) AS c \
                     FULL JOIN (SELECT country, count() AS impressions, uniqExact(visitor_id) AS unique_viewers FROM impression_events WHERE {filter} GROUP BY country) AS i \
                     USING (country) ORDER BY impressions DESC LIMIT 50 FORMAT Null"
                )]
            }),
        },
    ];
    questions
        .into_iter()
        .flat_map(|q| {
            let cached_url = q.cached_url;
            [
                Case {
                    name: q.name,
                    cache: q.cache,
                    cached: true,
                    url: Box::new(move |_| cached_url.clone()),
                    sql: None,
                },
                Case { name: q.name, cache: q.cache, cached: false, url: q.url, sql: Some(q.sql) },
            ]
        })
        .collect()
}

async fn measure_case(stack: &Stack, case: &Case, args: &Args) -> anyhow::Result<QueryCase> {
    let http = reqwest::Client::new();
    let get = |i: usize| {
        let url = stack.query.url(&(case.url)(i));
        let http = &http;
        async move {
            let response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
            let status = response.status();
            // The whole answer is part of the latency.
            response.bytes().await.with_context(|| format!("GET {url}: reading the answer"))?;
            anyhow::Ok(status)
        }
    };
    for i in 0..args.query_warmup {
        get(i).await?;
    }
    let metrics_before = stack.metrics(&stack.query).await;
    let (hits_before, misses_before) = cache_lookups(&metrics_before, case.cache);
    let (past_hits_before, past_misses_before) = cache_lookups(&metrics_before, PAST_COUNTS);
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    let started = Instant::now();
    let limit = Duration::from_secs(args.query_case_max_secs);
    for i in args.query_warmup..args.query_warmup + args.query_requests {
        if started.elapsed() > limit {
            break;
        }
        let sent = Instant::now();
        let status = get(i).await?;
        latencies_us.push(micros(sent.elapsed()));
        errors += u64::from(status != reqwest::StatusCode::OK);
    }
    let metrics_after = stack.metrics(&stack.query).await;
    let (hits_after, misses_after) = cache_lookups(&metrics_after, case.cache);
    let (past_hits_after, past_misses_after) = cache_lookups(&metrics_after, PAST_COUNTS);
    let notices = |text: &str| e2e::metric(text, "query_write_notices_total").unwrap_or(0.0) as u64;
    let write_notices = notices(&metrics_after).saturating_sub(notices(&metrics_before));
    let plain_sql = match &case.sql {
        Some(sql) => Some(measure_sql(stack, sql, args).await?),
        None => None,
    };
    Ok(QueryCase {
        name: case.name.to_owned(),
        cached: case.cached,
        example: (case.url)(args.query_warmup),
        requests: latencies_us.len() as u64,
        errors,
        latency: Latency::of(latencies_us),
        cache_hits: hits_after.saturating_sub(hits_before),
        cache_misses: misses_after.saturating_sub(misses_before),
        past_hits: past_hits_after.saturating_sub(past_hits_before),
        past_misses: past_misses_after.saturating_sub(past_misses_before),
        write_notices,
        plain_sql,
    })
}

/// Plain SQL runs per case: it is slow by design, and the ratio needs only its typical time.
const PLAIN_SQL_REQUESTS: usize = 20;

/// Latency of the plain SQL of requests `0..`, each request's statements at once.
async fn measure_sql(stack: &Stack, sql: &dyn Fn(usize) -> Vec<String>, args: &Args) -> anyhow::Result<Latency> {
    let (started, limit) = (Instant::now(), Duration::from_secs(args.query_case_max_secs));
    let mut latencies_us = Vec::new();
    for i in 0..PLAIN_SQL_REQUESTS.min(args.query_requests) {
        if started.elapsed() > limit {
            break;
        }
        let statements = sql(args.query_warmup + i);
        let sent = Instant::now();
        let answers = futures::future::join_all(statements.iter().map(|statement| stack.sql(statement))).await;
        latencies_us.push(micros(sent.elapsed()));
        for (statement, answer) in statements.iter().zip(answers) {
            answer.map_err(anyhow::Error::msg).with_context(|| format!("plain SQL: {statement}"))?;
        }
    }
    Ok(Latency::of(latencies_us))
}

/// The query service's cache of the counts of past pieces of windows.
const PAST_COUNTS: &str = "past_counts";

/// (hits, misses) of one cache from the query service's Prometheus text.
fn cache_lookups(metrics: &str, cache: &str) -> (u64, u64) {
    let cache_label = format!("cache=\"{cache}\"");
    let lookups =
        |outcome: &str| e2e::metric_sum(metrics, "query_cache_lookups_total", &[&cache_label, outcome]) as u64;
    (lookups("outcome=\"hit\""), lookups("outcome=\"miss\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cache_lookups() {
        let text = "# TYPE query_cache_lookups_total counter\n\
                    query_cache_lookups_total{cache=\"ads\",outcome=\"hit\"} 9\n\
                    query_cache_lookups_total{cache=\"reports\",outcome=\"hit\"} 3\n\
                    query_cache_lookups_total{cache=\"reports\",outcome=\"miss\"} 2\n";
        assert_eq!(cache_lookups(text, "reports"), (3, 2));
        assert_eq!(cache_lookups(text, "series"), (0, 0));
        assert_eq!(e2e::metric_sum(text, "query_cache_lookups_total", &[]), 14.0, "every series without a label asked");
        assert_eq!(e2e::metric_sum(text, "query_cache", &[]), 0.0, "a name is matched whole");
    }

    #[test]
    fn uncached_windows_are_distinct_whole_minutes() {
        let now = time::macros::datetime!(2026-11-22 06:30:17.5 UTC);
        let cases = cases_at(now);
        let ranking =
            cases.iter().find(|c| c.name == "top 10 ads by clicks, 30 days" && !c.cached).expect("the ranking case");
        assert_eq!(
            (ranking.url)(0),
            "/ads/analytics?from=2026-10-23T06:31:00Z&to=2026-11-22T06:31:00Z&sort=clicks&limit=10"
        );
        assert_eq!(
            (ranking.url)(1),
            "/ads/analytics?from=2026-10-23T06:30:00Z&to=2026-11-22T06:30:00Z&sort=clicks&limit=10"
        );
        assert_eq!((cases[0].url)(0), (cases[0].url)(7));
    }
}
