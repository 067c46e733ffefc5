//! What the stack keeps on disk is bounded by default: the event stream has a size limit, at
//! which new events are refused (never stored ones dropped), and dead letters an age limit.

use std::time::Duration;

use e2e::{eventually, LoadReport, Stack, StackOptions, AD_CITY_BREAK, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};
use serde_json::json;

const LIMIT: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_event_stream_refuses_new_events_with_503_and_keeps_every_accepted_one() {
    let stack = Stack::start_with(StackOptions {
        aggregator_env: vec![("STREAM_MAX_BYTES", "1048576")],
        ..StackOptions::default()
    })
    .await;
    let http = e2e::browser_like_client().build().expect("http client");
    let mut report = LoadReport::default();
    let mut refused = None;
    // Fifty clicks at a time until JetStream refuses one: about 2,000 fill a MiB.
    for _ in 0..200 {
        let answers = futures::future::join_all((0..50).map(|i| {
            let (http, url) = (http.clone(), stack.ingest.url("/ads/click"));
            async move {
                let id = uuid::Uuid::now_v7();
                let ad = [AD_TRAIL_RUNNER, AD_COFFEE_CLUB, AD_CITY_BREAK][i % 3];
                let response =
                    http.post(url).json(&json!({"event_id": id, "ad_id": ad})).send().await.expect("POST /ads/click");
                let retry_after =
                    response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                (id, response.status().as_u16(), retry_after)
            }
        }))
        .await;
        for (id, status, retry_after) in answers {
            *report.statuses.entry(status).or_default() += 1;
            match status {
                202 => {
                    report.clicks.insert(id);
                }
                503 => refused = Some(retry_after),
                other => panic!("a click answered {other}"),
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let retry_after = refused.expect("the stream filled up and refused a click");
    assert!(retry_after.is_some(), "the 503 says when to retry");
    assert!(report.clicks.len() > 1_000, "{} clicks accepted before the stream was full", report.clicks.len());

    // Everything accepted is counted, once: nothing stored was dropped to make room.
    stack.assert_counted_exactly(&report).await;
    let metrics = eventually("the aggregator to sample the full stream", || async {
        let metrics = stack.metrics(&stack.aggregator).await;
        let held = e2e::metric(&metrics, "aggregator_stream_bytes").unwrap_or(0.0);
        if held > 0.9 * LIMIT as f64 {
            Ok(metrics)
        } else {
            Err(format!("{held} bytes held"))
        }
    })
    .await;
    assert_eq!(e2e::metric(&metrics, "aggregator_stream_max_bytes"), Some(LIMIT as f64));
    assert!(e2e::metric(&metrics, "aggregator_stream_bytes").is_some_and(|held| held <= LIMIT as f64));

    // Dead letters are kept 30 days by default.
    let nats = stack.nats_admin().await;
    let js = async_nats::jetstream::new(nats);
    let dead_letters =
        js.get_stream("AD_EVENTS_DLQ").await.expect("dead-letter stream").info().await.expect("info").config.clone();
    assert_eq!(dead_letters.max_age, Duration::from_secs(30 * 86_400));
}
