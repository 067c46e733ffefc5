//! Windows that cut through days and hours: the API (which reads day, hour and minute rollups,
//! and the unique visitors stored for closed UTC days) must agree with plain SQL over the raw
//! tables, unique counts exactly (`uniqExact`), for totals, every series bucket (of one ad and
//! of every ad together), rankings by each metric, previous-period comparisons and the
//! freshness watermark.

use std::collections::BTreeMap;

use e2e::{Stack, StackOptions, AD_CITY_BREAK, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format timestamp")
}

const ADS: [&str; 3] = [AD_TRAIL_RUNNER, AD_COFFEE_CLUB, AD_CITY_BREAK];

/// Every metric's value, as the API and as plain SQL give it.
#[derive(Debug, PartialEq)]
struct Totals {
    clicks: u64,
    unique_clicks: u64,
    impressions: u64,
    unique_viewers: u64,
    /// Ratios, rounded to 9 digits: the API divides sums, SQL averages rows.
    ctr: Option<String>,
    avg_playback_time_secs: Option<String>,
    avg_watched_percent: Option<String>,
    /// Percentiles, rounded to 3 digits: t-digests merged per bucket against one over the rows.
    p50_playback_time_secs: Option<String>,
    p95_playback_time_secs: Option<String>,
}

fn rounded(v: &Value) -> Option<String> {
    v.as_f64().map(|f| format!("{f:.9}"))
}

impl Totals {
    fn of_api(entry: &Value) -> Totals {
        let n = |k: &str| entry[k].as_u64().unwrap_or_else(|| panic!("{k} in {entry}"));
        Totals {
            clicks: n("clicks"),
            unique_clicks: n("unique_clicks"),
            impressions: n("impressions"),
            unique_viewers: n("unique_viewers"),
            ctr: rounded(&entry["ctr"]),
            avg_playback_time_secs: rounded(&entry["avg_playback_time_secs"]),
            avg_watched_percent: rounded(&entry["avg_watched_percent"]),
            p50_playback_time_secs: entry["p50_playback_time_secs"].as_f64().map(|f| format!("{f:.3}")),
            p95_playback_time_secs: entry["p95_playback_time_secs"].as_f64().map(|f| format!("{f:.3}")),
        }
    }
}

fn raw_filter(ad: &str, from: OffsetDateTime, to: OffsetDateTime) -> String {
    format!("ad_id = toUUID('{ad}') AND {}", raw_window(from, to))
}

fn raw_window(from: OffsetDateTime, to: OffsetDateTime) -> String {
    format!(
        "timestamp >= toDateTime64({}, 3, 'UTC') AND timestamp < toDateTime64({}, 3, 'UTC')",
        from.unix_timestamp(),
        to.unix_timestamp()
    )
}

/// Every metric of `ad` over `[from, to)`, from the raw tables.
async fn raw_totals(stack: &Stack, ad: &str, from: OffsetDateTime, to: OffsetDateTime) -> Totals {
    raw_totals_where(stack, &raw_filter(ad, from, to)).await
}

/// Every metric of the events matching `filter`, from the raw tables.
async fn raw_totals_where(stack: &Stack, filter: &str) -> Totals {
    let sql = format!(
        "SELECT c.n, c.u, i.n, i.u, c.p, c.w, c.q FROM \
         (SELECT count() AS n, uniqExact(visitor_id) AS u, avg(playback_time_secs) AS p, avg(watched_percent) AS w, \
          quantilesTDigest(0.5, 0.95)(playback_time_secs) AS q FROM click_events WHERE {filter}) AS c, \
         (SELECT count() AS n, uniqExact(visitor_id) AS u FROM impression_events WHERE {filter}) AS i \
         FORMAT JSONCompactEachRow"
    );
    let row: Vec<Value> =
        serde_json::from_str(stack.sql(&sql).await.expect("raw totals").trim()).expect("one JSON row");
    let n = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).expect("a count");
    let (clicks, impressions) = (n(&row[0]), n(&row[2]));
    // avg over no rows is NaN (null in JSON), as the API's ratios over nothing are null.
    let finite = |v: &Value| v.as_f64().filter(|f| f.is_finite()).map(|f| format!("{f:.9}"));
    Totals {
        clicks,
        unique_clicks: n(&row[1]),
        impressions,
        unique_viewers: n(&row[3]),
        ctr: (impressions > 0).then(|| format!("{:.9}", clicks as f64 / impressions as f64)),
        avg_playback_time_secs: finite(&row[4]),
        avg_watched_percent: finite(&row[5]),
        p50_playback_time_secs: row[6][0].as_f64().filter(|f| f.is_finite()).map(|f| format!("{f:.3}")),
        p95_playback_time_secs: row[6][1].as_f64().filter(|f| f.is_finite()).map(|f| format!("{f:.3}")),
    }
}

