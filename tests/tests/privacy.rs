//! No full client IP reaches the logs: not when a connection is closed for idling, not when a
//! client is rate-limited (`KEEP_RAW_IPS` is off).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e::{Stack, StackOptions, AD_TRAIL_RUNNER};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_full_client_ip_is_logged() {
    let stack = Stack::start_with(StackOptions {
        ingest_env: vec![("IDLE_TIMEOUT_SECS", "1"), ("RATE_LIMIT_PER_IP", "1")],
        ..StackOptions::default()
    })
    .await;

    // A keep-alive connection that sends one event, then idles until ingest closes it.
    let addr = stack.ingest.addr;
    let client_port = tokio::task::spawn_blocking(move || {
        let mut connection = TcpStream::connect(addr).expect("connect to ingest");
        connection.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        let body = json!({"ad_id": AD_TRAIL_RUNNER}).to_string();
        write!(
            connection,
            "POST /ads/impression HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until ingest closes the idle connection (EOF); its answer comes first.
        while let Ok(n) = connection.read(&mut chunk) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 202"), "{}", String::from_utf8_lossy(&answer));
        connection.local_addr().expect("local address").port()
    })
    .await
    .expect("the idle connection");

    // Rate-limited: the answer and the log say so without the address.
    let mut limited = None;
    for _ in 0..10 {
        let (status, answer) = stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await;
        if status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("a 429 after 10 rapid clicks at 1 event/s");
    assert!(!limited.to_string().contains("127.0.0.1"), "{limited}");

    let log = std::fs::read_to_string(stack.dir.join("ingest.log")).expect("ingest log");
    let client = format!("127.0.0.1:{client_port}");
    let leaks: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(&client) || (line.contains("rate") && line.contains("127.0.0.1")))
        .collect();
    assert!(leaks.is_empty(), "full client addresses in the log:\n{}", leaks.join("\n"));
}
