//! Tracking for pages and players that cannot send JSON: the click-through redirect, the
//! impression pixel, `navigator.sendBeacon` bodies and CORS preflights. Each event takes the same
//! durable path as `POST /ads/click` and is counted once.

use e2e::{eventually, Stack, StackOptions, AD_INACTIVE, AD_TRAIL_RUNNER};
use serde_json::json;

const TARGET: &str = "https://shop.example.com/trail-runner-3";
const PUBLISHER: &str = "https://publisher.example";

/// A client that shows redirects instead of following them (their targets are not ours).
fn no_redirects() -> reqwest::Client {
    e2e::browser_like_client().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_redirect_to_the_ads_page_and_pixels_count_impressions() {
    // A spool with room for an event or two (each is a few hundred bytes).
    let mut stack = Stack::start_with(StackOptions {
        ingest_env: vec![("PUBLISH_TIMEOUT_MS", "1000"), ("SPOOL_MAX_BYTES", "1000")],
        ..StackOptions::default()
    })
    .await;
    let http = no_redirects();
    let get = |path: String| {
        let request = http.get(stack.ingest.url(&path));
        async move { request.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}")) }
    };

    // The ad's own target, never one from the request; the click id passed on.
    let response = get(format!("/c/{AD_TRAIL_RUNNER}?click_id=cmp-42.x&url=https://evil.example/")).await;
    assert_eq!(response.status(), 302);
    assert_eq!(header(&response, "location"), format!("{TARGET}?click_id=cmp-42.x"));
    assert!(header(&response, "cache-control").contains("no-store"), "{:?}", response.headers());
    let response = get(format!("/c/{AD_TRAIL_RUNNER}")).await;
    assert_eq!((response.status().as_u16(), header(&response, "location")), (302, TARGET));

    // The pixel: a 1x1 GIF nobody caches.
    let response = get(format!("/i/{AD_TRAIL_RUNNER}.gif")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "image/gif");
    assert!(header(&response, "cache-control").contains("no-cache"), "{:?}", response.headers());
    assert_eq!((header(&response, "pragma"), header(&response, "expires")), ("no-cache", "0"));
    let gif = response.bytes().await.expect("pixel bytes");
    assert_eq!((&gif[..6], gif[6], gif[8], gif.len()), (&b"GIF89a"[..], 1, 1, 43));

    // Two clicks and one impression, each counted once.
    stack.wait_for_count("SELECT count() FROM click_events", 2).await;
    stack.wait_for_count("SELECT count() FROM impression_events", 1).await;

    // An inactive ad still sends the person on, and counts nothing; an unknown one cannot.
    let response = get(format!("/c/{AD_INACTIVE}")).await;
    assert_eq!(response.status(), 302);
    let (status, answer) =
        e2e::read_answer("GET /c/{unknown}", get(format!("/c/{}", uuid::Uuid::new_v4())).await).await;
    assert_eq!((status, answer["field"].as_str()), (404, Some("ad_id")), "{answer}");
    let (status, answer) =
        e2e::read_answer("GET /c/?click_id", get(format!("/c/{AD_TRAIL_RUNNER}?click_id=a%20b")).await).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("click_id")), "{answer}");
    let (status, _) = e2e::read_answer("GET /i/x.gif", get("/i/not-an-ad.gif".to_owned()).await).await;
    assert_eq!(status, 400);

    // JetStream down: the person is still redirected and the page still gets its pixel. Their
    // events go to the spool while it has room; the rest are lost, and counted.
    stack.nats.stop();
    for _ in 0..2 {
        let response = get(format!("/c/{AD_TRAIL_RUNNER}")).await;
        assert_eq!((response.status().as_u16(), header(&response, "location")), (302, TARGET));
        let response = get(format!("/i/{AD_TRAIL_RUNNER}.gif")).await;
        assert_eq!(response.status(), 200);
    }
    let metrics = stack.metrics(&stack.ingest).await;
    let spooled = e2e::metric_sum(&metrics, "ingest_events_spooled_total", &[]);
    let lost = e2e::metric_sum(&metrics, "ingest_tracking_unrecorded_total", &["reason=\"spool_full\""]);
    assert!(spooled >= 1.0 && lost >= 1.0 && spooled + lost == 4.0, "{spooled} spooled, {lost} lost:\n{metrics}");
    assert_eq!(
        e2e::metric(&metrics, r#"ingest_tracking_unrecorded_total{endpoint="click",reason="inactive_ad"}"#),
        Some(1.0),
        "{metrics}"
    );
    stack.nats.restart().await;
    // The spooled ones are replayed once NATS is back. A lost one may still arrive, as for a
    // 503: the NATS client sends what it buffered when it reconnects. Either way, once each.
    eventually("the spool to empty", || async {
        let metrics = stack.metrics(&stack.ingest).await;
        if e2e::metric(&metrics, "ingest_spool_events") == Some(0.0) {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await;
    let expected = 3 + spooled as u64;
    eventually("the replayed events to be counted", || async {
        let rows = stack.count(RAW_ROWS).await;
        if rows >= expected {
            Ok(())
        } else {
            Err(format!("{rows} of at least {expected}"))
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rows = stack.count(RAW_ROWS).await;
    let repeats = stack.count("SELECT count() - uniqExact(event_id) FROM click_events").await
        + stack.count("SELECT count() - uniqExact(event_id) FROM impression_events").await;
    assert!(rows <= 7 && repeats == 0, "{rows} events, {repeats} twice");
}

const RAW_ROWS: &str = "SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_and_cors_preflights_from_configured_origins() {
    let stack = Stack::start_with(StackOptions {
        ingest_env: vec![("CORS_ALLOWED_ORIGINS", PUBLISHER)],
        ..StackOptions::default()
    })
    .await;
    let event_id = uuid::Uuid::new_v4();
    // What navigator.sendBeacon(url, JSON.stringify(event)) sends: text/plain.
    let body =
        json!({"ad_id": AD_TRAIL_RUNNER, "event_id": event_id, "playback_time_secs": 4.5}).to_string().into_bytes();
    let (status, answer) =
        stack.post_raw("/ads/click", "text/plain;charset=UTF-8", body, &[("origin", PUBLISHER)]).await;
    assert_eq!((status, answer["event_id"].as_str()), (202, Some(&*event_id.to_string())), "{answer}");
    let batch =
        json!([{"type": "impression", "ad_id": AD_TRAIL_RUNNER}, {"type": "impression", "ad_id": AD_TRAIL_RUNNER}])
            .to_string();
    let (status, answer) = stack.post_raw("/ads/events", "text/plain;charset=UTF-8", batch.into_bytes(), &[]).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(2)), "{answer}");
    let lines = "{\"type\":\"impression\",\"ad_id\":\"a1000000-0000-4000-8000-000000000001\"}\n".repeat(3);
    let (status, answer) = stack.post_raw("/ads/events", "text/plain", lines.into_bytes(), &[]).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(3)), "NDJSON as text: {answer}");
    let (status, answer) = stack.post_raw("/ads/click", "text/plain", b"{not json".to_vec(), &[]).await;
    assert_eq!(status, 400, "{answer}");
    stack
        .wait_for_count(
            &format!("SELECT count() FROM click_events WHERE event_id = '{event_id}' AND playback_time_secs = 4.5"),
            1,
        )
        .await;
    stack.wait_for_count("SELECT count() FROM impression_events", 5).await;

    // A preflight from the configured origin is answered; another origin gets no permission.
    let preflight = |origin: &'static str| {
        stack
            .http
            .request(reqwest::Method::OPTIONS, stack.ingest.url("/ads/click"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight(PUBLISHER).await.expect("preflight");
    assert!(allowed.status().is_success(), "{:?}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), PUBLISHER);
    assert!(header(&allowed, "access-control-allow-methods").contains("POST"), "{:?}", allowed.headers());
    let other = preflight("https://elsewhere.example").await.expect("preflight");
    assert_eq!(header(&other, "access-control-allow-origin"), "", "{:?}", other.headers());
    // The actual request from the page carries the permission too.
    let response = stack
        .http
        .post(stack.ingest.url("/ads/impression"))
        .header("origin", PUBLISHER)
        .json(&json!({"ad_id": AD_TRAIL_RUNNER}))
        .send()
        .await
        .expect("POST");
    assert_eq!((response.status().as_u16(), header(&response, "access-control-allow-origin")), (202, PUBLISHER));
    eventually("the sixth impression", || async {
        match stack.count("SELECT count() FROM impression_events").await {
            6 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
}
