//! One request id follows an event: the caller's `X-Request-Id` (or a new one) comes back in the
//! answer, travels with the event in the stream (message header and payload), and names the
//! event in the log lines of ingest and of the aggregator.

use e2e::{eventually, Stack, StackOptions, AD_TRAIL_RUNNER};
use serde_json::{json, Value};

/// The stream's newest message on `subject`: its `Ads-Request-Id` header and its events'
/// `request_id`s.
async fn newest_message(js: &async_nats::jetstream::Context, subject: &str) -> (Option<String>, Vec<String>) {
    let stream = js.get_stream("AD_EVENTS").await.expect("the stream");
    let message = stream.get_last_raw_message_by_subject(subject).await.expect("a message");
    let header = message.headers.get("Ads-Request-Id").map(|v| v.as_str().to_owned());
    let ids = String::from_utf8_lossy(&message.payload)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("an event")["request_id"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    (header, ids)
}

async fn click_with_id(stack: &Stack, id: &str) -> reqwest::Response {
    stack
        .http
        .post(stack.ingest.url("/ads/click"))
        .header("x-request-id", id)
        .json(&json!({"ad_id": AD_TRAIL_RUNNER}))
        .send()
        .await
        .expect("POST /ads/click")
}

fn answered_id(response: &reqwest::Response) -> String {
    response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_its_event_from_http_to_the_aggregator_logs() {
    let mut stack =
        Stack::start_with(StackOptions { ingest_env: vec![("PUBLISH_TIMEOUT_MS", "1000")], ..StackOptions::default() })
            .await;
    let js = async_nats::jetstream::new(stack.nats_admin().await);

    // The caller's id: answered, and carried by the message and by the event.
    let response = click_with_id(&stack, "trace-me-123").await;
    assert_eq!((response.status().as_u16(), answered_id(&response)), (202, "trace-me-123".to_owned()));
    assert_eq!(
        newest_message(&js, "ads.events.click").await,
        (Some("trace-me-123".to_owned()), vec!["trace-me-123".to_owned()])
    );

    // An id unfit for headers and logs is replaced by a new one.
    let response = click_with_id(&stack, "two words").await;
    let made = answered_id(&response);
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made:?}");
    assert_eq!(newest_message(&js, "ads.events.click").await.0, Some(made));

    // A batch's messages carry the batch's id.
    let batch = "{\"type\":\"impression\",\"ad_id\":\"a1000000-0000-4000-8000-000000000001\"}\n".repeat(2);
    let (status, _) = stack
        .post_raw("/ads/events", "application/x-ndjson", batch.into_bytes(), &[("x-request-id", "batch-77")])
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        newest_message(&js, "ads.events.impression").await,
        (Some("batch-77".to_owned()), vec!["batch-77".to_owned(); 2])
    );

    // The query service answers with the id too.
    let response =
        stack.http.get(stack.query.url("/ads")).header("x-request-id", "dashboard-5").send().await.expect("GET /ads");
    assert_eq!(answered_id(&response), "dashboard-5");

    // The aggregator names the requests of a message it cannot store: from the header, or
    // from the events when a message holds several requests' events.
    let poison = e2e::signed_message("{not json").header("Ads-Request-Id", "poison-7");
    js.send_publish("ads.events.click", poison).await.expect("publish").await.expect("ack");
    let mut orphan: Value =
        serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
    orphan["event_id"] = json!(uuid::Uuid::now_v7());
    orphan["ad_id"] = json!(uuid::Uuid::new_v4());
    orphan["timestamp"] =
        json!(time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("now"));
    orphan["request_id"] = json!("grouped-9");
    js.send_publish("ads.events.click", e2e::signed_message(orphan.to_string()))
        .await
        .expect("publish")
        .await
        .expect("ack");
    eventually("the aggregator to log both dead letters with their request ids", || async {
        let log = stack.aggregator.log_tail(200);
        let logged = |id: &str| log.lines().any(|l| l.contains("dead-lettering") && l.contains(id));
        if logged("poison-7") && logged("grouped-9") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;

    // Ingest's log line about an event it could not store names the request.
    stack.nats.stop();
    let response = click_with_id(&stack, "nats-down-1").await;
    assert_eq!((response.status().as_u16(), answered_id(&response)), (503, "nats-down-1".to_owned()));
    let log = stack.ingest.log_tail(50);
    assert!(log.lines().any(|l| l.contains("event not stored") && l.contains("nats-down-1")), "{log}");
    stack.nats.restart().await;
}
