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
use crate::stats::{micros, Latency};
use crate::workload::{bench_ad, bench_ad_sql, skewed_index_sql};

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
            stack.sql(&sql).await.map_err(anyhow::Error::msg).with_context(|| format!("generating {} rows", kind.as_str()))?;
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
pub async fn measure(stack: &Stack, args: &Args, insert_secs: f64) -> anyhow::Result<QueryReport> {
    settle(stack, Duration::from_secs(180)).await;
    let tables = table_sizes(stack).await?;
    let mut cases = Vec::new();
    for case in cases_at(OffsetDateTime::now_utc()) {
        eprintln!("bench: query case {} ({})", case.name, if case.cached { "cached" } else { "uncached" });
        cases.push(measure_case(stack, &case, args).await?);
    }
    Ok(QueryReport {
        generated_impressions: args.query_impressions,
        generated_clicks: args.query_clicks,
        generated_visitors: args.query_visitors,
        insert_secs,
        tables,
        cases,
    })
}

/// `rows` events of `kind` over the 30 days before `now_ms`: ads with the load generator's
/// skewed popularity, visitors (client IP + user agent) drawn from `visitors`, fresh event ids.
fn insert_sql(kind: EventKind, rows: u64, ads: usize, visitors: u64, now_ms: i64) -> String {
    // rand(n) with different n are independent draws within a row.
    let ad = bench_ad_sql(&skewed_index_sql(ads, 1));
    let common = format!(
        "generateUUIDv4() AS event_id, {ad} AS ad_id, \
         fromUnixTimestamp64Milli(toInt64({now_ms} - rand64(2) % {MONTH_MS}), 'UTC') AS timestamp, \
         timestamp AS received_at, IPv4NumToString(toUInt32(167772160 + visitor)) AS client_ip, \
         concat('Mozilla/5.0 (bench visitor ', toString(visitor % 97), ')') AS user_agent, \
         1 AS schema_version, 0 AS stream_seq"
    );
    let visitor = format!("(SELECT rand(3) % {visitors} AS visitor FROM numbers({rows}))");
    let columns = "event_id, ad_id, timestamp, received_at, client_ip, user_agent, schema_version, stream_seq";
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
}

