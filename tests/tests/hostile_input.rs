//! Hostile query parameters: every one reaches ClickHouse only as a bound parameter, so
//! injection payloads get a 4xx or a correct (empty) answer, never a 5xx or someone else's data.

use e2e::{Service, Stack, StackOptions, AD_TRAIL_RUNNER};

const PAYLOADS: &[&str] = &[
    "' OR 1=1 --",
    "a1000000-0000-4000-8000-000000000001' OR '1'='1",
    "1; DROP TABLE click_events",
    "{ad_id:UUID}",
    "') UNION SELECT * FROM system.users --",
    "%27%20OR%201%3D1",
    "\\' OR 1=1",
    "2026-01-01T00:00:00Z' OR 1=1 --",
    "🙂",
    "",
];

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_payloads_in_every_query_parameter_are_harmless() {
    let stack = Stack::start().await;
    let mut checked = 0;
    for payload in PAYLOADS {
        let p = encode(payload);
        let urls = [
            format!("/ads?page={p}"),
            format!("/ads?limit={p}"),
            format!("/ads/{p}"),
            format!("/ads/analytics?ad_id={p}"),
            format!("/ads/analytics?from={p}"),
            format!("/ads/analytics?from=2026-01-01T00:00:00Z&to={p}"),
            format!("/ads/analytics?timeframe={p}"),
            format!("/ads/{p}/analytics"),
            format!("/ads/{AD_TRAIL_RUNNER}/analytics?from={p}"),
            format!("/ads/{AD_TRAIL_RUNNER}/analytics?from=2026-01-01T00:00:00Z&to={p}"),
            format!("/ads/{AD_TRAIL_RUNNER}/analytics?timeframe={p}"),
            format!("/ads/{AD_TRAIL_RUNNER}/analytics?granularity={p}"),
        ];
        for url in urls {
            let (status, answer) = stack.get(&url).await;
            // An empty value is "absent" for optional parameters; then a normal answer is right.
            let fine = (400..500).contains(&status) || (status == 200 && payload.is_empty());
            assert!(fine, "{url} ({payload:?}) answered {status}: {answer}");
            checked += 1;
        }
    }
    println!("{checked} hostile requests, all rejected or answered normally");
    // Nothing was dropped or changed.
    assert_eq!(stack.count("SELECT count() FROM ads FINAL").await, 4);
    assert_eq!(stack.sql("EXISTS TABLE click_events").await.as_deref(), Ok("1"));
}

/// The same payloads through every string that reaches SQL or the catalog: the filters and
/// the time zone of the analytics, an ad's texts, a click-through's `click_id`. Each is a 4xx or
/// a correct answer, stored texts come back byte for byte, and nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_payloads_in_every_string_parameter_are_harmless() {
    const ADMIN: &str = "an-admin-key-of-the-test-0002";
    let stack =
        Stack::start_with(StackOptions { query_env: vec![("API_KEY", ADMIN)], ..StackOptions::default() }).await;
    let get = |path: String| stack.http.get(stack.query.url(&path)).bearer_auth(ADMIN).send();
    const SAMPLE_TITLES: &str = "SELECT groupArray(title) FROM (SELECT title FROM ads FINAL WHERE startsWith(toString(id), 'a1000000-') ORDER BY id)";
    let titles_before = stack.sql(SAMPLE_TITLES).await.expect("titles");
    let mut created = 0;
    for payload in PAYLOADS.iter().filter(|p| !p.is_empty()) {
        let p = encode(payload);
        for path in [
            format!("/ads/analytics/breakdown?by=ad&campaign_id={p}"),
            format!("/ads/analytics/breakdown?by=campaign&country={p}"),
            format!("/ads/analytics/series?tz={p}"),
            format!("/ads/{AD_TRAIL_RUNNER}/analytics?tz={p}"),
        ] {
            let response = get(path.clone()).await.expect("answer");
            let (status, answer) = e2e::read_answer(&path, response).await;
            let fine = (400..500).contains(&status) || (status == 200 && answer["groups"] == serde_json::json!([]));
            assert!(fine, "{path} ({payload:?}) answered {status}: {answer}");
        }
        // Texts are stored as given, and read back the same.
        let ad = serde_json::json!({
            "title": payload, "description": payload, "campaign_id": payload,
            "media_url": "https://cdn.example.com/a.mp4", "target_url": "https://example.com/landing",
        });
        let response =
            stack.http.post(stack.query.url("/ads")).bearer_auth(ADMIN).json(&ad).send().await.expect("answer");
        let (status, stored) = e2e::read_answer("POST /ads", response).await;
        assert_eq!(status, 201, "{payload:?}: {stored}");
        created += 1;
        let id = stored["id"].as_str().expect("id").to_owned();
        let (status, read) = e2e::read_answer("GET /ads/{id}", get(format!("/ads/{id}")).await.expect("answer")).await;
        assert_eq!(status, 200, "{read}");
        for field in ["title", "description", "campaign_id"] {
            assert_eq!(read[field], *payload, "{field} of {payload:?}");
        }
        let path = format!("/ads/analytics/breakdown?by=campaign&campaign_id={p}");
        let (status, answer) = e2e::read_answer(&path, get(path.clone()).await.expect("answer")).await;
        assert_eq!(status, 200, "{path}: {answer}");
        // A click-through's click_id goes into the landing URL: anything but its pattern is 400.
        let response = no_redirects()
            .get(stack.ingest.url(&format!("/c/{AD_TRAIL_RUNNER}?click_id={p}")))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 400, "click_id {payload:?}");
    }
    println!("{created} ads with hostile texts stored and read back unchanged");
    assert_eq!(stack.count("SELECT count() FROM ads FINAL").await, 4 + created);
    assert_eq!(stack.sql(SAMPLE_TITLES).await.expect("titles"), titles_before, "the sample ads are unchanged");
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 0, "no click was recorded");
    assert_eq!(stack.sql("EXISTS TABLE click_events").await.as_deref(), Ok("1"));
}

