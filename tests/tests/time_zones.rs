//! Series buckets in the caller's time zone: days that last 25 hours when summer time ends,
//! days that start on a half hour, weeks and months. Events are written straight into the raw
//! tables at fixed instants (the materialized views fill the rollups as for the aggregator's
//! inserts), so the expected buckets can be stated by hand.

use e2e::{Stack, AD_TRAIL_RUNNER};
use serde_json::Value;

/// Inserts one impression per instant for `AD_TRAIL_RUNNER`, each from its own visitor.
async fn impressions_at(stack: &Stack, instants: &[&str]) {
    let rows: Vec<String> = instants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "(generateUUIDv4(), toUUID('{AD_TRAIL_RUNNER}'), parseDateTime64BestEffort('{t}', 3, 'UTC'), now64(3), '192.0.2.{i}', 'tz-test', 1, 0)"
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO impression_events (event_id, ad_id, timestamp, received_at, client_ip, user_agent, schema_version, stream_seq) VALUES {}",
        rows.join(", ")
    );
    stack.sql(&sql).await.expect("insert impressions");
}

/// `(bucket start as shown, impressions)` for every non-empty bucket.
async fn buckets(stack: &Stack, query: &str) -> Vec<(String, u64)> {
    let (status, answer) = stack.get(&format!("/ads/{AD_TRAIL_RUNNER}/analytics?{query}")).await;
    assert_eq!(status, 200, "{query}: {answer}");
    let series = answer["series"].as_array().unwrap_or_else(|| panic!("{query}: no series in {answer}"));
    let total: u64 = series.iter().map(|b| b["impressions"].as_u64().unwrap_or(0)).sum();
    assert_eq!(Some(total), answer["totals"]["impressions"].as_u64(), "{query}: buckets add up to the totals");
    series
        .iter()
        .filter(|b| b["impressions"].as_u64().unwrap_or(0) > 0)
        .map(|b| (b["start"].as_str().unwrap_or("").to_owned(), b["impressions"].as_u64().unwrap_or(0)))
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_follow_the_callers_time_zone() {
    let stack = Stack::start().await;
    impressions_at(
        &stack,
        &[
            "2026-10-24T21:30:00Z", // Paris 23:30 on the 24th (summer time, +02:00)
            "2026-10-24T22:30:00Z", // Paris 00:30 on the 25th
            "2026-10-25T22:30:00Z", // Paris 23:30 on the 25th: winter time since 03:00, +01:00
            "2026-10-25T23:30:00Z", // Paris 00:30 on the 26th
            "2026-10-26T18:00:00Z", // Kolkata 23:30 on the 26th (+05:30)
            "2026-10-26T18:45:00Z", // Kolkata 00:15 on the 27th
            "2026-11-01T12:00:00Z", // a Sunday, and November
            "2026-11-02T12:00:00Z", // the next Monday
        ],
    )
    .await;
    stack.wait_for_count("SELECT sum(impressions) FROM impression_events_per_minute", 8).await;
    let window = "from=2026-10-24T00:00:00Z&to=2026-11-03T00:00:00Z";

    // The 25th in Paris lasts 25 hours and holds both events of that local day.
    assert_eq!(
        buckets(&stack, &format!("{window}&granularity=day&tz=Europe/Paris")).await[..3],
        expect(&[("2026-10-24T00:00:00+02:00", 1), ("2026-10-25T00:00:00+02:00", 2), ("2026-10-26T00:00:00+01:00", 3)])
            [..]
    );
    // The same events by UTC day.
    assert_eq!(
        buckets(&stack, &format!("{window}&granularity=day")).await[..3],
        expect(&[("2026-10-24T00:00:00Z", 2), ("2026-10-25T00:00:00Z", 2), ("2026-10-26T00:00:00Z", 2)])[..]
    );
    // Kolkata's days start at 18:30 UTC, so they are read from minute rollups.
    assert_eq!(
        buckets(&stack, &format!("{window}&granularity=day&tz=Asia/Kolkata")).await,
        expect(&[
            ("2026-10-25T00:00:00+05:30", 2),
            ("2026-10-26T00:00:00+05:30", 3),
            ("2026-10-27T00:00:00+05:30", 1),
            ("2026-11-01T00:00:00+05:30", 1),
            ("2026-11-02T00:00:00+05:30", 1),
        ])
    );
    // Weeks start on Monday at local midnight: 00:30 on Monday the 26th opens a week, and
    // Sunday the 1st closes it.
    assert_eq!(
        buckets(&stack, &format!("{window}&granularity=week&tz=Europe/Paris")).await,
        expect(&[("2026-10-19T00:00:00+02:00", 3), ("2026-10-26T00:00:00+01:00", 4), ("2026-11-02T00:00:00+01:00", 1)])
    );
    assert_eq!(
        buckets(&stack, &format!("{window}&granularity=month&tz=Europe/Paris")).await,
        expect(&[("2026-10-01T00:00:00+02:00", 6), ("2026-11-01T00:00:00+01:00", 2)])
    );
    // Hours in a half-hour zone start on the half hour (UTC).
    let hours =
        buckets(&stack, "from=2026-10-26T17:00:00Z&to=2026-10-26T20:00:00Z&granularity=hour&tz=Asia/Kolkata").await;
    assert_eq!(hours, expect(&[("2026-10-26T23:00:00+05:30", 1), ("2026-10-27T00:00:00+05:30", 1)]));

    let (status, answer) = stack.get(&format!("/ads/{AD_TRAIL_RUNNER}/analytics?{window}&tz=Mars/Olympus")).await;
    assert_eq!((status, answer["field"].as_str()), (422, Some("tz")), "{answer}");
    let by_new_york_day: Value =
        stack.get(&format!("/ads/{AD_TRAIL_RUNNER}/analytics?{window}&granularity=day&tz=America/New_York")).await.1;
    assert_eq!(by_new_york_day["tz"], "America/New_York");
    // Every local day touching the window, empty ones too; New York leaves summer time on the 1st.
    let starts: Vec<&str> = by_new_york_day["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|b| b["start"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(starts.len(), 11, "{by_new_york_day}");
    assert_eq!((starts[0], starts[10]), ("2026-10-23T00:00:00-04:00", "2026-11-02T00:00:00-05:00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_summer_time_starts_lasts_23_hours() {
    let stack = Stack::start().await;
    impressions_at(
        &stack,
        &[
            "2026-03-28T22:30:00Z", // Paris 23:30 on the 28th (winter time, +01:00)
            "2026-03-28T23:30:00Z", // Paris 00:30 on the 29th
            "2026-03-29T00:30:00Z", // Paris 01:30; at 02:00 the clocks go to 03:00
            "2026-03-29T01:30:00Z", // Paris 03:30 (+02:00)
            "2026-03-29T21:30:00Z", // Paris 23:30 on the 29th
            "2026-03-29T22:30:00Z", // Paris 00:30 on the 30th
        ],
    )
    .await;
    stack.wait_for_count("SELECT sum(impressions) FROM impression_events_per_minute", 6).await;
    let window = "from=2026-03-28T00:00:00Z&to=2026-03-31T00:00:00Z";
    assert_eq!(
        buckets(&stack, &format!("{window}&granularity=day&tz=Europe/Paris")).await,
        expect(&[("2026-03-28T00:00:00+01:00", 1), ("2026-03-29T00:00:00+01:00", 4), ("2026-03-30T00:00:00+02:00", 1)])
    );
    // The hour from 02:00 does not exist that night: 01:00 (+01:00) is followed by 03:00 (+02:00).
    let (status, answer) = stack.get(&format!("/ads/{AD_TRAIL_RUNNER}/analytics?from=2026-03-29T00:00:00Z&to=2026-03-29T02:00:00Z&granularity=hour&tz=europe/paris")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tz"], "Europe/Paris", "the zone's name as the database spells it");
    let hours: Vec<(&str, u64)> = answer["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|b| (b["start"].as_str().unwrap_or(""), b["impressions"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(hours, [("2026-03-29T01:00:00+01:00", 1), ("2026-03-29T03:00:00+02:00", 1)]);
}
