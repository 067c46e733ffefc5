//! `POST /ads/events`: many events per request, each answered on its own, each counted once.

use e2e::{eventually, Stack, StackOptions, AD_COFFEE_CLUB, AD_INACTIVE, AD_TRAIL_RUNNER};
use serde_json::{json, Value};
use uuid::Uuid;

const NDJSON: &str = "application/x-ndjson";

fn ndjson(items: &[Value]) -> Vec<u8> {
    items.iter().map(|item| format!("{item}\n")).collect::<String>().into_bytes()
}

fn statuses(answer: &Value) -> Vec<&str> {
    answer["results"].as_array().expect("results").iter().map(|r| r["status"].as_str().unwrap_or("?")).collect()
}

const COUNT_ALL: &str = "SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_of_a_batch_is_answered_and_counted_once() {
    let stack = Stack::start().await;
    let repeated = Uuid::new_v4().to_string();
    let items = [
        json!({"type": "click", "ad_id": AD_TRAIL_RUNNER, "event_id": repeated, "playback_time_secs": 10}),
        json!({"type": "impression", "ad_id": AD_TRAIL_RUNNER}),
        json!({"type": "impression", "ad_id": AD_COFFEE_CLUB}),
        json!({"type": "click", "ad_id": AD_TRAIL_RUNNER, "event_id": repeated, "playback_time_secs": 10}),
        json!({"type": "click", "ad_id": AD_INACTIVE}),
        json!({"type": "impression", "ad_id": AD_TRAIL_RUNNER, "watched_percent": 5}),
        json!({"ad_id": AD_TRAIL_RUNNER}),
        json!({"type": "click", "ad_id": Uuid::new_v4()}),
    ];
    let mut body = ndjson(&items);
    body.extend_from_slice(b"{broken\n\n");
    let (status, answer) = stack.post_raw("/ads/events", NDJSON, body, &[]).await;
    assert_eq!(status, 207, "{answer}");
    assert_eq!(
        statuses(&answer),
        ["accepted", "accepted", "accepted", "accepted", "rejected", "rejected", "rejected", "rejected", "rejected"],
        "{answer}"
    );
    let results = &answer["results"];
    assert_eq!(results[0]["event_id"], repeated.as_str());
    assert_eq!(results[3]["event_id"], repeated.as_str());
    assert_eq!(results[4]["field"], "ad_id", "inactive ad: {answer}");
    assert_eq!(results[5]["field"], "watched_percent", "impressions have no playback: {answer}");
    assert_eq!(results[6]["field"], "type", "{answer}");
    assert_eq!(results[7]["field"], "ad_id", "unknown ad: {answer}");
    assert!(results[8]["error"].as_str().is_some_and(|e| e.contains("malformed JSON")), "{answer}");
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(4), Some(5)));

    // The click repeated inside the batch is one event: three rows, not four.
    stack.wait_for_count(COUNT_ALL, 3).await;
    let report = eventually("batch events in /ads/analytics", || async {
        let (status, report) = stack.get(&format!("/ads/analytics?timeframe=15m&ad_id={AD_TRAIL_RUNNER}")).await;
        let ad = &report["ads"][0];
        if status == 200 && ad["clicks"] == 1 && ad["impressions"] == 1 {
            Ok(report)
        } else {
            Err(format!("{status} {report}"))
        }
    })
    .await;
    assert_eq!(report["ads"][0]["avg_playback_time_secs"], 10.0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_and_events_sent_before_are_counted_once() {
    let stack = Stack::start().await;
    let ids: Vec<String> = (0..300).map(|_| Uuid::new_v4().to_string()).collect();
    let items: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let kind = if i % 3 == 0 { "click" } else { "impression" };
            json!({"type": kind, "ad_id": AD_COFFEE_CLUB, "event_id": id})
        })
        .collect();
    // One of them went in alone first, as a single event.
    let (status, _) = stack.post("/ads/impression", json!({"ad_id": AD_COFFEE_CLUB, "event_id": ids[1]})).await;
    assert_eq!(status, 202);

    let body = serde_json::to_vec(&items).expect("serialize");
    let (status, answer) = stack.post_raw("/ads/events", "application/json", body.clone(), &[]).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 300, "{answer}");
    // The client did not see that answer and sends the same batch again.
    let (status, answer) = stack.post_raw("/ads/events", "application/json", body, &[]).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["duplicates"], 300, "the stream recognises the whole batch: {answer}");
    // And part of it once more, in another batch.
    let (status, answer) = stack.post_raw("/ads/events", NDJSON, ndjson(&items[..50]), &[]).await;
    assert_eq!(status, 202, "{answer}");

    let sentinel =
        stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await.1["event_id"].as_str().map(str::to_owned);
    let sentinel = sentinel.expect("sentinel event_id");
    stack.wait_for_count(&format!("SELECT count() FROM click_events WHERE event_id = '{sentinel}'"), 1).await;
    stack.wait_for_count(COUNT_ALL, 301).await;
    assert_eq!(
        stack
            .count("SELECT count() FROM click_events WHERE ad_id = toUUID('a1000000-0000-4000-8000-000000000002')")
            .await,
        100
    );
    assert_eq!(stack.count("SELECT uniqExact(event_id) FROM impression_events").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_batches_are_refused_with_a_reason() {
    let stack =
        Stack::start_with(StackOptions { ingest_env: vec![("MAX_BATCH_EVENTS", "5")], ..StackOptions::default() })
            .await;
    let item = json!({"type": "impression", "ad_id": AD_TRAIL_RUNNER});
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        ("application/xml", ndjson(std::slice::from_ref(&item)), 415, "text/plain"),
        ("application/json", b"[{\"type\":".to_vec(), 400, "malformed JSON"),
        ("application/json", b"{\"type\": \"click\"}".to_vec(), 400, "JSON array"),
        (NDJSON, b"\n \n".to_vec(), 422, "no events"),
        (NDJSON, ndjson(&vec![item.clone(); 6]), 413, "at most 5 events"),
    ];
    for (content_type, body, expected, says) in cases {
        let (status, answer) = stack.post_raw("/ads/events", content_type, body, &[]).await;
        assert_eq!(status, expected, "{content_type}: {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|e| e.contains(says)),
            "{content_type}: {answer} should say {says:?}"
        );
    }
    let (status, answer) = stack.post_raw("/ads/events", NDJSON, ndjson(&vec![item; 5]), &[]).await;
    assert_eq!(status, 202, "five is allowed: {answer}");
    stack.wait_for_count(COUNT_ALL, 5).await;
}