fn no_redirects() -> reqwest::Client {
    e2e::browser_like_client().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_ip_is_rate_limited_and_nothing_limited_is_counted() {
    let stack = e2e::Stack::start_with(e2e::StackOptions {
        ingest_env: vec![("RATE_LIMIT_PER_IP", "1"), ("RATE_LIMIT_BURST", "2")],
        ..e2e::StackOptions::default()
    })
    .await;
    let mut accepted = 0;
    let mut limited = 0;
    for _ in 0..10 {
        let response = stack
            .http
            .post(stack.ingest.url("/ads/click"))
            .json(&serde_json::json!({"ad_id": AD_TRAIL_RUNNER}))
            .send()
            .await
            .expect("answer");
        match response.status().as_u16() {
            202 => accepted += 1,
            429 => {
                limited += 1;
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u32>().ok());
                assert!(retry_after.is_some_and(|s| s >= 1), "429 carries Retry-After");
            }
            other => panic!("unexpected {other}"),
        }
    }
    println!("10 quick clicks from one IP allowed 1/s (burst 2): {accepted} accepted, {limited} limited");
    assert!(limited > 0 && accepted >= 2, "{accepted} accepted, {limited} limited");
    // The limit is checked before the body is read: a client over it gets its 429 after
    // sending only its headers, for a single event and for a batch.
    for (path, content_type) in [("/ads/click", "application/json"), ("/ads/events", "application/x-ndjson")] {
        let status = status_after_sending(stack.ingest.addr, path, content_type, 100, b"", &[]);
        assert!(status.contains(" 429 "), "{path}, body not sent: {status}");
    }
    stack.wait_for_count("SELECT count() FROM click_events", accepted).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, accepted, "limited requests are not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_caller_is_rate_limited_before_its_request_is_read() {
    const ADMIN: &str = "an-admin-key-of-the-test-0001";
    const READER: &str = "a-reader-key-of-the-test-0001";
    let stack = Stack::start_with(StackOptions {
        query_env: vec![
            ("RATE_LIMIT_PER_CALLER", "1"),
            ("RATE_LIMIT_BURST", "2"),
            ("API_KEY", ADMIN),
            ("READ_API_KEYS", READER),
        ],
        ..StackOptions::default()
    })
    .await;
    let read = |key: &'static str| stack.http.get(stack.query.url("/ads?limit=1")).bearer_auth(key).send();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = read(READER).await.expect("answer");
        let status = response.status().as_u16();
        if status == 429 {
            let retry_after =
                response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok());
            assert!(retry_after.is_some_and(|s| s >= 1), "429 carries Retry-After");
            let (_, problem) = e2e::read_answer("GET /ads over the rate", response).await;
            assert!(
                !problem.to_string().contains(READER) && !problem.to_string().contains("127.0.0.1"),
                "names no key or address: {problem}"
            );
        }
        statuses.push(status);
    }
    println!("6 quick reads with one key, 1/s (burst 2): {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429) && statuses.contains(&429) && statuses[..2] == [200, 200],
        "{statuses:?}"
    );
    // Each key has its own bucket: the admin key still reads.
    assert_eq!(read(ADMIN).await.expect("answer").status().as_u16(), 200);
    // An unknown key is refused as unknown (401), whatever its rate.
    assert_eq!(read("not-a-key-of-this-service").await.expect("answer").status().as_u16(), 401);
    // Over its rate, a caller gets 429 before its body is read: here a POST that declares a body
    // and never sends it.
    read(ADMIN).await.expect("answer");
    read(ADMIN).await.expect("answer");
    let status = status_after_sending(
        stack.query.addr,
        "/ads",
        "application/json",
        100,
        b"",
        &[("authorization", &format!("Bearer {ADMIN}"))],
    );
    assert!(status.contains(" 429 "), "POST /ads over the rate, body not sent: {status}");
}

