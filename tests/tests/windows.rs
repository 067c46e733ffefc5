//! Windows that cut through days and hours: the API (which reads day, hour and minute rollups)
//! must agree with plain SQL over the raw tables, for totals and for every series bucket.

use std::collections::BTreeMap;

use e2e::{Stack, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format timestamp")
}

/// `(clicks, unique_clicks, impressions)` of `ad` over `[from, to)`, from the raw tables.
async fn raw_totals(stack: &Stack, ad: &str, from: OffsetDateTime, to: OffsetDateTime) -> (u64, u64, u64) {
    let filter = format!(
        "ad_id = toUUID('{ad}') AND timestamp >= toDateTime64({}, 3, 'UTC') AND timestamp < toDateTime64({}, 3, 'UTC')",
        from.unix_timestamp(),
        to.unix_timestamp()
    );
    let clicks = stack.sql(&format!("SELECT count(), uniq(visitor_id) FROM click_events WHERE {filter}")).await.expect("clicks");
    let (count, unique) = clicks.split_once('\t').expect("two columns");
    let impressions = stack.count(&format!("SELECT count() FROM impression_events WHERE {filter}")).await;
    (count.parse().expect("count"), unique.parse().expect("uniq"), impressions)
}

/// Asserts the API's totals for `ad` over `[from, to)` equal the raw tables'.
async fn assert_totals_match(stack: &Stack, ad: &str, from: OffsetDateTime, to: OffsetDateTime) {
    let (from_s, to_s) = (at(from), at(to));
    let (status, report) = stack.get(&format!("/ads/analytics?ad_id={ad}&from={from_s}&to={to_s}")).await;
    assert_eq!(status, 200, "{report}");
    let api = &report["ads"][0];
    let expected = raw_totals(stack, ad, from, to).await;
    let got = (api["clicks"].as_u64().unwrap_or(0), api["unique_clicks"].as_u64().unwrap_or(0), api["impressions"].as_u64().unwrap_or(0));
    assert_eq!(got, expected, "{ad} over [{from_s}, {to_s}): (clicks, unique_clicks, impressions)");
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
                let ad = if rng.random_bool(0.7) { AD_TRAIL_RUNNER } else { AD_COFFEE_CLUB };
                if rng.random_bool(0.3) {
                    json!({"type": "click", "ad_id": ad, "timestamp": at(ts), "playback_time_secs": rng.random_range(0..60)})
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
    stack.wait_for_count("SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)", sent).await;

    let minute = |t: OffsetDateTime| t - Duration::seconds(t.second() as i64) - Duration::nanoseconds(t.nanosecond() as i64);
    let mut windows = vec![(minute(now - Duration::days(7)), minute(now) + Duration::MINUTE)];
    for _ in 0..8 {
        let from = minute(now - Duration::minutes(rng.random_range(2..7 * 1440)));
        let to = from + Duration::minutes(rng.random_range(1..4 * 1440));
        windows.push((from, to.min(minute(now) + Duration::MINUTE)));
    }
    for (from, to) in windows {
        let (from_s, to_s) = (at(from), at(to));
        for ad in [AD_TRAIL_RUNNER, AD_COFFEE_CLUB] {
            assert_totals_match(&stack, ad, from, to).await;
        }
        for granularity in ["hour", "day"] {
            let path = format!("/ads/{AD_TRAIL_RUNNER}/analytics?from={from_s}&to={to_s}&granularity={granularity}");
            let (status, answer) = stack.get(&path).await;
            assert_eq!(status, 200, "{answer}");
            let series = answer["series"].as_array().expect("series");
            let api: BTreeMap<String, u64> = series
                .iter()
                .filter(|b| b["clicks"].as_u64().unwrap_or(0) + b["impressions"].as_u64().unwrap_or(0) > 0)
                .map(|b| (b["start"].as_str().unwrap_or("").to_owned(), b["clicks"].as_u64().unwrap_or(0) * 1_000_000 + b["impressions"].as_u64().unwrap_or(0)))
                .collect();
            let unit = if granularity == "hour" { "toStartOfHour" } else { "toStartOfDay" };
            let filter = format!(
                "ad_id = toUUID('{AD_TRAIL_RUNNER}') AND timestamp >= toDateTime64({}, 3, 'UTC') AND timestamp < toDateTime64({}, 3, 'UTC')",
                from.unix_timestamp(),
                to.unix_timestamp()
            );
            let sql = format!(
                "SELECT formatDateTime(b, '%Y-%m-%dT%H:%i:%SZ', 'UTC'), sum(c) * 1000000 + sum(i) FROM ( \
                 SELECT {unit}(timestamp) AS b, 1 AS c, 0 AS i FROM click_events WHERE {filter} \
                 UNION ALL SELECT {unit}(timestamp) AS b, 0 AS c, 1 AS i FROM impression_events WHERE {filter}) \
                 GROUP BY b ORDER BY b"
            );
            let rows = stack.sql(&sql).await.expect("series SQL");
            let expected: BTreeMap<String, u64> = rows
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .map(|(b, n)| (b.to_owned(), n.parse().expect("number")))
                .collect();
            assert_eq!(api, expected, "{path}: buckets as clicks*1e6 + impressions");
        }
    }

    // An installation that had events before the hour and day rollups existed: the migration
    // fills them from the raw tables once.
    for table in ["click_events_per_hour", "click_events_per_day", "impression_events_per_hour", "impression_events_per_day"] {
        stack.sql(&format!("DROP TABLE {table}_mv SYNC")).await.expect("drop view");
        stack.sql(&format!("DROP TABLE {table} SYNC")).await.expect("drop rollup");
    }
    let migrate = stack.aggregator.run_command(&["migrate"]);
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let again = stack.aggregator.run_command(&["migrate"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let week = (minute(now - Duration::days(7)) + Duration::minutes(7), minute(now) + Duration::MINUTE);
    // Past the cache's TTL, so the answer is computed from the refilled rollups.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for ad in [AD_TRAIL_RUNNER, AD_COFFEE_CLUB] {
        assert_totals_match(&stack, ad, week.0, week.1).await;
    }
    assert_eq!(stack.count("SELECT sum(clicks) FROM click_events_per_day").await, stack.count("SELECT count() FROM click_events").await);
}
