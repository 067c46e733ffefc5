//! The stream is the source of truth: `aggregator rebuild` recomputes ClickHouse from it and the
//! analytics come out identical.

use std::time::Duration;

use e2e::{Load, Stack, AD_TRAIL_RUNNER};

/// Totals and a by-minute series over one fixed window (a relative one would move on).
async fn snapshot(stack: &Stack, window: &str) -> (serde_json::Value, serde_json::Value) {
    let (_, totals) = stack.get(&format!("/ads/analytics?{window}")).await;
    let (_, series) = stack.get(&format!("/ads/{AD_TRAIL_RUNNER}/analytics?{window}&granularity=minute")).await;
    (totals, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_from_the_stream_gives_identical_analytics() {
    let mut stack = Stack::start().await;
    let report = Load::start(stack.ingest.url(""), 3_000, 16, 10, Duration::ZERO).finish().await;
    stack.assert_counted_exactly(&report).await;
    let now = time::OffsetDateTime::now_utc();
    let rfc3339 = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).expect("format");
    let window = format!("from={}&to={}", rfc3339(now - time::Duration::HOUR), rfc3339(now + time::Duration::MINUTE));
    let before = snapshot(&stack, &window).await;
    assert!(before.0["ads"].as_array().is_some_and(|ads| ads.len() == 3), "{}", before.0);

    let refused = stack.run_admin(&["rebuild"]);
    assert!(!refused.status.success(), "no rebuild under a running aggregator");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop every aggregator"));
    let status = stack.aggregator.terminate();
    assert!(status.success());
    let output = stack.run_admin(&["rebuild"]);
    assert!(output.status.success(), "rebuild failed:\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 0, "derived tables start empty");
    assert_eq!(stack.count("SELECT count() FROM ads FINAL").await, 4, "the catalog is kept");
    println!("rebuilt: tables dropped and recreated, consumer reset; re-reading the stream");

    stack.aggregator.start().await;
    stack.assert_counted_exactly(&report).await;
    // The analysts' views (0007) name the rollups that rebuild dropped: they read the new ones.
    for view in ["ad_metrics_per_minute", "ad_metrics_per_hour", "ad_metrics_per_day", "ad_metrics_per_day_named"] {
        let clicks = stack.count(&format!("SELECT sum(clicks) FROM {view}")).await;
        let impressions = stack.count(&format!("SELECT sum(impressions) FROM {view}")).await;
        assert_eq!(
            (clicks, impressions),
            (report.clicks.len() as u64, report.impressions.len() as u64),
            "{view} after the rebuild"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // past the query cache TTL
    let after = snapshot(&stack, &window).await;
    assert_eq!(before.0["ads"], after.0["ads"], "totals per ad are identical");
    assert_eq!(before.1["series"], after.1["series"], "the time series is identical");
}