/// Sends a request's headers (with `headers`), declaring a `declared_length` body, and `sent` of
/// that body; then waits (at most 10 s) and returns the status line of the answer.
fn status_after_sending(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    declared_length: usize,
    sent: &[u8],
    headers: &[(&str, &str)],
) -> String {
    use std::io::{Read, Write};
    let mut connection = std::net::TcpStream::connect(addr).expect("connect");
    connection.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("read timeout");
    let more: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {}\r\nContent-Type: {content_type}\r\nContent-Length: {declared_length}\r\n{more}\r\n",
        e2e::BROWSER_USER_AGENT
    );
    connection.write_all(head.as_bytes()).expect("send the head");
    connection.write_all(sent).expect("send part of the body");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match connection.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("no answer").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_gets_408_and_nothing_is_counted() {
    let stack = Stack::start_with(StackOptions {
        ingest_env: vec![("BODY_READ_TIMEOUT_SECS", "1")],
        ..StackOptions::default()
    })
    .await;
    let click = format!("{{\"ad_id\":\"{AD_TRAIL_RUNNER}\"}}");
    let started = std::time::Instant::now();
    for (path, content_type) in [("/ads/click", "application/json"), ("/ads/events", "application/x-ndjson")] {
        let status =
            status_after_sending(stack.ingest.addr, path, content_type, click.len(), &click.as_bytes()[..10], &[]);
        assert!(status.contains(" 408 "), "{path}, a third of the body sent: {status}");
    }
    println!("two trickling bodies answered 408 in {:?}", started.elapsed());
    let text = stack.metrics(&stack.ingest).await;
    assert_eq!(e2e::metric_sum(&text, "ingest_events_rejected_total", &["reason=\"body_timeout\""]), 2.0, "{text}");
    // A whole body still goes through.
    let (status, answer) = stack.post_raw("/ads/click", "application/json", click.into_bytes(), &[]).await;
    assert_eq!(status, 202, "{answer}");
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
}

