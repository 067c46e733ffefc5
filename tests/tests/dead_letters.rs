//! Poison messages in the stream go to the dead-letter stream with their reason, never block the
//! consumer, and can be re-driven once the cause is fixed.

use async_nats::jetstream::message::PublishMessage;
use e2e::{eventually, Stack, AD_TRAIL_RUNNER};
use serde_json::{json, Value};

/// Adds an active ad to the catalog, as an operator would.
async fn add_ad(stack: &Stack, id: uuid::Uuid) {
    stack
        .sql(&format!(
            "INSERT INTO ads (id, title, description, media_url, target_url, campaign_id, active, created_at, updated_at) \
             VALUES ('{id}', 'New ad', '', '', 'https://example.com', 'new', true, now64(3), now64(3))"
        ))
        .await
        .expect("add the ad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_can_be_redriven() {
    let stack = Stack::start().await;
    let nats = stack.nats_admin().await;
    let js = async_nats::jetstream::new(nats);

    // What an operator's replay or a broken producer could put in the stream.
    let missing_ad = uuid::Uuid::new_v4();
    let mut event: Value = serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
    event["event_id"] = json!(uuid::Uuid::now_v7());
    event["ad_id"] = json!(missing_ad);
    event["timestamp"] = json!(time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("now"));
    let mut future_version = event.clone();
    future_version["schema_version"] = json!(99);
    future_version["event_id"] = json!(uuid::Uuid::now_v7());
    let poison = [
        (b"{not json".to_vec(), "bad_json"),
        (future_version.to_string().into_bytes(), "unknown_schema_version"),
        (event.to_string().into_bytes(), "unknown_ad"),
    ];
    for (payload, _) in &poison {
        let publish = PublishMessage::build().payload(payload.clone().into()).header("Ads-Schema-Version", "1");
        js.send_publish("ads.events.click", publish).await.expect("publish").await.expect("ack");
        // Valid clicks around the poison must flow past it.
        assert_eq!(stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await.0, 202);
    }
    println!("injected 3 poison messages between 3 valid clicks");

    stack.wait_for_count("SELECT count() FROM click_events", 3).await;
    let letters = eventually("three dead letters", || async {
        let output = stack.run_admin(&["dead-letters", "list"]);
        let letters: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        if letters.len() == 3 { Ok(letters) } else { Err(format!("{letters:?}")) }
    })
    .await;
    for ((payload, reason), letter) in poison.iter().zip(&letters) {
        assert_eq!(letter["reason"], *reason, "{letter}");
        assert_eq!(letter["original_subject"], "ads.events.click");
        assert_eq!(letter["payload"], String::from_utf8_lossy(payload).as_ref());
        assert_eq!(letter["headers"]["Ads-Schema-Version"], "1", "original headers are kept: {letter}");
        assert!(!letter["detail"].as_str().unwrap_or("").is_empty());
    }
    let metrics = stack.metrics(&stack.aggregator).await;
    for (_, reason) in &poison {
        assert!(metrics.contains(&format!("aggregator_dead_letters_total{{reason=\"{reason}\"}} 1")), "{metrics}");
    }

    // The fix: the ad is added to the catalog. Then only its letter is re-driven and counted.
    add_ad(&stack, missing_ad).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await; // CATALOG_REFRESH_SECS=1
    let output = stack.run_admin(&["dead-letters", "redrive", "--reason", "unknown_ad"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "re-drove 1 dead letters");
    stack.wait_for_count(&format!("SELECT count() FROM click_events WHERE ad_id = '{missing_ad}'"), 1).await;
    let output = stack.run_admin(&["dead-letters", "list"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2, "the unfixable ones stay");
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 4, "expected 3 valid + 1 re-driven clicks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_an_ad_created_a_moment_ago_is_counted_not_dead_lettered() {
    // The aggregator's catalog copy refreshes every 5 s here; the event arrives sooner.
    let stack = Stack::start_with(e2e::StackOptions {
        aggregator_env: vec![("CATALOG_REFRESH_SECS", "5")],
        ..e2e::StackOptions::default()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let ad = uuid::Uuid::new_v4();
    add_ad(&stack, ad).await;
    let mut event: Value = serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
    event["event_id"] = json!(uuid::Uuid::now_v7());
    event["ad_id"] = json!(ad);
    let nats = stack.nats_admin().await;
    let js = async_nats::jetstream::new(nats);
    let publish = PublishMessage::build().payload(event.to_string().into());
    js.send_publish("ads.events.click", publish).await.expect("publish").await.expect("ack");
    stack.wait_for_count(&format!("SELECT count() FROM click_events WHERE ad_id = '{ad}'"), 1).await;
    let output = stack.run_admin(&["dead-letters", "list"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "", "nothing dead-lettered");
}

/// An ad the aggregator cannot look up is not yet an unknown ad: with ClickHouse down, the
/// catalog cannot be reloaded, so the events of an ad created just before wait and are counted
/// once ClickHouse is back, none dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ad_the_catalog_cannot_be_reloaded_for_is_retried_not_dead_lettered() {
    let dir = e2e::scratch_dir("catalog-outage");
    let mut clickhouse = e2e::ClickHouse::start(&dir).await;
    // The aggregator's copy refreshes only when it meets an ad it does not know.
    let stack = Stack::start_with(e2e::StackOptions {
        clickhouse: Some(clickhouse.login.clone()),
        aggregator_env: vec![("CATALOG_REFRESH_SECS", "3600")],
        ..e2e::StackOptions::default()
    })
    .await;
    let ad = uuid::Uuid::new_v4();
    add_ad(&stack, ad).await;
    // Ingest's copy (refreshed every second) knows the ad: the demo page's lookup says so.
    eventually("ingest to know the new ad", || async {
        let response = stack.http.get(stack.ingest.url(&format!("/demo/ad.json?ad_id={ad}"))).send().await.map_err(|e| e.to_string())?;
        if response.status() == 200 { Ok(()) } else { Err(response.status().to_string()) }
    })
    .await;
    clickhouse.stop();
    println!("injected: ClickHouse stopped");
    let (status, answer) = stack.post("/ads/click", json!({"ad_id": ad})).await;
    assert_eq!(status, 202, "{answer}");
    // Long enough for several tries: each finds the catalog unreachable and puts the message back.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let metrics = stack.metrics(&stack.aggregator).await;
    assert_eq!(e2e::metric_sum(&metrics, "aggregator_dead_letters_total", &[]), 0.0, "nothing dead-lettered:\n{metrics}");
    clickhouse.restart().await;
    println!("ClickHouse back");
    stack.wait_for_count(&format!("SELECT count() FROM click_events WHERE ad_id = '{ad}'"), 1).await;
    let output = stack.run_admin(&["dead-letters", "list"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "", "nothing dead-lettered");
}
