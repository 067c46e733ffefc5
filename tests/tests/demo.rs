//! `GET /demo/ad.json`, the ad ingest's demo player plays: the one `?ad_id=` names, active or
//! not, or else a random active ad of ingest's catalog copy. Part of the demo page, not an API
//! operation: its errors are problems all the same.

use std::collections::HashSet;

use e2e::{eventually, read_answer, Stack, AD_CITY_BREAK, AD_COFFEE_CLUB, AD_INACTIVE, AD_TRAIL_RUNNER};
use serde_json::{json, Value};

async fn demo_ad(stack: &Stack, query: &str) -> (u16, Value) {
    let request = format!("GET /demo/ad.json{query}");
    let response = stack
        .http
        .get(stack.ingest.url(&format!("/demo/ad.json{query}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{request}: {e}"));
    read_answer(&request, response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plays_the_named_ad_or_a_random_active_one() {
    let stack = Stack::start().await;

    let (status, ad) = demo_ad(&stack, &format!("?ad_id={AD_TRAIL_RUNNER}")).await;
    let expected = json!({
        "ad_id": AD_TRAIL_RUNNER,
        "title": "Trail Runner 3",
        "media_url": "https://cdn.example.com/ads/trail-runner-3.mp4",
        "active": true,
    });
    assert_eq!((status, &ad), (200, &expected));
    // Named, an inactive ad is played all the same: the demo then shows ingest refusing it.
    let (status, ad) = demo_ad(&stack, &format!("?ad_id={AD_INACTIVE}")).await;
    assert_eq!((status, &ad["ad_id"], &ad["active"]), (200, &json!(AD_INACTIVE), &json!(false)), "{ad}");

    let active: HashSet<&str> = HashSet::from([AD_TRAIL_RUNNER, AD_COFFEE_CLUB, AD_CITY_BREAK]);
    for _ in 0..30 {
        let (status, ad) = demo_ad(&stack, "").await;
        assert_eq!((status, &ad["active"]), (200, &json!(true)), "{ad}");
        let ad_id = ad["ad_id"].as_str().unwrap_or_default();
        assert!(active.contains(ad_id), "a random pick is one of the active ads {active:?}: {ad}");
    }

    let (status, problem) = demo_ad(&stack, "?ad_id=not-an-ad").await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("ad_id")), "{problem}");
    let unknown = uuid::Uuid::new_v4();
    let (status, problem) = demo_ad(&stack, &format!("?ad_id={unknown}")).await;
    assert_eq!((status, problem["field"].as_str()), (404, Some("ad_id")), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|detail| detail.contains(&unknown.to_string())), "{problem}");

    // Timed as the demo page, not as a path of its own.
    let metrics = stack.metrics(&stack.ingest).await;
    for status in [200, 400, 404] {
        let series = format!(r#"http_request_duration_seconds_count{{method="GET",route="/demo",status="{status}"}}"#);
        assert!(e2e::metric(&metrics, &series).is_some_and(|count| count >= 1.0), "{series} in\n{metrics}");
    }

    // Every ad retired: nothing to pick, though a named ad is still shown.
    stack
        .sql("INSERT INTO ads SELECT id, title, description, media_url, target_url, campaign_id, false, created_at, now64(3) FROM ads FINAL")
        .await
        .expect("retire every ad");
    let problem = eventually("ingest's catalog has no active ad", || async {
        match demo_ad(&stack, "").await {
            (404, problem) => Ok(problem),
            (status, answer) => Err(format!("{status} {answer}")),
        }
    })
    .await;
    assert_eq!(problem["field"], Value::Null, "no parameter is at fault: {problem}");
    let (status, ad) = demo_ad(&stack, &format!("?ad_id={AD_TRAIL_RUNNER}")).await;
    assert_eq!((status, &ad["active"]), (200, &json!(false)), "{ad}");
}