/// Asserts the API's totals for `ad` over `[from, to)` equal the raw tables'.
async fn assert_totals_match(stack: &Stack, ad: &str, from: OffsetDateTime, to: OffsetDateTime) {
    let (from_s, to_s) = (at(from), at(to));
    let (status, report) = stack.get(&format!("/ads/analytics?ad_id={ad}&from={from_s}&to={to_s}")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        Totals::of_api(&report["ads"][0]),
        raw_totals(stack, ad, from, to).await,
        "{ad} over [{from_s}, {to_s})"
    );
}

/// Asserts the series answered at `path` has, bucket by bucket, the clicks and impressions of
/// the raw events matching `filter` grouped by `bucket_sql`; returns the answer.
async fn assert_series_match(stack: &Stack, path: &str, filter: &str, bucket_sql: &str) -> Value {
    let (status, answer) = stack.get(path).await;
    assert_eq!(status, 200, "{answer}");
    let series = answer["series"].as_array().expect("series");
    let api: BTreeMap<i64, u64> = series
        .iter()
        .filter(|b| b["clicks"].as_u64().unwrap_or(0) + b["impressions"].as_u64().unwrap_or(0) > 0)
        .map(|b| {
            let start = OffsetDateTime::parse(b["start"].as_str().unwrap_or(""), &Rfc3339).expect("RFC 3339 start");
            (
                start.unix_timestamp(),
                b["clicks"].as_u64().unwrap_or(0) * 1_000_000 + b["impressions"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let sql = format!(
        "SELECT toUnixTimestamp(b), sum(c) * 1000000 + sum(i) FROM ( \
         SELECT {bucket_sql} AS b, 1 AS c, 0 AS i FROM click_events WHERE {filter} \
         UNION ALL SELECT {bucket_sql} AS b, 0 AS c, 1 AS i FROM impression_events WHERE {filter}) \
         GROUP BY b ORDER BY b"
    );
    let rows = stack.sql(&sql).await.expect("series SQL");
    let expected: BTreeMap<i64, u64> = rows
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(b, n)| (b.parse().expect("unix start"), n.parse().expect("number")))
        .collect();
    assert_eq!(api, expected, "{path}: buckets as clicks*1e6 + impressions");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_across_days_and_hours_match_the_raw_events() {
    let stack = Stack::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261122);
    let now = OffsetDateTime::now_utc();
    // 3,000 events over the last 6 days from 30 visitors (one user agent per request).
    let mut sent = 0;
    for visitor in 0..30 {
        let items: Vec<Value> = (0..100)
            .map(|_| {
                let ts = now - Duration::seconds(rng.random_range(60..6 * 86_400));
                let ad = match rng.random_range(0..10) {
                    0..6 => AD_TRAIL_RUNNER,
                    6..9 => AD_COFFEE_CLUB,
                    _ => AD_CITY_BREAK,
                };
                if rng.random_bool(0.3) {
                    let mut click = json!({"type": "click", "ad_id": ad, "timestamp": at(ts), "playback_time_secs": rng.random_range(0..60)});
                    if rng.random_bool(0.5) {
                        click["watched_percent"] = json!(rng.random_range(0..=100));
                    }
                    click
                } else {
                    json!({"type": "impression", "ad_id": ad, "timestamp": at(ts)})
                }
            })
            .collect();
        let body = serde_json::to_vec(&items).expect("serialize");
        let agent = format!("viewer-{visitor}");
        let (status, answer) = stack.post_raw("/ads/events", "application/json", body, &[("user-agent", &agent)]).await;
        assert_eq!(status, 202, "{answer}");
        sent += 100;
    }
    stack
        .wait_for_count("SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)", sent)
        .await;
    // An insert's raw rows can be visible a moment before its rollup rows.
    let in_every_rollup = ["minute", "hour", "day"]
        .map(|r| format!("(SELECT sum(clicks) FROM click_events_per_{r}) + (SELECT sum(impressions) FROM impression_events_per_{r})"))
        .join(", ");
    stack.wait_for_count(&format!("SELECT least({in_every_rollup})"), sent).await;
    wait_for_closed_days_stored(&stack).await;

    let minute =
        |t: OffsetDateTime| t - Duration::seconds(t.second() as i64) - Duration::nanoseconds(t.nanosecond() as i64);
    let mut windows = vec![(minute(now - Duration::days(7)), minute(now) + Duration::MINUTE)];
    for _ in 0..8 {
        let from = minute(now - Duration::minutes(rng.random_range(2..7 * 1440)));
        let to = from + Duration::minutes(rng.random_range(1..4 * 1440));
        windows.push((from, to.min(minute(now) + Duration::MINUTE)));
    }
    for (from, to) in windows {
        let (from_s, to_s) = (at(from), at(to));
        for ad in ADS {
            assert_totals_match(&stack, ad, from, to).await;
        }
        assert_rankings_match(&stack, from, to).await;
        // (granularity, zone, the bucket start of `timestamp` in plain SQL)
        let bucketings = [
            ("hour", "UTC", "toStartOfHour(timestamp)"),
            ("day", "UTC", "toStartOfDay(timestamp)"),
            ("day", "Asia/Kolkata", "toStartOfDay(timestamp, 'Asia/Kolkata')"),
            ("week", "Asia/Kolkata", "toDateTime(toStartOfWeek(timestamp, 1, 'Asia/Kolkata'), 'Asia/Kolkata')"),
            ("hour", "Australia/Adelaide", "toStartOfHour(timestamp, 'Australia/Adelaide')"),
            (
                "week",
                "America/New_York",
                "toDateTime(toStartOfWeek(timestamp, 1, 'America/New_York'), 'America/New_York')",
            ),
            ("month", "Europe/Paris", "toDateTime(toStartOfMonth(timestamp, 'Europe/Paris'), 'Europe/Paris')"),
        ];
        for (granularity, tz, bucket_sql) in bucketings {
            let params = format!("from={from_s}&to={to_s}&granularity={granularity}&tz={tz}");
            assert_series_match(
                &stack,
                &format!("/ads/{AD_TRAIL_RUNNER}/analytics?{params}"),
                &raw_filter(AD_TRAIL_RUNNER, from, to),
                bucket_sql,
            )
            .await;
            // Every ad together: the buckets, and totals with visitors counted once across ads.
            let all = assert_series_match(
                &stack,
                &format!("/ads/analytics/series?{params}"),
                &raw_window(from, to),
                bucket_sql,
            )
            .await;
            assert_eq!(
                Totals::of_api(&all["totals"]),
                raw_totals_where(&stack, &raw_window(from, to)).await,
                "every ad over [{from_s}, {to_s})"
            );
        }
    }

    assert_previous_period_matches(&stack, now).await;
    let newest = stack.sql("SELECT toUnixTimestamp64Milli(max(received_at)) FROM (SELECT received_at FROM click_events UNION ALL SELECT received_at FROM impression_events)").await.expect("newest");
    let (_, report) = stack.get("/ads/analytics?timeframe=7d").await;
    let reported =
        OffsetDateTime::parse(report["newest_event_received_at"].as_str().expect("newest_event_received_at"), &Rfc3339)
            .expect("RFC 3339");
    assert_eq!(
        (reported.unix_timestamp_nanos() / 1_000_000).to_string(),
        newest,
        "freshness is the newest stored event's receive time"
    );

    // An installation that had events before the hour and day rollups (and the playback
    // percentiles and the watermark) existed: the migrations fill them from the raw tables once,
    // and rebuild the hour rollups with their time-first sort key (0013).
    let filled_once = [
        "click_events_per_hour",
        "click_events_per_day",
        "impression_events_per_hour",
        "impression_events_per_day",
        "click_playback_per_minute",
        "click_playback_per_hour",
        "click_playback_per_day",
    ];
    for table in filled_once {
        stack.sql(&format!("DROP TABLE {table}_mv SYNC")).await.expect("drop view");
        stack.sql(&format!("DROP TABLE {table} SYNC")).await.expect("drop rollup");
    }
    for view in
        ["click_events_received_watermark_mv", "impression_events_received_watermark_mv", "events_received_watermark"]
    {
        stack.sql(&format!("DROP TABLE {view} SYNC")).await.expect("drop watermark");
    }
    let migrate = stack.run_admin(&["migrate"]);
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let again = stack.run_admin(&["migrate"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    // Refilled in the old layout by their own migrations, then rebuilt sorted by time (0013),
    // once: the second run left them alone.
    let ad_first = "SELECT count() FROM system.tables WHERE database = currentDatabase() \
                    AND (endsWith(name, '_per_minute') OR endsWith(name, '_per_hour')) AND startsWith(sorting_key, 'ad_id')";
    assert_eq!(stack.count(ad_first).await, 0, "minute and hour rollups sorted by time");
    let week = (minute(now - Duration::days(7)) + Duration::minutes(7), minute(now) + Duration::MINUTE);
    // Past the cache's TTL, so the answer is computed from the refilled rollups.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for ad in ADS {
        assert_totals_match(&stack, ad, week.0, week.1).await;
    }
    assert_eq!(
        stack.count("SELECT sum(clicks) FROM click_events_per_day").await,
        stack.count("SELECT count() FROM click_events").await
    );
    let refilled = stack
        .sql("SELECT toUnixTimestamp64Milli(max(newest_received_at)) FROM events_received_watermark")
        .await
        .expect("watermark");
    assert_eq!(refilled, newest, "the watermark is refilled from the raw tables");
}

/// Waits until every closed day's unique visitors are stored and current, so that the answers
/// that follow read them; fails if nothing was stored (the stored path would go untested).
async fn wait_for_closed_days_stored(stack: &Stack) {
    stack.wait_for_count(e2e::UNSTORED_CLOSED_DAYS, 0).await;
    assert!(stack.count("SELECT count() FROM all_ads_unique_visitors_per_day").await > 0, "no closed day was stored");
    // Answers cached before the days were stored live out their TTL.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// One metric's value out of [`Totals`].
type MetricOf = fn(&Totals) -> Option<f64>;

/// Rankings by every metric, against the raw totals ranked the same way.
async fn assert_rankings_match(stack: &Stack, from: OffsetDateTime, to: OffsetDateTime) {
    let (from_s, to_s) = (at(from), at(to));
    let mut raw = Vec::new();
    for ad in ADS {
        raw.push((ad, raw_totals(stack, ad, from, to).await));
    }
    raw.retain(|(_, t)| t.clicks + t.impressions > 0);
    let metrics: [(&str, MetricOf); 8] = [
        ("clicks", |t| Some(t.clicks as f64)),
        ("unique_clicks", |t| Some(t.unique_clicks as f64)),
        ("impressions", |t| Some(t.impressions as f64)),
        ("unique_viewers", |t| Some(t.unique_viewers as f64)),
        ("ctr", |t| t.ctr.as_deref().and_then(|v| v.parse().ok())),
        ("avg_playback_time_secs", |t| t.avg_playback_time_secs.as_deref().and_then(|v| v.parse().ok())),
        ("avg_watched_percent", |t| t.avg_watched_percent.as_deref().and_then(|v| v.parse().ok())),
        ("p95_playback_time_secs", |t| t.p95_playback_time_secs.as_deref().and_then(|v| v.parse().ok())),
    ];
    for (metric, value) in metrics {
        let mut expected: Vec<(&str, Option<f64>)> = raw.iter().map(|(ad, t)| (*ad, value(t))).collect();
        // Highest first, no value last, ties by id: the documented order.
        expected.sort_by(|a, b| match (a.1, b.1) {
            (Some(x), Some(y)) => y.total_cmp(&x).then(a.0.cmp(b.0)),
            (x, y) => y.is_some().cmp(&x.is_some()).then(a.0.cmp(b.0)),
        });
        expected.truncate(2);
        let path = format!("/ads/analytics?from={from_s}&to={to_s}&sort={metric}&limit=2");
        let (status, report) = stack.get(&path).await;
        assert_eq!(status, 200, "{path}: {report}");
        assert_eq!(
            Totals::of_api(&report["total"]),
            raw_totals_where(stack, &raw_window(from, to)).await,
            "{path}: the total of every ad"
        );
        let entries = report["ads"].as_array().expect("ads");
        let got: Vec<&str> = entries.iter().map(|e| e["ad_id"].as_str().unwrap_or("")).collect();
        assert_eq!(got, expected.iter().map(|e| e.0).collect::<Vec<_>>(), "{path}: {expected:?}");
        for entry in entries {
            let ad = entry["ad_id"].as_str().unwrap_or("");
            let (_, raw) = raw.iter().find(|(id, _)| *id == ad).expect("a ranked ad has events");
            assert_eq!(&Totals::of_api(entry), raw, "{path}: every metric of {ad}, uniques included");
        }
    }
}

/// `compare=previous` on the report and on the series: the period of equal length just before.
async fn assert_previous_period_matches(stack: &Stack, now: OffsetDateTime) {
    let to = now
        - Duration::seconds(now.second() as i64)
        - Duration::nanoseconds(now.nanosecond() as i64)
        - Duration::days(1);
    let from = to - Duration::hours(50);
    let previous_from = from - Duration::hours(50);
    let (status, report) = stack
        .get(&format!("/ads/analytics?from={}&to={}&sort=impressions&limit=3&compare=previous", at(from), at(to)))
        .await;
    assert_eq!(status, 200, "{report}");
    let previous = &report["previous"];
    assert_eq!(
        (previous["from"].as_str(), previous["to"].as_str()),
        (Some(&*at(previous_from)), Some(&*at(from))),
        "{report}"
    );
    let current: Vec<&Value> = report["ads"].as_array().expect("ads").iter().map(|e| &e["ad_id"]).collect();
    let before: Vec<&Value> = previous["ads"].as_array().expect("previous ads").iter().map(|e| &e["ad_id"]).collect();
    assert_eq!(current, before, "the same ads, in the same order");
    for entry in previous["ads"].as_array().expect("previous ads") {
        let ad = entry["ad_id"].as_str().unwrap_or("");
        assert_eq!(Totals::of_api(entry), raw_totals(stack, ad, previous_from, from).await, "previous period of {ad}");
    }
    assert_eq!(
        Totals::of_api(&previous["total"]),
        raw_totals_where(stack, &raw_window(previous_from, from)).await,
        "previous period, every ad"
    );
    let path =
        format!("/ads/{AD_COFFEE_CLUB}/analytics?from={}&to={}&granularity=day&compare=previous", at(from), at(to));
    let (status, answer) = stack.get(&path).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        Totals::of_api(&answer["previous"]["totals"]),
        raw_totals(stack, AD_COFFEE_CLUB, previous_from, from).await,
        "{path}"
    );
    let series = answer["previous"]["series"].as_array().expect("previous series");
    let clicks: u64 = series.iter().map(|b| b["clicks"].as_u64().unwrap_or(0)).sum();
    assert_eq!(
        clicks,
        answer["previous"]["totals"]["clicks"].as_u64().unwrap_or(u64::MAX),
        "{path}: the series adds up to the totals"
    );
    assert_eq!(Totals::of_api(&answer["totals"]), raw_totals(stack, AD_COFFEE_CLUB, from, to).await, "{path}");
}

/// Unique visitors per ad and over every ad, and per day bucket, against `uniqExact` over the
/// raw rows of `[from, to)`.
async fn assert_uniques_match(stack: &Stack, from: OffsetDateTime, to: OffsetDateTime) {
    let (from_s, to_s) = (at(from), at(to));
    for ad in ADS {
        assert_totals_match(stack, ad, from, to).await;
    }
    let (status, report) = stack.get(&format!("/ads/analytics?from={from_s}&to={to_s}")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        Totals::of_api(&report["total"]),
        raw_totals_where(stack, &raw_window(from, to)).await,
        "every ad over [{from_s}, {to_s})"
    );
    let path = format!("/ads/{AD_TRAIL_RUNNER}/analytics?from={from_s}&to={to_s}&granularity=day");
    let (status, answer) = stack.get(&path).await;
    assert_eq!(status, 200, "{answer}");
    let api: BTreeMap<String, u64> = answer["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|b| b["impressions"].as_u64() > Some(0))
        .map(|b| (b["start"].as_str().unwrap_or("").to_owned(), b["unique_viewers"].as_u64().unwrap_or(0)))
        .collect();
    let sql = format!(
        "SELECT formatDateTime(toStartOfDay(timestamp), '%Y-%m-%dT%H:%i:%SZ'), uniqExact(visitor_id) FROM impression_events \
         WHERE {} GROUP BY 1 ORDER BY 1 FORMAT TSV",
        raw_filter(AD_TRAIL_RUNNER, from, to)
    );
    let raw: BTreeMap<String, u64> = stack
        .sql(&sql)
        .await
        .expect("daily uniques")
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(day, n)| (day.to_owned(), n.parse().expect("a count")))
        .collect();
    assert_eq!(api, raw, "{path}: unique viewers per day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_visitors_are_counted_per_utc_day_of_the_event_whether_stored_or_late() {
    // A row below is written behind the aggregator's back, so no announcement drops the past
    // days' cached counts: keep them one second only.
    let mut stack =
        Stack::start_with(StackOptions { query_env: vec![("CACHE_PAST_TTL_SECS", "1")], ..StackOptions::default() })
            .await;
    let now = OffsetDateTime::now_utc();
    let today = now.replace_time(time::Time::MIDNIGHT);
    // Yesterday's midnight, between two closed days; events a few seconds either side of it.
    let midnight = today - Duration::days(1);
    for visitor in 0..3 {
        let items: Vec<Value> = [
            (AD_TRAIL_RUNNER, midnight - Duration::seconds(10)),
            (AD_TRAIL_RUNNER, midnight + Duration::seconds(10)),
            (AD_COFFEE_CLUB, midnight - Duration::minutes(5)),
            (AD_TRAIL_RUNNER, now - Duration::minutes(1)),
        ]
        .into_iter()
        .flat_map(|(ad, ts)| {
            [
                json!({"type": "impression", "ad_id": ad, "timestamp": at(ts)}),
                json!({"type": "click", "ad_id": ad, "timestamp": at(ts)}),
            ]
        })
        .collect();
        let agent = format!("night-owl-{visitor}");
        let (status, answer) = stack
            .post_raw(
                "/ads/events",
                "application/json",
                serde_json::to_vec(&items).expect("serialize"),
                &[("user-agent", &agent)],
            )
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    stack.wait_for_count("SELECT (SELECT sum(clicks) FROM click_events_per_day) + (SELECT sum(impressions) FROM impression_events_per_day)", 24).await;
    // Received together, but keyed by their own days: each visitor is one visitor per UTC day,
    // so one visitor's two sides of midnight are two ids, as they are two days' rows.
    let around_midnight = raw_filter(AD_TRAIL_RUNNER, midnight - Duration::hours(1), midnight + Duration::hours(1));
    assert_eq!(
        stack.count(&format!("SELECT uniqExact(visitor_id) FROM impression_events WHERE {around_midnight}")).await,
        6
    );

    wait_for_closed_days_stored(&stack).await;
    let minute = |t: OffsetDateTime| t.replace_second(0).and_then(|t| t.replace_nanosecond(0)).expect("a minute");
    let windows = [
        (midnight - Duration::hours(1), midnight + Duration::hours(1)),
        (midnight - Duration::days(1), minute(now) + Duration::MINUTE),
        (midnight - Duration::days(2) + Duration::minutes(7), today),
    ];
    for (from, to) in windows {
        assert_uniques_match(&stack, from, to).await;
    }

    // A late event for a closed day, written while no aggregator runs: that day's stored count
    // is stale, so it must not be read.
    stack.aggregator.terminate();
    stack
        .sql(&format!(
            "INSERT INTO impression_events (event_id, ad_id, timestamp, received_at, client_ip, user_agent, visitor_id, schema_version, stream_seq) \
             VALUES (generateUUIDv4(), '{AD_TRAIL_RUNNER}', toDateTime64({}, 3, 'UTC'), now64(3), '127.0.0.0', 'late', 42, 1, 0)",
            (midnight - Duration::seconds(20)).unix_timestamp()
        ))
        .await
        .expect("late row");
    stack.wait_for_count("SELECT sum(impressions) FROM impression_events_per_day", 13).await;
    assert!(stack.count(e2e::UNSTORED_CLOSED_DAYS).await > 0, "the late row made its day's stored counts stale");
    // Past the past days' cache TTL.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    for (from, to) in windows {
        assert_uniques_match(&stack, from, to).await;
    }
    let (_, report) = stack
        .get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&from={}&to={}", at(windows[0].0), at(windows[0].1)))
        .await;
    assert_eq!(report["ads"][0]["unique_viewers"], 7, "the late visitor counts at once: {report}");

    // The next aggregator stores that day again, and the answers stay the same.
    stack.aggregator.start().await;
    wait_for_closed_days_stored(&stack).await;
    for (from, to) in windows {
        assert_uniques_match(&stack, from, to).await;
    }
}
