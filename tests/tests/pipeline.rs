//! Clicks and impressions over HTTP, counted through the query API and checked in ClickHouse.

use e2e::{eventually, Stack, AD_COFFEE_CLUB, AD_INACTIVE, AD_TRAIL_RUNNER};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format timestamp")
}

/// The entry of `ad_id` in an `/ads/analytics` answer.
fn entry<'a>(report: &'a Value, ad_id: &str) -> Option<&'a Value> {
    report["ads"].as_array()?.iter().find(|a| a["ad_id"] == ad_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_and_impressions_are_counted_exactly_once() {
    let mut stack = Stack::start().await;
    let now = OffsetDateTime::now_utc();
    // Two distinct minutes inside the last hour, 5 s into each.
    let minute = |ago: i64| {
        let t = now - Duration::minutes(ago);
        t - Duration::seconds(t.second() as i64) - Duration::nanoseconds(t.nanosecond() as i64) + Duration::seconds(5)
    };
    // A visitor is one per UTC day of the events' timestamps: keep both minutes in one day
    // (from 00:10 to 00:31 UTC, minutes 30 and 10 ago straddle midnight; 51 and 31 do not).
    let (early, late) =
        if minute(30).date() == minute(10).date() { (minute(30), minute(10)) } else { (minute(51), minute(31)) };
    let repeated = uuid::Uuid::now_v7().to_string();

    let clicks = [
        (
            json!({"ad_id": AD_TRAIL_RUNNER, "timestamp": at(early), "playback_time_secs": 10, "watched_percent": 50, "event_id": repeated}),
            "viewer-a",
        ),
        (
            json!({"ad_id": AD_TRAIL_RUNNER, "timestamp": at(late), "playback_time_secs": 20.0, "watched_percent": 100}),
            "viewer-a",
        ),
        (json!({"ad_id": AD_TRAIL_RUNNER, "timestamp": at(late)}), "viewer-b"),
        (json!({"ad_id": AD_COFFEE_CLUB, "timestamp": at(late)}), "viewer-a"),
    ];
    let mut ids = Vec::new();
    for (body, agent) in &clicks {
        let (status, answer) = stack
            .post_raw("/ads/click", "application/json", body.to_string().into_bytes(), &[("user-agent", agent)])
            .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "accepted");
        ids.push(answer["event_id"].as_str().expect("event_id").to_owned());
    }
    assert_eq!(ids[0], repeated, "a client's event_id is kept");
    assert_ne!(ids[1], ids[2], "the server assigns distinct ids");

    // The same click again, as a client retrying after a timeout would send it.
    let (status, answer) = stack
        .post_raw("/ads/click", "application/json", clicks[0].0.to_string().into_bytes(), &[("user-agent", "viewer-a")])
        .await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("duplicate")), "{answer}");

    for ts in [early, early, late, late] {
        let (status, answer) =
            stack.post("/ads/impression", json!({"ad_id": AD_TRAIL_RUNNER, "timestamp": at(ts)})).await;
        assert_eq!(status, 202, "{answer}");
    }

    let report = eventually("all events in /ads/analytics", || async {
        let (status, report) = stack.get("/ads/analytics?timeframe=1h").await;
        let clicks = entry(&report, AD_TRAIL_RUNNER).map(|e| e["clicks"].clone());
        let impressions = entry(&report, AD_TRAIL_RUNNER).map(|e| e["impressions"].clone());
        if status == 200
            && clicks == Some(json!(3))
            && impressions == Some(json!(4))
            && entry(&report, AD_COFFEE_CLUB).is_some()
        {
            Ok(report)
        } else {
            Err(format!("{status} {report}"))
        }
    })
    .await;
    let trail = entry(&report, AD_TRAIL_RUNNER).expect("trail runner");
    assert_eq!(trail["unique_clicks"], 2, "two distinct user agents clicked");
    assert_eq!(trail["ctr"], 0.75);
    assert_eq!(trail["avg_playback_time_secs"], 15.0, "only clicks that reported playback count");
    let coffee = entry(&report, AD_COFFEE_CLUB).expect("coffee club");
    assert_eq!(coffee["clicks"], 1);
    assert_eq!(coffee["impressions"], 0);
    assert_eq!(coffee["ctr"], Value::Null, "no impressions: no CTR");
    assert_eq!(coffee["avg_playback_time_secs"], Value::Null);
    assert_eq!(report["ads"].as_array().map(Vec::len), Some(2), "{report}");

    // The raw tables hold exactly one row per event, and the duplicate once.
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 4);
    assert_eq!(stack.count("SELECT count() FROM impression_events").await, 4);
    assert_eq!(stack.count(&format!("SELECT count() FROM click_events WHERE event_id = '{repeated}'")).await, 1);
    // Plain SQL over the raw table agrees with the API's unique clicks.
    assert_eq!(
        stack.count(&format!("SELECT uniq(visitor_id) FROM click_events WHERE ad_id = '{AD_TRAIL_RUNNER}'")).await,
        2
    );

    // One ad's series, by minute: the early and the late minute hold their events, others zeros.
    let from = at(early - Duration::minutes(1));
    let to = at(late + Duration::minutes(1));
    let (status, series) =
        stack.get(&format!("/ads/{AD_TRAIL_RUNNER}/analytics?from={from}&to={to}&granularity=minute")).await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["totals"]["clicks"], 3);
    let buckets = series["series"].as_array().expect("series");
    assert_eq!(buckets.len(), 23, "from early-1min (rounded down) to late+1min (rounded up)");
    let bucket = |t: OffsetDateTime| {
        let start = at(t - Duration::seconds(5));
        buckets.iter().find(|b| b["start"] == start.as_str()).cloned().unwrap_or_else(|| panic!("no bucket {start}"))
    };
    assert_eq!((bucket(early)["clicks"].clone(), bucket(early)["impressions"].clone()), (json!(1), json!(2)));
    assert_eq!((bucket(late)["clicks"].clone(), bucket(late)["impressions"].clone()), (json!(2), json!(2)));
    let total: u64 = buckets.iter().map(|b| b["clicks"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 3, "empty buckets are zeros");

    // SIGTERM: each service drains and exits cleanly.
    for service in [&mut stack.ingest, &mut stack.aggregator, &mut stack.query] {
        let status = service.terminate();
        assert!(status.success(), "{} exited with {status}", service.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_error_and_changes_no_count() {
    let stack = Stack::start().await;
    // (what, content type, body, expected status, field named in the answer)
    type Case = (&'static str, &'static str, Vec<u8>, u16, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "unknown ad",
            "application/json",
            json!({"ad_id": uuid::Uuid::new_v4()}).to_string().into(),
            422,
            Some("ad_id"),
        ),
        ("inactive ad", "application/json", json!({"ad_id": AD_INACTIVE}).to_string().into(), 422, Some("ad_id")),
        ("missing ad", "application/json", b"{}".to_vec(), 422, Some("ad_id")),
        ("malformed JSON", "application/json", b"{\"ad_id\": ".to_vec(), 400, None),
        (
            "wrong type",
            "application/json",
            json!({"ad_id": AD_TRAIL_RUNNER, "watched_percent": "all"}).to_string().into(),
            400,
            Some("watched_percent"),
        ),
        (
            "unknown field",
            "application/json",
            json!({"ad_id": AD_TRAIL_RUNNER, "adid": 1}).to_string().into(),
            400,
            Some("adid"),
        ),
        (
            "not a country code",
            "application/json",
            json!({"ad_id": AD_TRAIL_RUNNER, "country": "France"}).to_string().into(),
            422,
            Some("country"),
        ),
        (
            "out of range",
            "application/json",
            json!({"ad_id": AD_TRAIL_RUNNER, "playback_time_secs": 90000}).to_string().into(),
            422,
            Some("playback_time_secs"),
        ),
        (
            "future",
            "application/json",
            json!({"ad_id": AD_TRAIL_RUNNER, "timestamp": at(OffsetDateTime::now_utc() + Duration::minutes(10))})
                .to_string()
                .into(),
            422,
            Some("timestamp"),
        ),
        (
            "too old for the stream",
            "application/json",
            json!({"ad_id": AD_TRAIL_RUNNER, "timestamp": "2020-01-01T00:00:00Z"}).to_string().into(),
            422,
            Some("timestamp"),
        ),
        ("oversized", "application/json", vec![b' '; 17 * 1024], 413, None),
        ("wrong content type", "application/xml", json!({"ad_id": AD_TRAIL_RUNNER}).to_string().into(), 415, None),
    ];
    for (what, content_type, body, expected, field) in cases {
        let (status, answer) = stack.post_raw("/ads/click", content_type, body, &[]).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(answer["detail"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {answer}");
        assert_eq!(answer["field"].as_str(), field, "{what}: {answer}");
    }
    let (status, answer) =
        stack.post("/ads/impression", json!({"ad_id": AD_TRAIL_RUNNER, "playback_time_secs": 1})).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("playback_time_secs")), "{answer}");

    // A valid click after all of them: once it is counted, everything before it would be too.
    let (status, _) = stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await;
    assert_eq!(status, 202);
    eventually("the valid click", || async {
        let (_, report) = stack.get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&timeframe=15m")).await;
        match entry(&report, AD_TRAIL_RUNNER).map(|e| e["clicks"].clone()) {
            Some(clicks) if clicks == 1 => Ok(()),
            other => Err(format!("{other:?} in {report}")),
        }
    })
    .await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 1);
    assert_eq!(stack.count("SELECT count() FROM impression_events").await, 0);
    let metrics = stack.metrics(&stack.ingest).await;
    assert!(metrics.contains(r#"ingest_events_rejected_total{kind="click",reason="unknown_ad"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"ingest_events_rejected_total{kind="click",reason="payload_too_large"} 1"#),
        "{metrics}"
    );
    // Requests by route template and status, and the one message JetStream stored.
    let count = |text: &str, series: &str| e2e::metric(text, series).unwrap_or(0.0);
    assert_eq!(
        count(&metrics, r#"http_request_duration_seconds_count{method="POST",route="/ads/click",status="202"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        count(&metrics, r#"http_request_duration_seconds_count{method="POST",route="/ads/click",status="413"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(count(&metrics, r#"ingest_messages_published_total{outcome="stored"}"#), 1.0, "{metrics}");
    let (status, _) = stack.get("/no/such/path/0193a5c2-7b1e-7c3d-9f00-2a6b1c4d5e6f").await;
    assert_eq!(status, 404);
    let metrics = stack.metrics(&stack.query).await;
    assert!(
        count(&metrics, r#"http_request_duration_seconds_count{method="GET",route="/ads/analytics",status="200"}"#)
            >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        count(&metrics, r#"http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}"#),
        1.0,
        "ids do not make series: {metrics}"
    );
    assert!(count(&metrics, r#"query_clickhouse_query_duration_seconds_count{query="clicks"}"#) >= 1.0, "{metrics}");
    // The lag gauges, from a lag and back to none: exactly_once.rs (ClickHouse stopped).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_are_checked() {
    let stack = Stack::start().await;
    let cases = [
        ("/ads?limit=0", 400, Some("limit")),
        ("/ads?limit=101", 400, Some("limit")),
        ("/ads/not-a-uuid", 400, Some("ad_id")),
        ("/ads/00000000-0000-4000-8000-000000000000", 404, Some("ad_id")),
        ("/ads/analytics?timeframe=2h", 400, Some("timeframe")),
        ("/ads/analytics?timeframe=1h&from=2026-01-01T00:00:00Z", 422, Some("timeframe")),
        ("/ads/analytics?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 422, Some("to")),
        ("/ads/analytics?from=yesterday", 400, Some("from")),
        ("/ads/analytics?from=2026-01-01T00:00:00Z&to=9999-12-31T23:59:59Z", 422, Some("to")),
        ("/ads/analytics?ad_id=00000000-0000-4000-8000-000000000000", 404, Some("ad_id")),
        (&*format!("/ads/{AD_TRAIL_RUNNER}/analytics?timeframe=all&granularity=minute"), 422, Some("granularity")),
        (&*format!("/ads/{AD_TRAIL_RUNNER}/analytics?granularity=fortnight"), 400, Some("granularity")),
    ];
    for (path, expected, field) in cases {
        let (status, answer) = stack.get(path).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert_eq!(answer["field"].as_str(), field, "{path}: {answer}");
    }
    // Errors outside the operations have the same problem shape (`read_answer` checks it).
    assert_eq!(stack.get("/no/such/path").await.0, 404);
    assert_eq!(stack.post("/no/such/path", json!({})).await.0, 404);
    let wrong_method = stack.http.delete(stack.query.url("/ads")).send().await.expect("DELETE /ads");
    assert_eq!(e2e::read_answer("DELETE /ads", wrong_method).await.0, 405);
    // Without API_KEY, reads are anonymous and the catalog cannot be changed.
    let change = stack
        .http
        .patch(stack.query.url(&format!("/ads/{AD_TRAIL_RUNNER}")))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(e2e::read_answer("PATCH /ads/{id}", change).await.0, 403);

    let (status, page) = stack.get("/ads?page=2&limit=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["pagination"], json!({"page": 2, "limit": 3, "total": 4, "total_pages": 2}));
    assert_eq!(page["ads"].as_array().map(Vec::len), Some(1));
    let (status, ad) = stack.get(&format!("/ads/{AD_INACTIVE}")).await;
    assert_eq!((status, ad["active"].as_bool()), (200, Some(false)), "{ad}");
}

/// An ad's report over a window fixed for the test's length (a `timeframe` moves on with each
/// minute, which would be a new cache key and a fresh answer whatever the cache does).
fn fixed_window_report(ad_id: &str) -> String {
    let now = OffsetDateTime::now_utc();
    format!("/ads/analytics?ad_id={ad_id}&from={}&to={}", at(now - Duration::HOUR), at(now + Duration::HOUR))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_event_shows_up_as_soon_as_the_aggregator_announces_its_write() {
    // A TTL far beyond the harness's patience: only the announcement can refresh the answer.
    let stack =
        e2e::Stack::start_with(e2e::StackOptions { query_env: vec![("CACHE_TTL_MS", "600000")], ..Default::default() })
            .await;
    let path = fixed_window_report(AD_COFFEE_CLUB);
    let clicks = |report: &Value| entry(report, AD_COFFEE_CLUB).and_then(|e| e["clicks"].as_u64());
    let (_, before) = stack.get(&path).await;
    assert_eq!(clicks(&before), Some(0), "{before}");
    let (_, cached) = stack.get(&path).await;
    assert_eq!(clicks(&cached), Some(0), "{cached}");
    let metrics = stack.metrics(&stack.query).await;
    assert!(
        metrics.contains(r#"query_cache_lookups_total{cache="reports",outcome="hit"} 1"#),
        "the second answer came from the cache: {metrics}"
    );

    assert_eq!(stack.post("/ads/click", json!({"ad_id": AD_COFFEE_CLUB})).await.0, 202);
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
    eventually("the click in the cached report", || async {
        let (_, report) = stack.get(&path).await;
        if clicks(&report) == Some(1) {
            Ok(())
        } else {
            Err(report.to_string())
        }
    })
    .await;
    let metrics = stack.metrics(&stack.query).await;
    let notices = e2e::metric(&metrics, "query_write_notices_total").unwrap_or(0.0);
    assert!(notices >= 1.0, "the query service heard the write: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_days_stay_cached_across_writes_until_a_late_event_reaches_back_to_them() {
    // A TTL far beyond the harness's patience: only an announcement can refresh past days.
    let stack = e2e::Stack::start_with(e2e::StackOptions {
        query_env: vec![("CACHE_PAST_TTL_SECS", "600")],
        ..Default::default()
    })
    .await;
    let now = OffsetDateTime::now_utc();
    let today = now.replace_time(time::Time::MIDNIGHT);
    let path = format!(
        "/ads/analytics?ad_id={AD_COFFEE_CLUB}&from={}&to={}",
        at(today - Duration::days(2)),
        at(now + Duration::HOUR)
    );
    let clicks = |report: &Value| entry(report, AD_COFFEE_CLUB).and_then(|e| e["clicks"].as_u64());
    let past = |metrics: &str, outcome: &str| {
        e2e::metric(metrics, &format!(r#"query_cache_lookups_total{{cache="past_counts",outcome="{outcome}"}}"#))
            .unwrap_or(0.0)
    };
    let click = |timestamp: OffsetDateTime, agent: &'static str| {
        let stack = &stack;
        async move {
            let body = json!({"ad_id": AD_COFFEE_CLUB, "timestamp": at(timestamp)}).to_string().into_bytes();
            assert_eq!(stack.post_raw("/ads/click", "application/json", body, &[("user-agent", agent)]).await.0, 202);
        }
    };
    let shows = |expected: u64| {
        let (stack, path) = (&stack, &path);
        eventually("the clicks in the report", move || async move {
            let (_, report) = stack.get(path).await;
            if clicks(&report) == Some(expected) {
                Ok(())
            } else {
                Err(report.to_string())
            }
        })
    };
    shows(0).await;
    let first = stack.metrics(&stack.query).await;
    assert!(past(&first, "miss") >= 1.0, "the days before today were read once: {first}");

    // Today's click: the answer changes, the days before today are not read again.
    click(now, "today").await;
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
    shows(1).await;
    let after_today = stack.metrics(&stack.query).await;
    assert_eq!(
        past(&after_today, "miss"),
        past(&first, "miss"),
        "a write of today's events keeps the past cached: {after_today}"
    );
    assert!(past(&after_today, "hit") > past(&first, "hit"), "{after_today}");

    // A late click for yesterday: its announcement reaches back, so yesterday is read again.
    click(today - Duration::hours(12), "yesterday").await;
    stack.wait_for_count("SELECT count() FROM click_events", 2).await;
    shows(2).await;
    let after_late = stack.metrics(&stack.query).await;
    assert!(past(&after_late, "miss") > past(&after_today, "miss"), "{after_late}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_announcements_a_new_event_shows_up_once_the_cache_ttl_has_passed() {
    const TTL: std::time::Duration = std::time::Duration::from_secs(6);
    // The aggregator announces on a subject the query service does not listen to, as when
    // NATS cannot carry the announcements (here NATS refuses them: the aggregator's user may
    // publish only on ads.written): the TTL alone bounds how old an answer gets.
    let mut stack = e2e::Stack::start_with(e2e::StackOptions {
        query_env: vec![("CACHE_TTL_MS", "6000")],
        aggregator_env: vec![("NATS_WRITTEN_SUBJECT", "elsewhere.written")],
        ..Default::default()
    })
    .await;
    stack.permission_violations_expected = true;
    let path = fixed_window_report(AD_COFFEE_CLUB);
    let clicks = |report: &Value| entry(report, AD_COFFEE_CLUB).and_then(|e| e["clicks"].as_u64());
    let asked = std::time::Instant::now();
    let (_, before) = stack.get(&path).await;
    assert_eq!(clicks(&before), Some(0), "{before}");

    assert_eq!(stack.post("/ads/click", json!({"ad_id": AD_COFFEE_CLUB})).await.0, 202);
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
    let (_, cached) = stack.get(&path).await;
    if asked.elapsed() < TTL {
        assert_eq!(clicks(&cached), Some(0), "within the TTL the cached answer is served: {cached}");
        let metrics = stack.metrics(&stack.query).await;
        assert!(metrics.contains(r#"query_cache_lookups_total{cache="reports",outcome="miss"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"query_cache_lookups_total{cache="reports",outcome="hit"} 1"#), "{metrics}");
    } else {
        println!("storing the click outlasted the cache TTL; the cached answer was not observed");
    }
    // The entry was stored when the first answer was computed, a little after `asked`.
    tokio::time::sleep(TTL.saturating_sub(asked.elapsed()) + std::time::Duration::from_millis(500)).await;
    let (_, fresh) = stack.get(&path).await;
    assert_eq!(clicks(&fresh), Some(1), "once the TTL has passed the click is counted: {fresh}");
    let metrics = stack.metrics(&stack.query).await;
    assert!(
        metrics.contains(r#"query_cache_lookups_total{cache="reports",outcome="miss"} 2"#),
        "the expired answer was computed again: {metrics}"
    );
}
