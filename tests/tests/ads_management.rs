//! Creating, changing and deactivating ads behind the API key, and ingest following the
//! catalog within its refresh interval.

use e2e::{eventually, read_answer, Stack, StackOptions, AD_TRAIL_RUNNER};
use serde_json::{json, Value};

const KEY: &str = "test-api-key-0123456789";

/// A query-service request with an optional bearer key; the status and JSON answer.
async fn call(stack: &Stack, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = stack.http.request(method.clone(), stack.query.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    if response.status() == 401 {
        assert_eq!(
            response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{method} {path}"
        );
    }
    read_answer(&format!("{method} {path}"), response).await
}

fn new_ad() -> Value {
    json!({
        "title": "Winter boots",
        "media_url": "https://cdn.example.com/boots.mp4",
        "target_url": "https://shop.example.com/boots?utm_source=ad",
        "campaign_id": "winter",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_are_managed_with_the_api_key_and_ingest_follows() {
    let stack = Stack::start_with(StackOptions { query_env: vec![("API_KEY", KEY)], ..StackOptions::default() }).await;

    // Every operation needs the key once one is configured.
    for path in [
        "/ads",
        &format!("/ads/{AD_TRAIL_RUNNER}"),
        "/ads/analytics",
        "/ads/analytics/breakdown?by=country",
        &format!("/ads/{AD_TRAIL_RUNNER}/analytics"),
    ] {
        assert_eq!(call(&stack, "GET", path, None, None).await.0, 401, "{path} without the key");
        assert_eq!(
            call(&stack, "GET", path, Some("wrong-key-0123456789"), None).await.0,
            401,
            "{path} with another key"
        );
        assert_eq!(call(&stack, "GET", path, Some(KEY), None).await.0, 200, "{path} with the key");
    }
    assert_eq!(call(&stack, "POST", "/ads", None, Some(new_ad())).await.0, 401);

    // Create: 201, Location, and ingest accepts its events once its catalog has refreshed.
    let (status, created) = call(&stack, "POST", "/ads", Some(KEY), Some(new_ad())).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (created["active"].as_bool(), created["campaign_id"].as_str()),
        (Some(true), Some("winter")),
        "{created}"
    );
    assert_eq!(call(&stack, "GET", &format!("/ads/{id}"), Some(KEY), None).await.1, created);
    let click = || async { stack.post("/ads/click", json!({"ad_id": id})).await };
    eventually("ingest accepts the new ad", || async {
        match click().await {
            (202, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Change: only the fields given.
    let (status, changed) =
        call(&stack, "PATCH", &format!("/ads/{id}"), Some(KEY), Some(json!({"title": "Snow boots"}))).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["title"].as_str(), changed["target_url"].as_str()),
        (Some("Snow boots"), created["target_url"].as_str())
    );
    assert_eq!(call(&stack, "GET", &format!("/ads/{id}"), Some(KEY), None).await.1["title"], "Snow boots");

    // Deactivate: ingest refuses its events; the numbers stay; again is a no-op; PATCH revives.
    let (status, off) = call(&stack, "DELETE", &format!("/ads/{id}"), Some(KEY), None).await;
    assert_eq!((status, off["active"].as_bool()), (200, Some(false)), "{off}");
    assert_eq!(call(&stack, "DELETE", &format!("/ads/{id}"), Some(KEY), None).await.1, off, "deactivating twice");
    eventually("ingest refuses the deactivated ad", || async {
        match click().await {
            (422, answer) if answer["field"] == "ad_id" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (_, report) = call(&stack, "GET", &format!("/ads/analytics?ad_id={id}&timeframe=1h"), Some(KEY), None).await;
    assert!(report["ads"][0]["clicks"].as_u64().is_some_and(|n| n >= 1), "{report}");
    let (status, on) = call(&stack, "PATCH", &format!("/ads/{id}"), Some(KEY), Some(json!({"active": true}))).await;
    assert_eq!((status, on["active"].as_bool()), (200, Some(true)), "{on}");
    eventually("ingest accepts the reactivated ad", || async {
        match click().await {
            (202, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Bad input: a clear answer naming the field, and nothing stored.
    let mut script = new_ad();
    script["target_url"] = json!("javascript:alert(1)");
    let mut blank = new_ad();
    blank["campaign_id"] = json!("   ");
    let mut unknown = new_ad();
    unknown["budget"] = json!(100);
    let mut taken = new_ad();
    taken["id"] = json!(AD_TRAIL_RUNNER);
    let mut unparsable = new_ad();
    unparsable["media_url"] = json!("http://[::1/boots.mp4");
    let mut wrong_type = new_ad();
    wrong_type["active"] = json!("yes");
    let mut missing = new_ad();
    missing.as_object_mut().expect("an object").remove("title");
    let cases = [
        (script, 400, Some("target_url")),
        (unparsable, 422, Some("media_url")),
        (blank, 422, Some("campaign_id")),
        (unknown, 400, Some("budget")),
        (wrong_type, 400, Some("active")),
        (missing, 400, Some("title")),
        (taken, 409, Some("id")),
    ];
    for (body, expected, field) in cases {
        let (status, answer) = call(&stack, "POST", "/ads", Some(KEY), Some(body.clone())).await;
        assert_eq!((status, answer["field"].as_str()), (expected, field), "{body}: {answer}");
    }
    let (status, _) =
        call(&stack, "PATCH", "/ads/00000000-0000-4000-8000-000000000000", Some(KEY), Some(json!({"title": "x"})))
            .await;
    assert_eq!(status, 404);
    // Not JSON, or far larger than an ad: refused before anything is parsed.
    let raw = |content_type: &'static str, body: Vec<u8>| {
        let request =
            stack.http.post(stack.query.url("/ads")).bearer_auth(KEY).header("content-type", content_type).body(body);
        async move { read_answer("POST /ads", request.send().await.expect("POST /ads")).await }
    };
    let (status, answer) = raw("text/plain", new_ad().to_string().into_bytes()).await;
    assert_eq!(status, 400, "text/plain: {answer}");
    let mut huge = new_ad();
    huge["description"] = json!("x".repeat(100_000));
    let (status, answer) = raw("application/json", huge.to_string().into_bytes()).await;
    assert!(status == 400 && answer["detail"].as_str().is_some_and(|d| d.contains("larger than")), "{answer}");
    for (changes, field) in
        [(json!({"colour": "red"}), "colour"), (json!({"title": ""}), "title"), (json!({"media_url": 7}), "media_url")]
    {
        let (status, answer) =
            call(&stack, "PATCH", &format!("/ads/{AD_TRAIL_RUNNER}"), Some(KEY), Some(changes.clone())).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{changes}: {answer}");
    }
    let (_, list) = call(&stack, "GET", "/ads?limit=100", Some(KEY), None).await;
    assert_eq!(list["pagination"]["total"], 5, "the four seed ads and the one created: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_keys_only_read_admin_keys_rotate_and_no_key_means_no_service() {
    const OLD: &str = "admin-key-old-0123456789";
    const NEW: &str = "admin-key-new-0123456789";
    const READER: &str = "reader-key-0123456789";
    let stack = Stack::start_with(StackOptions {
        query_env: vec![("API_KEY", "admin-key-old-0123456789,admin-key-new-0123456789"), ("READ_API_KEYS", READER)],
        ..StackOptions::default()
    })
    .await;
    let ad = format!("/ads/{AD_TRAIL_RUNNER}");
    for key in [OLD, NEW, READER] {
        for path in ["/ads", ad.as_str(), "/ads/analytics?timeframe=1h", "/ads/analytics/series?timeframe=1h"] {
            assert_eq!(call(&stack, "GET", path, Some(key), None).await.0, 200, "{path} with {key}");
        }
    }
    assert_eq!(call(&stack, "GET", "/ads/analytics", None, None).await.0, 401, "no anonymous reads");
    let (status, refused) = call(&stack, "PATCH", &ad, Some(READER), Some(json!({"title": "Not mine"}))).await;
    assert_eq!(status, 403, "a read key changes nothing: {refused}");
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("may only read")), "{refused}");
    assert_eq!(call(&stack, "GET", &ad, Some(READER), None).await.1["title"], "Trail Runner 3");
    // The key is checked before anything else of the request is read: a caller without the
    // right one learns nothing from how its parameters or body are judged.
    for path in ["/ads/not-a-uuid", "/ads/analytics?timeframe=forever", "/ads/analytics?unknown=1", "/ads?limit=-1"] {
        assert_eq!(call(&stack, "GET", path, None, None).await.0, 401, "{path} without a key");
        assert_eq!(
            call(&stack, "GET", path, Some("wrong-key-0123456789"), None).await.0,
            401,
            "{path} with an unknown key"
        );
    }
    let (status, refused) =
        call(&stack, "POST", "/ads", Some("wrong-key-0123456789"), Some(json!({"title": 42}))).await;
    assert_eq!(status, 401, "an unknown key's malformed change is refused for the key: {refused}");
    for key in [OLD, NEW] {
        assert_eq!(
            call(&stack, "PATCH", &ad, Some(key), Some(json!({"title": "Trail Runner 3"}))).await.0,
            200,
            "{key} changes ads"
        );
    }

    // The binary's default: no key and no ANONYMOUS_READS, no service.
    let output = stack
        .query
        .command()
        .env_remove("API_KEY")
        .env_remove("READ_API_KEYS")
        .env_remove("ANONYMOUS_READS")
        .output()
        .expect("run query");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ANONYMOUS_READS=true"), "{stderr}");
}
