//! Query strings are held to the operation's parameters, as bodies are to their fields: a
//! parameter an operation does not take is a 400 naming it, never silently ignored (a misspelt
//! `start=` would otherwise answer for the default window with 200). The click-through link and
//! the pixel are the exception: ad platforms append their own parameters to them, and the
//! person following the link must reach the ad's page.

use e2e::{read_answer, Stack, AD_TRAIL_RUNNER};
use ingest::http::LINK_OPERATIONS;
use serde_json::Value;

/// A path of `template` with its parameters filled in.
fn path_of(template: &str) -> String {
    template.replace("{ad_id}", AD_TRAIL_RUNNER).replace("{file}", &format!("{AD_TRAIL_RUNNER}.gif"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_of_both_services_refuses_a_parameter_it_does_not_take() {
    let stack = Stack::start().await;
    // The click-through link's 302 is the answer, not a page to follow.
    let http = e2e::browser_like_client().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let mut checked = Vec::new();
    for service in [&stack.ingest, &stack.query] {
        let spec: Value =
            stack.http.get(service.url("/openapi.json")).send().await.expect("spec").json().await.expect("spec JSON");
        for (template, item) in spec["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let id = operation["operationId"].as_str().expect("operationId");
                let url = service.url(&format!("{}?no_such_parameter=1", path_of(template)));
                let request = format!("{} {url}", method.to_uppercase());
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                // A body that would be accepted, so that only the query string is at fault.
                let response = http
                    .request(method, &url)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"ad_id": "{AD_TRAIL_RUNNER}"}}"#))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{request}: {e}"));
                let (status, problem) = read_answer(&request, response).await;
                if LINK_OPERATIONS.contains(&id) {
                    assert!([200, 302].contains(&status), "{id} ignores it: {request}: {problem}");
                    checked.push(id.to_owned());
                    continue;
                }
                assert_eq!(status, 400, "{id}: {request}: {problem}");
                assert_eq!(problem["field"], "no_such_parameter", "{id}: {problem}");
                assert!(problem["detail"].as_str().is_some_and(|d| d.contains(id)), "{id}: {problem}");
                checked.push(id.to_owned());
            }
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "createAd",
            "deactivateAd",
            "getAd",
            "getAdAnalytics",
            "getAdsAnalytics",
            "getBreakdown",
            "getSeries",
            "listAds",
            "postClick",
            "postEvents",
            "postImpression",
            "trackClick",
            "trackImpression",
            "updateAd"
        ],
        "every operation of both services"
    );
    // Only the link and the pixel recorded their event.
    stack.wait_for_count("SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events) + (SELECT count() FROM invalid_events)", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_window_parameters_are_named_and_the_right_ones_answer() {
    let stack = Stack::start().await;
    for (query, field) in [
        ("start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z", "start"),
        ("from=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z", "end"),
        ("since=2026-01-01T00:00:00Z", "since"),
        (&format!("adId={AD_TRAIL_RUNNER}") as &str, "adId"),
        ("timeframe=1h&Timeframe=7d", "Timeframe"),
    ] {
        let (status, problem) = stack.get(&format!("/ads/analytics?{query}")).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some(field)), "?{query}: {problem}");
    }
    let (status, answer) = stack
        .get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["from"].as_str(), answer["to"].as_str()),
        (Some("2026-01-01T00:00:00Z"), Some("2026-02-01T00:00:00Z")),
        "{answer}"
    );
    // Outside the operations (pages, health) query strings are left alone.
    for path in ["/healthz?probe=1", "/dashboard/?ad_id=x&range=1h"] {
        let response = stack.http.get(stack.query.url(path)).send().await.expect(path);
        assert_eq!(response.status(), 200, "{path}");
    }
}
