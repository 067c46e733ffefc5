//! Each service logs in to ClickHouse as its own user (deploy/clickhouse/users.d/adtrack.xml)
//! and can do its work, and nothing else; analysts read; nobody gets in without a password.

use e2e::{eventually, run_sql, ClickHouse, ClickHouseLogin, Stack, StackOptions, AD_TRAIL_RUNNER};
use serde_json::json;

const KEY: &str = "test-api-key-0123456789";

/// Runs `sql` as `login` and expects ClickHouse to refuse it for want of a right.
async fn assert_denied(login: &ClickHouseLogin, sql: &str) {
    match run_sql(login, "adtrack", sql).await {
        Ok(answer) => panic!("{} may run {sql:?}: {answer}", login.user),
        Err(error) => {
            assert!(error.contains("ACCESS_DENIED") || error.contains("READONLY"), "{} {sql:?}: {error}", login.user)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_has_its_own_user_allowed_only_its_work() {
    // A private server: these users may use the database `adtrack` only.
    let server = ClickHouse::start(&e2e::scratch_dir("clickhouse-users")).await;
    let admin = server.login.clone();
    let stack = Stack::start_with(StackOptions {
        clickhouse: Some(admin.clone()),
        service_users: true,
        query_env: vec![("API_KEY", KEY)],
        ..StackOptions::default()
    })
    .await;

    // The work: ingest reads the catalog, the aggregator writes events, query reads them and
    // writes an ad.
    let created = stack
        .http
        .post(stack.query.url("/ads"))
        .bearer_auth(KEY)
        .json(&json!({"title": "Users", "media_url": "https://cdn.example.com/u.mp4", "target_url": "https://shop.example.com/u", "campaign_id": "users"}))
        .send()
        .await
        .expect("create an ad");
    let status = created.status();
    let ad: serde_json::Value = created.json().await.expect("the new ad");
    assert_eq!(status, 201, "{ad}");
    let new_ad = ad["id"].as_str().expect("id").to_owned();
    eventually("ingest (as adtrack_ingest) sees the new ad", || async {
        match stack.post("/ads/click", json!({"ad_id": new_ad})).await {
            (202, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(stack.post("/ads/impression", json!({"ad_id": AD_TRAIL_RUNNER})).await.0, 202);
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
    stack.wait_for_count("SELECT count() FROM impression_events", 1).await;
    eventually("query (as adtrack_query) reports the click", || async {
        let answer = stack
            .http
            .get(stack.query.url(&format!("/ads/{new_ad}/analytics?timeframe=1h")))
            .bearer_auth(KEY)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: serde_json::Value = answer.json().await.map_err(|e| e.to_string())?;
        if body["totals"]["clicks"] == 1 {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;

    // Nothing else.
    let ingest = admin.as_test_user("ingest");
    assert_denied(&ingest, "SELECT count() FROM click_events").await;
    assert_denied(&ingest, "INSERT INTO ads (id, title) VALUES (generateUUIDv4(), 'forged')").await;
    let aggregator = admin.as_test_user("aggregator");
    let running = aggregator::sink::INSERTS_RUNNING_LONGER_THAN.replace("{secs:Float64}", "0");
    assert_eq!(
        run_sql(&aggregator, "adtrack", &running).await.map(|n| n.parse::<u64>().is_ok()),
        Ok(true),
        "the aggregator sees running inserts"
    );
    assert_denied(&aggregator, "SELECT query FROM system.processes").await;
    assert_denied(&aggregator, "INSERT INTO ads (id, title) VALUES (generateUUIDv4(), 'forged')").await;
    assert_denied(&aggregator, "ALTER TABLE ads UPDATE target_url = 'https://evil.example' WHERE 1").await;
    assert_denied(&aggregator, "DROP TABLE click_events_per_hour").await;
    let query = admin.as_test_user("query");
    assert_denied(&query, "INSERT INTO click_events (event_id, ad_id) VALUES (generateUUIDv4(), generateUUIDv4())")
        .await;
    assert_denied(&query, "ALTER TABLE ads UPDATE target_url = 'https://evil.example' WHERE 1").await;
    assert_denied(&query, "DROP TABLE ads").await;
    let analyst = admin.as_test_user("analyst");
    let metrics = run_sql(&analyst, "adtrack", "SELECT sum(clicks) FROM ad_metrics_per_day").await;
    assert_eq!(metrics.as_deref(), Ok("1"), "the analyst reads the views");
    assert_denied(&analyst, "INSERT INTO ads (id, title) VALUES (generateUUIDv4(), 'forged')").await;
    assert_denied(&analyst, "DROP TABLE ads").await;
    let wrong = run_sql(&query.as_user("adtrack_query", "not-the-password"), "adtrack", "SELECT 1").await;
    assert!(wrong.as_ref().is_err_and(|e| e.contains("AUTHENTICATION_FAILED")), "{wrong:?}");

    // A web page's cross-origin POST has no password, so it lands as `default`, which reads
    // and changes nothing.
    let page = stack
        .http
        .post(format!("{}/", admin.url))
        .header("Origin", "http://evil.example")
        .header("Content-Type", "text/plain")
        .body("DROP TABLE adtrack.ads")
        .send()
        .await
        .expect("cross-origin POST");
    let status = page.status();
    let text = page.text().await.unwrap_or_default();
    assert!(!status.is_success() && text.contains("ACCESS_DENIED"), "{status}: {text}");
    let read =
        stack.http.post(format!("{}/", admin.url)).body("SELECT count() FROM adtrack.ads").send().await.expect("POST");
    assert!(!read.status().is_success(), "default read the catalog");
    assert!(stack.count("SELECT count() FROM ads").await > 0);

    // The aggregator's user cannot change the schema, so the aggregator does not try: on a
    // database that `aggregator migrate` has not prepared, it stops and says so.
    let output =
        stack.aggregator.command().env("CLICKHOUSE_DATABASE", "not_migrated").output().expect("run the aggregator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("run `aggregator migrate`"), "{stderr}");
}
