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

/// The dead letters as `aggregator dead-letters list` prints them, once there are `count`.
async fn dead_letters_once_there_are(stack: &Stack, count: usize) -> Vec<Value> {
    eventually(&format!("{count} dead letters"), || async {
        let output = stack.run_admin(&["dead-letters", "list"]);
        let letters: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        if letters.len() == count {
            Ok(letters)
        } else {
            Err(format!("{letters:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_can_be_redriven() {
    let stack = Stack::start().await;
    let nats = stack.nats_admin().await;
    let js = async_nats::jetstream::new(nats);

    // What an operator's replay or a broken producer could put in the stream.
    let missing_ad = uuid::Uuid::new_v4();
    let mut event: Value =
        serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
    event["event_id"] = json!(uuid::Uuid::now_v7());
    event["ad_id"] = json!(missing_ad);
    event["timestamp"] =
        json!(time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("now"));
    let mut future_version = event.clone();
    future_version["schema_version"] = json!(99);
    future_version["event_id"] = json!(uuid::Uuid::now_v7());
    // A click on a known ad, but not through ingest: unsigned, or signed for another payload.
    let mut forged = event.clone();
    forged["ad_id"] = json!(AD_TRAIL_RUNNER);
    forged["event_id"] = json!(uuid::Uuid::now_v7());
    let key = schemas::stream::SigningKey::new(e2e::TEST_EVENT_SIGNING_KEY).expect("key");
    let signed_for_another = key.sign(b"{}");
    let poison = [
        (b"{not json".to_vec(), "bad_json"),
        (future_version.to_string().into_bytes(), "unknown_schema_version"),
        (event.to_string().into_bytes(), "unknown_ad"),
        (forged.to_string().into_bytes(), "bad_signature"),
        (forged.to_string().into_bytes(), "bad_signature"),
    ];
    for (i, (payload, reason)) in poison.iter().enumerate() {
        let publish = match (*reason, i) {
            ("bad_signature", 3) => {
                PublishMessage::build().payload(payload.clone().into()).header("Ads-Schema-Version", "1")
            }
            ("bad_signature", _) => PublishMessage::build()
                .payload(payload.clone().into())
                .header("Ads-Schema-Version", "1")
                .header(schemas::stream::SIGNATURE_HEADER, signed_for_another.as_str()),
            _ => e2e::signed_message(payload.clone()),
        };
        js.send_publish("ads.events.click", publish).await.expect("publish").await.expect("ack");
        // Valid clicks around the poison must flow past it.
        assert_eq!(stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await.0, 202);
    }
    println!("injected 5 poison messages between 5 valid clicks");

    stack.wait_for_count("SELECT count() FROM click_events", 5).await;
    let letters = dead_letters_once_there_are(&stack, 5).await;
    // Each poison message, with its reason (letters come in the order they were written, which
    // is not always the order of publishing).
    let mut expected: Vec<(String, String)> = poison
        .iter()
        .map(|(payload, reason)| (reason.to_string(), String::from_utf8_lossy(payload).into_owned()))
        .collect();
    let mut got: Vec<(String, String)> = letters
        .iter()
        .map(|l| (l["reason"].as_str().unwrap_or("").to_owned(), l["payload"].as_str().unwrap_or("").to_owned()))
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    for letter in &letters {
        assert_eq!(letter["original_subject"], "ads.events.click");
        assert_eq!(letter["headers"]["Ads-Schema-Version"], "1", "original headers are kept: {letter}");
        assert!(!letter["detail"].as_str().unwrap_or("").is_empty());
    }
    let metrics = stack.metrics(&stack.aggregator).await;
    for (reason, count) in [("bad_json", 1), ("unknown_schema_version", 1), ("unknown_ad", 1), ("bad_signature", 2)] {
        assert!(
            metrics.contains(&format!("aggregator_dead_letters_total{{reason=\"{reason}\"}} {count}")),
            "{metrics}"
        );
    }

    // The fix: the ad is added to the catalog. Then only its letter is re-driven, with its
    // signature, and counted.
    add_ad(&stack, missing_ad).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await; // CATALOG_REFRESH_SECS=1
    let output = stack.run_admin(&["dead-letters", "redrive", "--reason", "unknown_ad"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "re-drove 1 dead letters");
    stack.wait_for_count(&format!("SELECT count() FROM click_events WHERE ad_id = '{missing_ad}'"), 1).await;
    let output = stack.run_admin(&["dead-letters", "list"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 4, "the unfixable ones stay");
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 6, "expected 5 valid + 1 re-driven clicks");
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
    let mut event: Value =
        serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
    event["event_id"] = json!(uuid::Uuid::now_v7());
    event["ad_id"] = json!(ad);
    let nats = stack.nats_admin().await;
    let js = async_nats::jetstream::new(nats);
    js.send_publish("ads.events.click", e2e::signed_message(event.to_string()))
        .await
        .expect("publish")
        .await
        .expect("ack");
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
        let response = stack
            .http
            .get(stack.ingest.url(&format!("/demo/ad.json?ad_id={ad}")))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() == 200 {
            Ok(())
        } else {
            Err(response.status().to_string())
        }
    })
    .await;
    clickhouse.stop();
    println!("injected: ClickHouse stopped");
    let (status, answer) = stack.post("/ads/click", json!({"ad_id": ad})).await;
    assert_eq!(status, 202, "{answer}");
    // Long enough for several tries: each finds the catalog unreachable and puts the message back.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let metrics = stack.metrics(&stack.aggregator).await;
    assert_eq!(
        e2e::metric_sum(&metrics, "aggregator_dead_letters_total", &[]),
        0.0,
        "nothing dead-lettered:\n{metrics}"
    );
    clickhouse.restart().await;
    println!("ClickHouse back");
    stack.wait_for_count(&format!("SELECT count() FROM click_events WHERE ad_id = '{ad}'"), 1).await;
    let output = stack.run_admin(&["dead-letters", "list"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "", "nothing dead-lettered");
}

/// Messages the stream held before ingest signed still count; every later one must be signed.
/// `aggregator migrate` records where signatures begin, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_before_signatures_began_count_and_later_unsigned_ones_do_not() {
    let mut stack =
        Stack::start_with(e2e::StackOptions { aggregator_stopped: true, ..e2e::StackOptions::default() }).await;
    let js = async_nats::jetstream::new(stack.nats_admin().await);
    let click = || {
        let mut event: Value =
            serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
        event["event_id"] = json!(uuid::Uuid::now_v7());
        event["ad_id"] = json!(AD_TRAIL_RUNNER);
        event["timestamp"] =
            json!(time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("now"));
        event
    };
    let unsigned =
        |event: &Value| PublishMessage::build().payload(event.to_string().into()).header("Ads-Schema-Version", "1");
    // An installation from before signatures: its stream holds an unsigned message, and its
    // database no record of where signatures begin.
    let legacy = click();
    js.send_publish("ads.events.click", unsigned(&legacy)).await.expect("publish").await.expect("ack");
    stack.sql("TRUNCATE TABLE event_signing").await.expect("forget the record");
    let output = stack.run_admin(&["migrate"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        stack.count("SELECT min(signed_from_stream_seq) FROM event_signing").await,
        2,
        "after the one message the stream held"
    );
    let output = stack.run_admin(&["migrate"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stack.count("SELECT count() FROM event_signing").await, 1, "recorded once");
    // Then one signed and one unsigned message.
    let (signed, late) = (click(), click());
    js.send_publish("ads.events.click", e2e::signed_message(signed.to_string()))
        .await
        .expect("publish")
        .await
        .expect("ack");
    js.send_publish("ads.events.click", unsigned(&late)).await.expect("publish").await.expect("ack");
    stack.aggregator.start().await;
    stack.wait_for_count("SELECT count() FROM click_events", 2).await;
    let letters = eventually("the late unsigned message dead-lettered", || async {
        let output = stack.run_admin(&["dead-letters", "list"]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.lines().count() == 1 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(letters.contains("bad_signature") && letters.contains(late["event_id"].as_str().expect("id")), "{letters}");
    for (event, stored) in [(&legacy, 1), (&signed, 1), (&late, 0)] {
        let id = event["event_id"].as_str().expect("id");
        assert_eq!(
            stack.count(&format!("SELECT count() FROM click_events WHERE event_id = '{id}'")).await,
            stored,
            "{id}"
        );
    }
}

/// A row ClickHouse refuses for good (here a constraint an operator added) is dead-lettered with
/// ClickHouse's reason, its neighbours are counted once, and the consumer keeps flowing. Once
/// the cause is gone, the redrive counts the refused events, and not their neighbours again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_clickhouse_rejects_is_dead_lettered_and_its_neighbours_counted_once() {
    let stack = Stack::start().await;
    stack
        .sql("ALTER TABLE click_events ADD CONSTRAINT playback_under_1000 CHECK ifNull(playback_time_secs, 0) < 1000")
        .await
        .expect("add the constraint");
    let click = |playback_time_secs: f64| json!({"ad_id": AD_TRAIL_RUNNER, "playback_time_secs": playback_time_secs});
    for playback in [10.0, 5_000.0, 20.0] {
        assert_eq!(stack.post("/ads/click", click(playback)).await.0, 202);
    }
    // One message holding three events, the middle one refused (ingest groups events so when
    // many arrive at once).
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("now");
    let grouped: Vec<Value> = [30.0, 6_000.0, 40.0]
        .iter()
        .enumerate()
        .map(|(i, playback)| {
            let mut event: Value =
                serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
            event["event_id"] = json!(uuid::Uuid::now_v7());
            event["timestamp"] = json!(now);
            event["client_ip"] = json!(format!("198.51.100.{}", i + 1));
            event["playback_time_secs"] = json!(playback);
            event
        })
        .collect();
    let payload: String = grouped.iter().map(|event| format!("{event}\n")).collect();
    let js = async_nats::jetstream::new(stack.nats_admin().await);
    js.send_publish("ads.events.click", e2e::signed_message(payload)).await.expect("publish").await.expect("ack");
    // The consumer keeps flowing past them.
    assert_eq!(stack.post("/ads/click", click(50.0)).await.0, 202);
    stack.wait_for_count("SELECT count() FROM click_events", 5).await;

    let letters = dead_letters_once_there_are(&stack, 2).await;
    for letter in &letters {
        assert_eq!(letter["reason"], "rejected_by_clickhouse", "{letter}");
        assert!(
            letter["detail"].as_str().unwrap_or("").contains("playback_under_1000"),
            "ClickHouse's reason: {letter}"
        );
    }
    assert!(letters
        .iter()
        .any(|l| l["payload"].as_str().unwrap_or("").contains(grouped[1]["event_id"].as_str().expect("id"))));
    let metrics = stack.metrics(&stack.aggregator).await;
    assert_eq!(
        e2e::metric(&metrics, "aggregator_dead_letters_total{reason=\"rejected_by_clickhouse\"}"),
        Some(2.0),
        "{metrics}"
    );

    // The fix, then the redrive: the two refused events count, their neighbours do not again.
    stack.sql("ALTER TABLE click_events DROP CONSTRAINT playback_under_1000").await.expect("drop the constraint");
    let output = stack.run_admin(&["dead-letters", "redrive", "--reason", "rejected_by_clickhouse"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "re-drove 2 dead letters");
    // An insert reaches the raw table before the rollups: wait for the last of them.
    stack.wait_for_count("SELECT sum(clicks) FROM click_events_per_minute", 7).await;
    assert_eq!(stack.count("SELECT count() FROM click_events WHERE playback_time_secs >= 1000").await, 2);
    assert_eq!(stack.count("SELECT uniqExact(event_id) FROM click_events").await, 7);
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 7, "each event once");
}
