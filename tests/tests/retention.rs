//! Retention: the raw event tables expire rows by ClickHouse TTL (`RAW_EVENTS_TTL_DAYS`, 90 by
//! default) while the rollups keep their counts; the stored event ids expire with them.

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
    // The stream and the dead letters keep messages no longer than the ids are kept.
    let aggregator_env = vec![
        ("RAW_EVENTS_TTL_DAYS", "2"),
        ("STREAM_MAX_AGE_SECS", "86400"),
        ("DEAD_LETTER_MAX_AGE_SECS", "86400"),
        ("AUDIENCE_TTL_DAYS", "3"),
    ];
    let stack = Stack::start_with(StackOptions {
        aggregator_env,
        query_env: vec![("AUDIENCE_TTL_DAYS", "3")],
        ..StackOptions::default()
    })
    .await;
    assert!(engine(&stack, "stored_event_ids_kv").await.starts_with("EmbeddedRocksDB(172800) "), "ids kept 2 days");
    for table in RAW_TABLES {
        let engine = engine(&stack, table).await;
        assert!(engine.contains("TTL toDateTime(timestamp) + toIntervalDay(2)"), "{table}: {engine}");
    }
    for rollup in ["click_events_per_day", "impression_events_per_hour", "invalid_events_per_day"] {
        assert!(!engine(&stack, rollup).await.contains(" TTL "), "{rollup} keeps its rows");
    }
    // The audience rollups (visitor-id states by device, browser and country) go after their
    // own days, and breakdowns reach no further back.
    assert!(engine(&stack, "impression_audience_per_day").await.contains("TTL day + toIntervalDay(3)"));
    assert!(engine(&stack, "click_audience_per_hour").await.contains("TTL hour + toIntervalDay(3)"));
    let (status, refused) = stack.get("/ads/analytics/breakdown?by=country&timeframe=7d").await;
    assert_eq!((status, refused["field"].as_str()), (422, Some("from")), "{refused}");
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("kept for 3 days (AUDIENCE_TTL_DAYS)")), "{refused}");
    let (status, all) = stack.get("/ads/analytics/breakdown?by=country&timeframe=all").await;
    let oldest = time::OffsetDateTime::now_utc().date() - time::Duration::days(2);
    assert_eq!((status, all["from"].as_str()), (200, Some(format!("{oldest}T00:00:00Z").as_str())), "{all}");

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
    assert_eq!(
        stack.count("SELECT sum(clicks) FROM click_events_per_day").await,
        5,
        "the rollups still count all five"
    );
    let (status, report) = stack.get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&timeframe=7d")).await;
    assert_eq!((status, report["total"]["clicks"].as_u64()), (200, Some(5)), "{report}");

    // Another setting changes the TTL at the next migrate; 0 removes it.
    let migrate = |days: &str| {
        let output =
            stack.admin_command().env("RAW_EVENTS_TTL_DAYS", days).arg("migrate").output().expect("aggregator migrate");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    // The ids move to a table of the new retention, every one of them: a click sent again is
    // still recognised.
    let click_id = uuid::Uuid::now_v7();
    let click = serde_json::json!({"event_id": click_id, "ad_id": AD_TRAIL_RUNNER});
    let (status, answer) = stack.post("/ads/click", click.clone()).await;
    assert_eq!(status, 202, "{answer}");
    // The ids table is fed by a view, which an insert reaches after the raw table.
    stack.wait_for_count(&format!("SELECT count() FROM stored_event_ids_kv WHERE event_id = '{click_id}'"), 1).await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 3);
    let ids = stack.count("SELECT count() FROM stored_event_ids_kv").await;
    migrate("30");
    assert!(engine(&stack, "impression_events").await.contains("TTL toDateTime(timestamp) + toIntervalDay(30)"));
    assert!(engine(&stack, "stored_event_ids_kv").await.starts_with("EmbeddedRocksDB(2592000) "));
    assert_eq!(stack.count("SELECT count() FROM stored_event_ids_kv").await, ids, "every id moved");
    migrate("0");
    for table in RAW_TABLES {
        assert!(!engine(&stack, table).await.contains(" TTL "), "{table} keeps rows for good");
    }
    assert!(
        engine(&stack, "stored_event_ids_kv").await.starts_with("EmbeddedRocksDB PRIMARY KEY"),
        "ids kept for good"
    );
    assert_eq!(stack.count("SELECT count() FROM stored_event_ids_kv").await, ids);
    // A new message with the click's id (past JetStream's duplicate window: another stream
    // message) is recognised by its stored id and not counted again.
    let js = async_nats::jetstream::new(stack.nats_admin().await);
    let mut again: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
    again["event_id"] = click["event_id"].clone();
    js.send_publish("ads.events.click", e2e::signed_message(again.to_string()))
        .await
        .expect("publish")
        .await
        .expect("ack");
    e2e::eventually("the repeat recognised as stored", || async {
        match e2e::metric(&stack.metrics(&stack.aggregator).await, "aggregator_events_already_stored_total") {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 3);
}
