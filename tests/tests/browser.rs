//! The demo player (ingest `/demo/`) and the dashboard (query `/dashboard/`) in headless
//! Chromium, driven by Playwright (`tests/browser/demo_dashboard.py`) against a stack with the
//! invalid-traffic click rules on, as deployed: the demo's impression must precede its click
//! for the click to count. Screenshots of both pages go to `test-artifacts/` (the README's
//! come from there).

use std::ffi::OsString;

use e2e::tools::{assert_tool_passed, run_tool, venv_bin};
use e2e::{scratch_dir, workspace_root, Stack, StackOptions};

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
    let python = venv_bin(&["python"]).join("python");
    let dir = scratch_dir("browser");
    let script = workspace_root().join("tests/browser/demo_dashboard.py");
    let artifacts = workspace_root().join("test-artifacts");
    let result = run_tool(
        "demo_dashboard",
        &python,
        &[script.to_str().unwrap(), &stack.ingest.base_url(), &stack.query.base_url(), artifacts.to_str().unwrap(), KEY],
        &dir,
        &[] as &[(&str, OsString)],
    )
    .await;
    assert_tool_passed("demo and dashboard in Chromium", result, 12);
    // What the pages showed is what ClickHouse holds: the demo's click and impression, billable,
    // and the script's impression of another ad.
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 1);
    assert_eq!(stack.count("SELECT count() FROM impression_events").await, 2);
    assert_eq!(stack.count("SELECT count() FROM invalid_events").await, 0);
}