/// Each service answers oversized headers 431, closes idle connections and those whose headers
/// trickle in, and answers a connection over its `MAX_CONNECTIONS` at once with 503 (counted in `refused_metric`); `over_the_cap`
/// is the request sent then.
async fn assert_connection_limits(
    stack: &Stack,
    service: &Service,
    refused_metric: &str,
    over_the_cap: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) {
    let fresh = || e2e::browser_like_client().timeout(std::time::Duration::from_secs(1)).build().expect("client");
    let name = service.name;

    let response =
        fresh().get(service.url("/healthz")).header("x-padding", "a".repeat(10_000)).send().await.expect("answer");
    assert_eq!(e2e::read_answer(&format!("{name} GET /healthz"), response).await.0, 431, "{name}: headers over 8 KiB");
    // Let that connection go idle and close.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // Two clients that connect and send nothing hold both connections...
    let idle: Vec<std::net::TcpStream> =
        (0..2).map(|_| std::net::TcpStream::connect(service.addr).expect("connect")).collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // ...so a third is answered at once, 503 with Retry-After, and counted...
    let refused = over_the_cap(&fresh()).send().await;
    let refused =
        refused.unwrap_or_else(|e| panic!("{name}: a connection over the cap is answered, not left waiting: {e}"));
    assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"), "{name}");
    assert_eq!(e2e::read_answer(&format!("{name}: a request over the cap"), refused).await.0, 503);
    // ...until the idle timeout closes them.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let response =
        fresh().get(service.url("/healthz")).send().await.expect("served after the idle clients were dropped");
    assert_eq!(response.status(), 200, "{name}");
    assert_eq!(e2e::metric(&stack.metrics(service).await, refused_metric), Some(1.0), "{name}");
    drop(idle);

    // A client trickling its headers, a byte well within the idle timeout each, is cut off once
    // its head has taken HEADER_READ_TIMEOUT_SECS.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let addr = service.addr;
    let held = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut slow = std::net::TcpStream::connect(addr).expect("connect");
        slow.set_read_timeout(Some(std::time::Duration::from_millis(10))).expect("read timeout");
        let started = std::time::Instant::now();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("the request line");
        while started.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if slow.write_all(b"X").is_err() || matches!(slow.read(&mut [0u8; 64]), Ok(0)) {
                return started.elapsed();
            }
        }
        started.elapsed()
    })
    .await
    .expect("the trickling client");
    println!("{name}: a client trickling its headers was cut off after {held:?}");
    assert!(held < std::time::Duration::from_secs(6), "{name}: held {held:?}, past HEADER_READ_TIMEOUT_SECS (2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_idle_clients_and_connection_limits() {
    let limits = vec![("MAX_CONNECTIONS", "2"), ("IDLE_TIMEOUT_SECS", "2"), ("HEADER_READ_TIMEOUT_SECS", "2")];
    let stack =
        Stack::start_with(StackOptions { ingest_env: limits.clone(), query_env: limits, ..StackOptions::default() })
            .await;
    let click = |client: &reqwest::Client| {
        client.post(stack.ingest.url("/ads/click")).json(&serde_json::json!({"ad_id": e2e::AD_TRAIL_RUNNER}))
    };
    assert_connection_limits(&stack, &stack.ingest, "ingest_connections_refused_total", click).await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 0, "the refused click was not recorded");
    let read = |client: &reqwest::Client| client.get(stack.query.url("/ads/analytics?timeframe=1h"));
    assert_connection_limits(&stack, &stack.query, "query_connections_refused_total", read).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_bodies_held_at_once_are_bounded() {
    let stack = Stack::start_with(StackOptions {
        ingest_env: vec![("MAX_BATCH_BODY_BYTES", "4096"), ("MAX_BATCH_BYTES_IN_FLIGHT", "4096")],
        ..StackOptions::default()
    })
    .await;
    let batch = format!("{{\"type\":\"impression\",\"ad_id\":\"{AD_TRAIL_RUNNER}\"}}\n");
    // One client declares a 4 KiB batch and sends only part of it: it holds the whole budget.
    let addr = stack.ingest.addr;
    let mut slow = std::net::TcpStream::connect(addr).expect("connect");
    use std::io::Write;
    write!(slow, "POST /ads/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 4096\r\n\r\n{batch}").expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Another batch is refused at once, for now.
    let refused = stack
        .http
        .post(stack.ingest.url("/ads/events"))
        .header("content-type", "application/x-ndjson")
        .body(batch.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let (status, problem) = e2e::read_answer("POST /ads/events over the budget", refused).await;
    assert_eq!(status, 429, "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("MAX_BATCH_BYTES_IN_FLIGHT")), "{problem}");
    // Once the slow client is gone, batches are taken again.
    drop(slow);
    e2e::eventually("a batch after the slow one left", || async {
        let answer = stack
            .http
            .post(stack.ingest.url("/ads/events"))
            .header("content-type", "application/x-ndjson")
            .body(batch.clone())
            .send()
            .await;
        match answer.map(|r| r.status().as_u16()) {
            Ok(202) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    stack.wait_for_count("SELECT count() FROM impression_events", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_the_admin_address_only() {
    let stack = Stack::start().await;
    for service in [&stack.ingest, &stack.query] {
        let public = stack.http.get(service.url("/metrics")).send().await.expect("GET /metrics");
        assert_eq!(public.status(), 404, "{}: /metrics on the address clients reach", service.name);
        let admin = stack.metrics(service).await;
        assert!(admin.contains(&format!("{}_", service.name)), "{}: {admin}", service.name);
        let ready =
            stack.http.get(format!("http://{}/readyz", service.metrics_addr)).send().await.expect("GET /readyz");
        assert_eq!(ready.status(), 200, "{}: /readyz on the admin address", service.name);
    }
}