/// The fourteen cases. Uncached requests name an explicit window (30 days, or 7 for the
/// breakdown), shifted one more minute back for each request: windows are whole minutes, so each is a new cache key.
fn cases_at(now: OffsetDateTime) -> Vec<Case> {
    let to = now.replace_second(0).and_then(|t| t.replace_nanosecond(0)).unwrap_or(now) + time::Duration::MINUTE;
    let days_back = move |days: i64, i: usize| {
        let shift = time::Duration::minutes(i as i64);
        let format = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        format!("from={}&to={}", format(to - time::Duration::days(days) - shift), format(to - shift))
    };
    let window = move |i: usize| days_back(30, i);
    let week = move |i: usize| days_back(7, i);
    let popular = |i: usize| bench_ad(i % POPULAR_ADS);
    let top = bench_ad(0);
    vec![
        Case {
            name: "one ad, 30-day totals",
            cache: "reports",
            cached: true,
            url: Box::new(move |_| format!("/ads/analytics?ad_id={top}&timeframe=30d")),
        },
        Case {
            name: "one ad, 30-day totals",
            cache: "reports",
            cached: false,
            url: Box::new(move |i| format!("/ads/analytics?ad_id={}&{}", popular(i), window(i))),
        },
        Case {
            name: "one ad, 30 days hourly",
            cache: "series",
            cached: true,
            url: Box::new(move |_| format!("/ads/{top}/analytics?timeframe=30d&granularity=hour")),
        },
        Case {
            name: "one ad, 30 days hourly",
            cache: "series",
            cached: false,
            url: Box::new(move |i| format!("/ads/{}/analytics?{}&granularity=hour", popular(i), window(i))),
        },
        Case {
            name: "top 10 ads by clicks, 30 days",
            cache: "reports",
            cached: true,
            url: Box::new(|_| "/ads/analytics?timeframe=30d&sort=clicks&limit=10".to_owned()),
        },
        Case {
            name: "top 10 ads by clicks, 30 days",
            cache: "reports",
            cached: false,
            url: Box::new(move |i| format!("/ads/analytics?{}&sort=clicks&limit=10", window(i))),
        },
        Case {
            name: "every ad's totals, 30 days",
            cache: "reports",
            cached: true,
            url: Box::new(|_| "/ads/analytics?timeframe=30d".to_owned()),
        },
        Case {
            name: "every ad's totals, 30 days",
            cache: "reports",
            cached: false,
            url: Box::new(move |i| format!("/ads/analytics?{}", window(i))),
        },
        // Ranking by a metric kept as states: every ad's unique-visitor states are merged.
        Case {
            name: "top 10 ads by unique viewers, 30 days",
            cache: "reports",
            cached: true,
            url: Box::new(|_| "/ads/analytics?timeframe=30d&sort=unique_viewers&limit=10".to_owned()),
        },
        Case {
            name: "top 10 ads by unique viewers, 30 days",
            cache: "reports",
            cached: false,
            url: Box::new(move |i| format!("/ads/analytics?{}&sort=unique_viewers&limit=10", window(i))),
        },
        Case {
            name: "breakdown by country, 7 days",
            cache: "breakdowns",
            cached: true,
            url: Box::new(|_| "/ads/analytics/breakdown?by=country&timeframe=7d".to_owned()),
        },
        Case {
            name: "breakdown by country, 7 days",
            cache: "breakdowns",
            cached: false,
            url: Box::new(move |i| format!("/ads/analytics/breakdown?by=country&{}", week(i))),
        },
        // A zone whose days start at 18:30 UTC: hour rollups cannot be grouped into its days.
        Case {
            name: "one ad, 30 days daily, Asia/Kolkata",
            cache: "series",
            cached: true,
            url: Box::new(move |_| format!("/ads/{top}/analytics?timeframe=30d&granularity=day&tz=Asia/Kolkata")),
        },
        Case {
            name: "one ad, 30 days daily, Asia/Kolkata",
            cache: "series",
            cached: false,
            url: Box::new(move |i| format!("/ads/{}/analytics?{}&granularity=day&tz=Asia/Kolkata", popular(i), window(i))),
        },
    ]
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
    let (hits_before, misses_before) = cache_lookups(&stack.metrics(&stack.query).await, case.cache);
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
    let (hits_after, misses_after) = cache_lookups(&stack.metrics(&stack.query).await, case.cache);
    Ok(QueryCase {
        name: case.name.to_owned(),
        cached: case.cached,
        example: (case.url)(args.query_warmup),
        requests: latencies_us.len() as u64,
        errors,
        latency: Latency::of(latencies_us),
        cache_hits: hits_after.saturating_sub(hits_before),
        cache_misses: misses_after.saturating_sub(misses_before),
    })
}

/// (hits, misses) of one cache from the query service's Prometheus text.
fn cache_lookups(metrics: &str, cache: &str) -> (u64, u64) {
    let (mut hits, mut misses) = (0, 0);
    let cache_label = format!("cache=\"{cache}\"");
    for line in metrics.lines() {
        let Some((labels, value)) = line.strip_prefix("query_cache_lookups_total{").and_then(|rest| rest.split_once("} ")) else {
            continue;
        };
        if !labels.contains(&cache_label) {
            continue;
        }
        let value = value.trim().parse::<u64>().unwrap_or(0);
        if labels.contains("outcome=\"hit\"") {
            hits += value;
        } else if labels.contains("outcome=\"miss\"") {
            misses += value;
        }
    }
    (hits, misses)
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
    }

    #[test]
    fn uncached_windows_are_distinct_whole_minutes() {
        let now = time::macros::datetime!(2026-11-22 06:30:17.5 UTC);
        let cases = cases_at(now);
        let ranking = &cases[5];
        assert_eq!((ranking.url)(0), "/ads/analytics?from=2026-10-23T06:31:00Z&to=2026-11-22T06:31:00Z&sort=clicks&limit=10");
        assert_eq!((ranking.url)(1), "/ads/analytics?from=2026-10-23T06:30:00Z&to=2026-11-22T06:30:00Z&sort=clicks&limit=10");
        assert_eq!((cases[0].url)(0), (cases[0].url)(7));
    }
}
