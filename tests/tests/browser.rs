//! The demo player (ingest `/demo/`) and the dashboard (query `/dashboard/`) in headless
//! Chromium, driven by Playwright (`tests/browser/demo_dashboard.py`) against a stack with the
//! invalid-traffic click rules on, as deployed: the demo's impression must precede its click
//! for the click to count. Besides the sample ads, whose media_urls cannot be reached from here
//! (the demo falls back to its sample video), the catalog holds an ad whose media_url plays.
//! Screenshots of both pages go to `test-artifacts/` (the README's come from there).

use std::ffi::OsString;

use e2e::tools::{assert_tool_passed, run_tool, venv_bin};
use e2e::{eventually, scratch_dir, workspace_root, Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_in_the_demo_player_raises_the_ads_count_on_the_live_dashboard() {
    const KEY: &str = "browser-test-key-0123456789";
    let stack = Stack::start_with(StackOptions {
        aggregator_env: vec![("IVT_DUPLICATE_CLICK_WINDOW_SECS", "30"), ("IVT_CLICK_IMPRESSION_WINDOW_SECS", "3600")],
        // With a key, as a deployment has: the dashboard must ask for it.
        query_env: vec![("API_KEY", KEY)],
        ..StackOptions::default()
    })
    .await;
    let playable_ad = uuid::Uuid::new_v4().to_string();
    // A URL of its own that really plays: ingest serves the sample video whatever the query.
    let media_url = stack.ingest.url("/demo/sample-ad.webm?own=1");
    stack
        .sql(&format!(
            "INSERT INTO ads (id, title, description, media_url, target_url, campaign_id, active, created_at, updated_at) VALUES \
             ('{playable_ad}', 'Own Video Spot', 'An ad whose media_url plays', '{media_url}', 'https://shop.example.com/own-video', 'own-video', true, now64(3), now64(3))"
        ))
        .await
        .expect("insert an ad whose media_url plays");
    eventually("ingest's catalog has the playable ad", || async {
        let url = stack.ingest.url(&format!("/demo/ad.json?ad_id={playable_ad}"));
        match stack.http.get(url).send().await {
            Ok(response) if response.status() == 200 => Ok(()),
            Ok(response) => Err(response.status().to_string()),
            Err(error) => Err(error.to_string()),
        }
    })
    .await;
    let python = venv_bin(&["python"]).join("python");
    let dir = scratch_dir("browser");
    let script = workspace_root().join("tests/browser/demo_dashboard.py");
    let artifacts = workspace_root().join("test-artifacts");
    let result = run_tool(
        "demo_dashboard",
        &python,
        &[
            script.to_str().unwrap(),
            &stack.ingest.base_url(),
            &stack.query.base_url(),
            artifacts.to_str().unwrap(),
            &playable_ad,
            KEY,
        ],
        &dir,
        &[] as &[(&str, OsString)],
    )
    .await;
    assert_tool_passed("demo and dashboard in Chromium", result, 13);
    // What the pages showed is what ClickHouse holds: the demo's click and impressions (of the
    // named ad, of the playable ad and of the one picked at random), billable, and the script's
    // impression of another ad.
    stack.wait_for_count("SELECT count() FROM impression_events", 4).await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 1);
    assert_eq!(stack.count("SELECT count() FROM invalid_events").await, 0);
}
