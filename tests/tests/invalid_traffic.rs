//! Invalid traffic and privacy, end to end: each rule flags its events, which are stored with
//! the reason in `invalid_events`, left out of every billable number and reported by reason;
//! and no stored row holds a full client IP.

use e2e::{eventually, metric, read_answer, Stack, StackOptions, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const HUMAN_A: (&str, &str) = ("203.0.113.10", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0 (visitor A)");
const HUMAN_B: (&str, &str) = ("203.0.113.20", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0 (visitor B)");
const CRAWLER: (&str, &str) =
    ("203.0.113.30", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
const IN_A_DATA_CENTRE: (&str, &str) = ("198.51.100.5", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0 (visitor C)");
const HUMAN_D: (&str, &str) = ("203.0.113.40", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0 (visitor D)");
/// The duplicate-click window of this test: short, so that it can wait past it.
const DUPLICATE_WINDOW_SECS: &str = "3";

/// `secs` from now, as a client timestamp.
fn at(secs: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs)).format(&Rfc3339).expect("timestamp")
}

async fn send(stack: &Stack, path: &str, ad: &str, secs: i64, (ip, agent): (&str, &str)) {
    let body = json!({"ad_id": ad, "timestamp": at(secs)}).to_string().into_bytes();
    // Ingest trusts the loopback proxy (TRUSTED_PROXIES below), so the forwarded address is the client's.
    let (status, answer) =
        stack.post_raw(path, "application/json", body, &[("user-agent", agent), ("x-forwarded-for", ip)]).await;
    assert_eq!(status, 202, "{path} {ad} from {ip}: {answer}");
}

fn invalid(metrics: &Value, which: &str, reason: &str) -> u64 {
    metrics[which][reason].as_u64().unwrap_or_else(|| panic!("{which}.{reason} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_flags_its_events_which_are_stored_apart_and_never_billed() {
    let stack = Stack::start_with(StackOptions {
        ingest_env: vec![
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("IVT_DATACENTER_RANGES", "198.51.100.0/24,2001:db8:dc::/48"),
        ],
        // On, against the harness's "off": the click-impression window as by default.
        aggregator_env: vec![
            ("IVT_DUPLICATE_CLICK_WINDOW_SECS", DUPLICATE_WINDOW_SECS),
            ("IVT_CLICK_IMPRESSION_WINDOW_SECS", "3600"),
        ],
        ..StackOptions::default()
    })
    .await;
    // Visitor A is shown the ad, clicks, clicks again at once (a duplicate) and once more after
    // the window (billable again). Each waits for the one before to be stored, so the rules
    // read it from ClickHouse, not from the batch in hand.
    send(&stack, "/ads/impression", AD_TRAIL_RUNNER, -130, HUMAN_A).await;
    stack.wait_for_count("SELECT count() FROM impression_events", 1).await;
    send(&stack, "/ads/click", AD_TRAIL_RUNNER, -120, HUMAN_A).await;
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
    send(&stack, "/ads/click", AD_TRAIL_RUNNER, -120, HUMAN_A).await;
    stack.wait_for_count("SELECT count() FROM invalid_events", 1).await;
    let window = std::time::Duration::from_secs(DUPLICATE_WINDOW_SECS.parse().expect("seconds"));
    tokio::time::sleep(window + std::time::Duration::from_millis(200)).await;
    send(&stack, "/ads/click", AD_TRAIL_RUNNER, -120, HUMAN_A).await;
    // The rules go by when ingest received a click, and by who sent it on that day: D's four
    // clicks, sent at once but stamped 31 s apart, and the last one on the day before (another
    // visitor_id, the same sender_id), are one billable click and three duplicates.
    send(&stack, "/ads/impression", AD_TRAIL_RUNNER, -100, HUMAN_D).await;
    for secs in [-95, -64, -33, -86_400 - 33] {
        send(&stack, "/ads/click", AD_TRAIL_RUNNER, secs, HUMAN_D).await;
    }
    // A request without a user agent is a script's, whatever else it looks like.
    let (status, answer) = read_answer(
        "POST /ads/click without a user agent",
        reqwest::Client::new()
            .post(stack.ingest.url("/ads/click"))
            .header("x-forwarded-for", "203.0.113.50")
            .json(&json!({"ad_id": AD_TRAIL_RUNNER}))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    // A clicks another ad, which B was shown but A never was; B clicks without any impression.
    send(&stack, "/ads/impression", AD_COFFEE_CLUB, -55, HUMAN_B).await;
    stack.wait_for_count(&format!("SELECT count() FROM impression_events WHERE ad_id = '{AD_COFFEE_CLUB}'"), 1).await;
    send(&stack, "/ads/click", AD_COFFEE_CLUB, -50, HUMAN_A).await;
    send(&stack, "/ads/click", AD_TRAIL_RUNNER, -40, HUMAN_B).await;
    // A crawler and a data-centre client, each shown the ad and clicking it.
    for sender in [CRAWLER, IN_A_DATA_CENTRE] {
        send(&stack, "/ads/impression", AD_TRAIL_RUNNER, -30, sender).await;
        send(&stack, "/ads/click", AD_TRAIL_RUNNER, -20, sender).await;
    }

    // Stored: billable rows in the event tables, flagged ones apart with their reason. The
    // aggregator writes a batch's three tables concurrently, so wait for all three at once:
    // waiting for `invalid_events` alone could read `click_events` before its insert ends.
    stack
        .wait_for_count(
            "SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events) + (SELECT count() FROM invalid_events)",
            17,
        )
        .await;
    assert_eq!(stack.count("SELECT count() FROM invalid_events").await, 11);
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 3);
    assert_eq!(stack.count("SELECT count() FROM impression_events").await, 3);
    let flagged = stack
        .sql("SELECT kind, invalid_reason, client_ip, count() FROM invalid_events GROUP BY ALL ORDER BY ALL FORMAT CSV")
        .await
        .expect("invalid_events");
    println!("invalid_events:\n{flagged}");
    assert_eq!(
        flagged,
        [
            r#""click","bot_user_agent","203.0.113.0",1"#,
            r#""click","click_without_impression","203.0.113.0",2"#,
            r#""click","datacenter_ip","198.51.100.0",1"#,
            r#""click","duplicate_click","203.0.113.0",4"#,
            r#""click","missing_user_agent","203.0.113.0",1"#,
            r#""impression","bot_user_agent","203.0.113.0",1"#,
            r#""impression","datacenter_ip","198.51.100.0",1"#,
        ]
        .join("\n")
    );

    // Privacy: no stored row holds a full address; visitors are told apart by the full one.
    let full_ips = stack
        .count(
            "SELECT count() FROM (SELECT client_ip FROM click_events UNION ALL SELECT client_ip FROM impression_events \
             UNION ALL SELECT client_ip FROM invalid_events) WHERE client_ip NOT IN ('203.0.113.0', '198.51.100.0')",
        )
        .await;
    assert_eq!(full_ips, 0, "every stored IP is truncated to its /24");
    assert_eq!(
        stack.count("SELECT uniqExact(sender_id) FROM invalid_events WHERE client_ip = '203.0.113.0'").await,
        5,
        "A, B, D, the crawler and the script"
    );
    assert_eq!(
        stack.count("SELECT uniqExact(visitor_id) FROM invalid_events WHERE client_ip = '203.0.113.0'").await,
        6,
        "D on two days"
    );

    // The API: billable numbers without them, the flagged ones by reason.
    let report = eventually("the flagged events in /ads/analytics", || async {
        let (status, report) = stack.get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&timeframe=1h")).await;
        assert_eq!(status, 200, "{report}");
        let total = report["total"].clone();
        if total["invalid_clicks"]["total"] == 7 {
            Ok(total)
        } else {
            Err(total.to_string())
        }
    })
    .await;
    println!("{AD_TRAIL_RUNNER}: {report}");
    assert_eq!(
        (report["clicks"].as_u64(), report["unique_clicks"].as_u64(), report["impressions"].as_u64()),
        (Some(3), Some(2), Some(2))
    );
    for (reason, clicks) in [
        ("bot_user_agent", 1),
        ("datacenter_ip", 1),
        ("duplicate_click", 3),
        ("click_without_impression", 1),
        ("missing_user_agent", 1),
    ] {
        assert_eq!(invalid(&report, "invalid_clicks", reason), clicks, "{reason}");
    }
    assert_eq!(invalid(&report, "invalid_impressions", "total"), 2);
    assert_eq!(
        (
            invalid(&report, "invalid_impressions", "bot_user_agent"),
            invalid(&report, "invalid_impressions", "datacenter_ip")
        ),
        (1, 1)
    );

    let (status, coffee) = stack.get(&format!("/ads/{AD_COFFEE_CLUB}/analytics?timeframe=1h&granularity=hour")).await;
    assert_eq!(status, 200, "{coffee}");
    assert_eq!(coffee["totals"]["clicks"], 0, "{coffee}");
    assert_eq!(invalid(&coffee["totals"], "invalid_clicks", "click_without_impression"), 1, "{coffee}");
    let flagged_in_series: u64 =
        coffee["series"].as_array().expect("series").iter().map(|b| invalid(b, "invalid_clicks", "total")).sum();
    assert_eq!(flagged_in_series, 1, "the series counts them too");

    // A flagged event is stored once too: the same crawler click alone, then in a batch (two
    // stream messages, so the aggregator's stored-id lookup is what drops the second).
    let id = uuid::Uuid::now_v7().to_string();
    let click = json!({"event_id": id, "ad_id": AD_TRAIL_RUNNER});
    let headers = [("user-agent", CRAWLER.1), ("x-forwarded-for", CRAWLER.0)];
    let (status, answer) =
        stack.post_raw("/ads/click", "application/json", click.to_string().into_bytes(), &headers).await;
    assert_eq!(status, 202, "{answer}");
    let mut in_a_batch = click.clone();
    in_a_batch["type"] = json!("click");
    let (status, answer) =
        stack.post_raw("/ads/events", "application/json", json!([in_a_batch]).to_string().into_bytes(), &headers).await;
    assert_eq!(status, 202, "{answer}");
    eventually("the repeat recognised as stored", || async {
        let text = stack.metrics(&stack.aggregator).await;
        match metric(&text, "aggregator_events_already_stored_total") {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(stack.count(&format!("SELECT count() FROM invalid_events WHERE event_id = '{id}'")).await, 1);
}

/// A click tracker's traffic: clicks only, never an impression. The click-impression rule judges
/// only ads that receive impressions, so every click of distinct visitors is billable; a
/// visitor's second click within the duplicate window is still flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_alone_from_distinct_visitors_are_all_billable() {
    let stack = Stack::start_with(StackOptions {
        ingest_env: vec![("TRUSTED_PROXIES", "127.0.0.1")],
        aggregator_defaults: true,
        ..StackOptions::default()
    })
    .await;
    const VISITORS: u64 = 20;
    let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
    for visitor in 0..VISITORS {
        let ip = format!("203.0.113.{}", 100 + visitor);
        send(&stack, "/ads/click", AD_TRAIL_RUNNER, -60 + visitor as i64, (&ip, browser)).await;
    }
    send(&stack, "/ads/click", AD_TRAIL_RUNNER, -50, ("203.0.113.100", browser)).await;
    stack
        .wait_for_count(
            "SELECT (SELECT count() FROM click_events) + (SELECT count() FROM invalid_events)",
            VISITORS + 1,
        )
        .await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, VISITORS);
    let flagged = stack.sql("SELECT invalid_reason FROM invalid_events FORMAT CSV").await.expect("invalid_events");
    assert_eq!(flagged, r#""duplicate_click""#);

    // A raw row can be readable a moment before its rollups: wait for both numbers.
    let report = eventually("the clicks in /ads/analytics", || async {
        let (status, report) = stack.get(&format!("/ads/analytics?ad_id={AD_TRAIL_RUNNER}&timeframe=1h")).await;
        assert_eq!(status, 200, "{report}");
        let total = report["total"].clone();
        if total["clicks"] == VISITORS && total["invalid_clicks"]["total"] == 1 {
            Ok(total)
        } else {
            Err(total.to_string())
        }
    })
    .await;
    assert_eq!(
        (report["unique_clicks"].as_u64(), report["impressions"].as_u64()),
        (Some(VISITORS), Some(0)),
        "{report}"
    );
    assert_eq!(invalid(&report, "invalid_clicks", "duplicate_click"), 1, "{report}");
}

/// Defence in depth: only ingest may publish events, and signs them, but even a signed message
/// that claims to be billable against its own user agent is flagged, and one claiming a reason
/// of the history rules is judged by them instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_checks_the_user_agent_rules_of_every_message_again() {
    let stack = Stack::start().await;
    let js = async_nats::jetstream::new(stack.nats_admin().await);
    let forged = |user_agent: Option<&str>, claimed: Option<&str>| {
        let mut event: Value =
            serde_json::from_slice(include_bytes!("../../schemas/test-data/v1/click.json")).expect("fixture");
        event["event_id"] = json!(uuid::Uuid::now_v7());
        event["timestamp"] = json!(at(0));
        event["received_at"] = json!(at(0));
        event["user_agent"] = json!(user_agent);
        event["invalid_reason"] = json!(claimed);
        event
    };
    let messages = [
        (forged(Some("curl/8.5.0"), None), "bot_user_agent"),
        (forged(None, None), "missing_user_agent"),
        (forged(Some(HUMAN_A.1), Some("datacenter_ip")), "datacenter_ip"),
        (forged(Some(HUMAN_B.1), Some("duplicate_click")), "billable"),
    ];
    for (event, _) in &messages {
        js.send_publish("ads.events.click", e2e::signed_message(event.to_string()))
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    stack.wait_for_count("SELECT (SELECT count() FROM click_events) + (SELECT count() FROM invalid_events)", 4).await;
    for (event, expected) in &messages {
        let id = event["event_id"].as_str().expect("id");
        let stored = stack
            .sql(&format!(
                "SELECT 'billable' FROM click_events WHERE event_id = '{id}' UNION ALL SELECT invalid_reason FROM invalid_events WHERE event_id = '{id}'"
            ))
            .await
            .expect("where the event is");
        assert_eq!(stored, *expected, "{event}");
    }
}
