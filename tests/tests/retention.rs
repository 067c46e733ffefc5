//! Retention: the raw event tables expire rows by ClickHouse TTL (`RAW_EVENTS_TTL_DAYS`, 90 by
//! default) while the rollups keep their counts.

use e2e::{eventually, Stack, StackOptions, AD_TRAIL_RUNNER};

const RAW_TABLES: [&str; 3] = ["click_events", "impression_events", "invalid_events"];

async fn engine(stack: &Stack, table: &str) -> String {
    stack
        .sql(&format!("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = '{table}'"))
        .await
        .expect("engine_full")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_events_expire_after_the_configured_days_and_rollups_keep_them() {
    let stack = Stack::start_with(StackOptions { aggregator_env: vec![("RAW_EVENTS_TTL_DAYS", "2")], ..StackOptions::default() }).await;
    for table in RAW_TABLES {
        let engine = engine(&stack, table).await;
        assert!(engine.contains("TTL toDateTime(timestamp) + toIntervalDay(2)"), "{table}: {engine}");
    }
    for rollup in ["click_events_per_day", "impression_events_per_hour", "invalid_events_per_day"] {
        assert!(!engine(&stack, rollup).await.contains(" TTL "), "{rollup} keeps its rows");
    }

    // Clicks of 5 days ago and of now, stored as the aggregator would.
    let insert = |days_ago: u32, n: u32| {
        format!(
            "INSERT INTO click_events (event_id, ad_id, timestamp, received_at, client_ip, user_agent, visitor_id, schema_version, stream_seq) \
             SELECT generateUUIDv4(), '{AD_TRAIL_RUNNER}', now64(3) - INTERVAL {days_ago} DAY, now64(3), '203.0.113.0', 'retention', number, 1, number \
             FROM numbers({n})"
        )
    };
    stack.sql(&insert(5, 3)).await.expect("old clicks");
    stack.sql(&insert(0, 2)).await.expect("new clicks");
    // TTL applies when parts merge: force one instead of waiting for the background merges.
    eventually("the expired rows gone", || async {
        stack.sql("OPTIMIZE TABLE click_events FINAL").await?;
        match stack.count("SELECT count() FROM click_events").await {
            2 => Ok(()),
            n => Err(format!("{n} rows")),
        }
    })
    .await;
    assert_eq!(stack.count("SELECT count() FROM click_events WHERE timestamp < now() - INTERVAL 1 DAY").await, 0);
    assert_eq!(stack.count("SELECT sum(clicks) FROM click_events_per_day").await, 5, "the rollups still count all five");
    let (status, report) = stack.get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&timeframe=7d")).await;
    assert_eq!((status, report["total"]["clicks"].as_u64()), (200, Some(5)), "{report}");

    // Another setting changes the TTL at the next migrate; 0 removes it.
    let migrate = |days: &str| {
        let output = stack.admin_command().env("RAW_EVENTS_TTL_DAYS", days).arg("migrate").output().expect("aggregator migrate");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    migrate("30");
    assert!(engine(&stack, "impression_events").await.contains("TTL toDateTime(timestamp) + toIntervalDay(30)"));
    migrate("0");
    for table in RAW_TABLES {
        assert!(!engine(&stack, table).await.contains(" TTL "), "{table} keeps rows for good");
    }
}