/// A body over the limit is answered 413 while the client is still sending it: the server must
/// not reset the connection under the client, which would see a broken connection instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_answered_413_not_cut_off() {
    let stack = Stack::start().await;
    let two_mib = 2 * 1024 * 1024;
    // Declared by Content-Length. Repeated, since a reset is a race the client sometimes wins.
    for attempt in 0..10 {
        let (status, answer) = stack.post_raw("/ads/events", NDJSON, vec![b' '; two_mib], &[]).await;
        assert_eq!(status, 413, "attempt {attempt}: {answer}");
        assert!(answer["detail"].as_str().is_some_and(|d| d.contains("larger than")), "{answer}");
    }
    // Streamed (chunked, no Content-Length): found too large only while reading.
    for attempt in 0..3 {
        let head = stream_chunked(stack.ingest.addr, "/ads/events", NDJSON, two_mib).await;
        assert!(head.starts_with("HTTP/1.1 413"), "attempt {attempt}: {head}");
    }
    // The connection pool still works, and nothing was stored.
    let (status, answer) = stack.post("/ads/events", json!([{"type": "click", "ad_id": AD_TRAIL_RUNNER}])).await;
    assert_eq!(status, 202, "{answer}");
    stack.wait_for_count(COUNT_ALL, 1).await;
}

/// Sends `size` bytes of spaces as a chunked body over a raw connection; returns the answer's
/// head (status line and headers).
async fn stream_chunked(addr: std::net::SocketAddr, path: &str, content_type: &str, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect to ingest");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("send head");
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..size / chunk.len() {
        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.expect("send chunk size");
        conn.write_all(&chunk).await.expect("send chunk");
        conn.write_all(b"\r\n").await.expect("send chunk end");
    }
    conn.write_all(b"0\r\n\r\n").await.expect("send last chunk");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.expect("read the answer");
        assert!(n > 0, "connection closed before an answer: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_events_are_unavailable_and_a_retry_counts_them_once() {
    let mut stack =
        Stack::start_with(StackOptions { ingest_env: vec![("PUBLISH_TIMEOUT_MS", "1000")], ..StackOptions::default() })
            .await;
    let items: Vec<Value> = (0..20).map(|_| json!({"type": "click", "ad_id": AD_TRAIL_RUNNER})).collect();
    stack.nats.stop();
    let (status, answer) = stack.post_raw("/ads/events", NDJSON, ndjson(&items), &[]).await;
    assert_eq!(status, 207, "{answer}");
    assert!(statuses(&answer).iter().all(|s| *s == "unavailable"), "{answer}");
    // The server assigned the ids; the client retries with them.
    let retry: Vec<Value> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| json!({"type": "click", "ad_id": AD_TRAIL_RUNNER, "event_id": r["event_id"]}))
        .collect();
    assert!(retry.iter().all(|r| r["event_id"].is_string()), "{answer}");
    stack.nats.restart().await;
    let answer = eventually("the retried batch is stored", || async {
        match stack.post_raw("/ads/events", NDJSON, ndjson(&retry), &[]).await {
            (202, answer) => Ok(answer),
            (status, answer) => Err(format!("{status} {answer}")),
        }
    })
    .await;
    assert_eq!(answer["accepted"].as_u64().unwrap_or(0) + answer["duplicates"].as_u64().unwrap_or(0), 20, "{answer}");
    stack.wait_for_count("SELECT count() FROM click_events", 20).await;
    let sentinel = stack.post("/ads/impression", json!({"ad_id": AD_TRAIL_RUNNER})).await;
    assert_eq!(sentinel.0, 202);
    stack.wait_for_count("SELECT count() FROM impression_events", 1).await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 20, "nothing counted twice");
}
