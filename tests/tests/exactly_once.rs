//! Every event answered with 202 is counted exactly once: through crashes, redeliveries,
//! retried inserts and a ClickHouse outage.

use std::time::Duration;

use aggregator::backoff::Backoff;
use aggregator::metrics::Metrics;
use aggregator::sink::{Sink, WriteOutcome};
use async_nats::jetstream::consumer::pull;
use e2e::{eventually, ClickHouse, Load, Stack, StackOptions, AD_CITY_BREAK, AD_COFFEE_CLUB, AD_TRAIL_RUNNER};
use futures::StreamExt;
use rand::Rng;
use schemas::rows::{ClickRow, EventRow};
use schemas::{AdEvent, EventKind};
use serde_json::json;
use time::OffsetDateTime;

const ADS: [&str; 3] = [AD_TRAIL_RUNNER, AD_COFFEE_CLUB, AD_CITY_BREAK];

const RAW_ROWS: &str = "SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)";

async fn raw_rows(stack: &Stack) -> u64 {
    stack.count(RAW_ROWS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_killed_at_random_moments_under_load_counts_every_event_once() {
    // Small batches, so that many are in flight when the kills land.
    let mut stack = Stack::start_with(StackOptions {
        aggregator_env: vec![("BATCH_MAX_MESSAGES", "500"), ("BATCH_MAX_WAIT_MS", "50")],
        ..StackOptions::default()
    })
    .await;
    // 100,000 events; every 20th sent twice.
    let load = Load::start(stack.ingest.url(""), 100_000, 32, 20, Duration::ZERO);
    let mut kills = 0;
    while !load.is_finished() || kills < 3 {
        let wait = rand::rng().random_range(500..3_000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        stack.aggregator.kill();
        kills += 1;
        println!("kill -9 #{kills} of the aggregator after {wait} ms, {} rows stored", raw_rows(&stack).await);
        stack.aggregator.start().await;
    }
    let report = load.finish().await;
    println!("load done: {} sends", report.sends());
    assert_eq!(
        report.statuses.keys().copied().collect::<Vec<_>>(),
        vec![202],
        "ingest never failed: {:?}",
        report.statuses
    );
    assert_eq!(report.clicks.len() + report.impressions.len(), 100_000);
    stack.assert_counted_exactly(&report).await;

    let (stream_messages, pending, ack_pending) = stack.stream_state().await;
    assert_eq!((pending, ack_pending), (0, 0), "everything consumed and acked");
    // Ingest groups concurrent events into shared messages, so repeats reach the stream too and
    // are dropped by the aggregator; the counts above are what matters.
    println!("the stream holds {stream_messages} messages for 100,000 events and 5,000 repeats");
    let log = std::fs::read_to_string(stack.dir.join("aggregator.log")).unwrap_or_default();
    let skips = log.lines().filter(|l| l.contains("skipping events already stored")).count();
    println!("batches in which redelivered events were recognised and skipped: {skips}");
    let (_, report_api) = stack.get("/ads/analytics?timeframe=1h").await;
    let api_clicks: u64 =
        report_api["ads"].as_array().map_or(0, |ads| ads.iter().map(|a| a["clicks"].as_u64().unwrap_or(0)).sum());
    assert_eq!(api_clicks, report.clicks.len() as u64, "the API agrees");
}

/// Posts `clicks` and `impressions` distinct events over the three sample ads, 32 at a time, and
/// every `resend_every`-th event a second time with the same event_id. All must get 202.
async fn post_events(stack: &Stack, clicks: usize, impressions: usize, resend_every: usize) {
    let events: Vec<(&str, serde_json::Value)> = (0..clicks + impressions)
        .map(|i| {
            let ad = ADS[i % ADS.len()];
            let id = uuid::Uuid::now_v7();
            if i < clicks {
                ("/ads/click", json!({"event_id": id, "ad_id": ad, "playback_time_secs": (i % 30) as f64}))
            } else {
                ("/ads/impression", json!({"event_id": id, "ad_id": ad}))
            }
        })
        .collect();
    let resent: Vec<_> = events.iter().step_by(resend_every).cloned().collect();
    let statuses: Vec<u16> = futures::stream::iter(events.iter().chain(resent.iter()))
        .map(|(path, body)| async move { stack.post(path, body.clone()).await.0 })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(statuses.len(), events.len() + resent.len());
    let refused: Vec<_> = statuses.iter().filter(|s| **s != 202).collect();
    assert!(refused.is_empty(), "every send accepted; {} were not, with statuses {refused:?}", refused.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_aggregator_write_and_ack_the_batch_in_hand() {
    let mut stack = Stack::start_with(StackOptions {
        aggregator_stopped: true,
        // Acks and grace long enough that neither expires on a loaded machine (this file's
        // tests run side by side): the test is about the batch in hand, not about redelivery
        // or an abandoned batch, which other tests cover.
        aggregator_env: vec![("BATCH_MAX_MESSAGES", "500"), ("ACK_WAIT_SECS", "120"), ("SHUTDOWN_GRACE_SECS", "60")],
        // More publish slots than concurrent requests: one event per message, so that rows
        // can be compared with delivered messages below.
        ingest_env: vec![("PUBLISH_MAX_IN_FLIGHT", "64")],
        ..StackOptions::default()
    })
    .await;
    post_events(&stack, 3_000, 1_000, usize::MAX).await;
    stack.aggregator.start().await;
    eventually("the first batches", || async {
        let rows = raw_rows(&stack).await;
        if rows >= 500 {
            Ok(())
        } else {
            Err(format!("{rows} rows"))
        }
    })
    .await;
    let status = stack.aggregator.terminate();
    let log = stack.aggregator.log_tail(20);
    assert!(status.success(), "aggregator exited with {status}; its log ends:\n{log}");

    // The server applies acks a moment after the client has flushed them; a message left
    // unacked would stay pending for the whole ack wait, far beyond this.
    let (messages, pending, ack_pending) = eventually("every delivered message acked", || async {
        match stack.stream_state().await {
            (messages, pending, 0) => Ok((messages, pending, 0)),
            (messages, pending, ack_pending) => {
                let rows = raw_rows(&stack).await;
                Err(format!("{ack_pending} unacked, with {rows} rows written, {messages} messages, {pending} not yet delivered; the aggregator's log ends:\n{log}"))
            }
        }
    })
    .await;
    let rows = raw_rows(&stack).await;
    println!("SIGTERM: {rows} rows written, {pending} messages not yet delivered, {ack_pending} unacked");
    assert_eq!(rows, messages - pending, "every delivered message is a row; the aggregator's log ends:\n{log}");

    stack.aggregator.start().await;
    stack.wait_for_count(RAW_ROWS, 4_000).await;
}

fn with_seq(row: EventRow, seq: u64) -> EventRow {
    match row {
        EventRow::Click(mut row) => {
            row.stream_seq = seq;
            EventRow::Click(row)
        }
        other => other,
    }
}

fn click(seq: u64) -> EventRow {
    // One id per sequence: a redelivery carries the same event.
    let id = uuid::Uuid::from_u64_pair(0x0190_0000_0000_7000, seq);
    let ad = uuid::Uuid::parse_str(AD_TRAIL_RUNNER).expect("uuid");
    let event = AdEvent {
        client_ip: Some([192, 0, 2, (seq % 200) as u8].into()),
        user_agent: Some("test".into()),
        ..AdEvent::new(EventKind::Click, id, ad)
    };
    EventRow::from_event(event, seq)
}

/// A database of its own on the shared server, migrated; with a client for it.
async fn migrated_database() -> (&'static ClickHouse, String, clickhouse::Client) {
    let server = ClickHouse::shared().await;
    let database = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    let login = &server.login;
    let root = clickhouse::Client::default().with_url(&login.url).with_user(&login.user).with_password(&login.password);
    let client = root.clone().with_database(&database);
    aggregator::migrate::apply(&root, &client, &database, false).await.expect("migrate");
    (server, database, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_retried_batches_are_not_counted_twice() {
    let (server, database, client) = migrated_database().await;
    let sink = Sink::new(client.clone(), Backoff::default(), Metrics::new().expect("metrics"));
    let count = |sql: &'static str| {
        let database = database.clone();
        async move { server.sql(&database, sql).await.expect(sql) }
    };

    // A crash after inserting 1..=100 but before the ack: JetStream redelivers, mixed with new
    // messages, in a differently cut batch.
    assert_eq!(written(sink.write((1..=100).map(click).collect()).await), (100, 0));
    assert_eq!(written(sink.write((50..=150).map(click).collect()).await), (50, 51));
    assert_eq!(written(sink.write((1..=150).rev().map(click).collect()).await), (0, 150));
    assert_eq!(count("SELECT count() FROM click_events").await, "150");
    assert_eq!(count("SELECT sum(clicks) FROM click_events_per_minute").await, "150");

    // A recreated stream restarts its sequences: same numbers, other events. They are new.
    let fresh: Vec<EventRow> = (1..=10)
        .map(|seq| match click(seq) {
            EventRow::Click(mut row) => {
                row.event_id = uuid::Uuid::now_v7();
                EventRow::Click(row)
            }
            other => other,
        })
        .collect();
    assert_eq!(written(sink.write(fresh).await), (10, 0));

    // A client retry that reached the stream after the duplicate window: same event, new
    // sequence. Also repeats inside one batch.
    assert_eq!(
        sink.write(vec![click(1), click(2)].into_iter().map(|r| with_seq(r, 9_001)).collect()).await.inserted,
        0
    );
    assert_eq!(written(sink.write(vec![click(500), click(500)]).await), (1, 1));

    // A full default-size batch (BATCH_MAX_MESSAGES = 10,000) half of which is stored already.
    let big: Vec<EventRow> = (5_001..=15_000).map(click).collect();
    assert_eq!(sink.write(big[..5_000].to_vec()).await.inserted, 5_000);
    assert_eq!(written(sink.write(big).await), (5_000, 5_000));

    // A retried insert (lost response): same rows, same token. The raw table and the rollup
    // both recognise it.
    let retried: Vec<ClickRow> = (151..=160)
        .map(|seq| match click(seq) {
            EventRow::Click(row) => row,
            EventRow::Impression(_) | EventRow::Invalid(_) => unreachable!("click() makes billable clicks"),
        })
        .collect();
    let token = aggregator::sink::dedup_token("click_events", retried.iter().map(|r| (r.stream_seq, r.event_id)));
    for _ in 0..2 {
        let mut insert = client
            .insert::<ClickRow>("click_events")
            .await
            .expect("insert")
            .with_setting("insert_deduplication_token", token.as_str())
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
        for row in &retried {
            insert.write(row).await.expect("write");
        }
        insert.end().await.expect("end");
    }
    assert_eq!(count("SELECT count() FROM click_events").await, "10171");
    assert_eq!(count("SELECT sum(clicks) FROM click_events_per_minute").await, "10171");

    // The write announcement names the earliest time a write changed (the query service keeps
    // its answers about earlier times); a write of repeats changed none.
    let yesterday = OffsetDateTime::now_utc() - time::Duration::DAY;
    let late = match click(20_001) {
        EventRow::Click(mut row) => {
            row.timestamp = yesterday;
            EventRow::Click(row)
        }
        other => other,
    };
    let outcome = sink.write(vec![click(20_002), late.clone()]).await;
    assert_eq!((outcome.inserted, outcome.earliest_timestamp), (2, Some(yesterday)));
    assert_eq!(sink.write(vec![late]).await.earliest_timestamp, None);
}

/// Rows ClickHouse refuses for good are found among their neighbours and handed back; every
/// other row is written once, in the raw table and the rollups, however often the batch comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_clickhouse_rejects_are_singled_out_and_the_rest_written_once() {
    let (server, database, client) = migrated_database().await;
    server
        .sql(
            &database,
            "ALTER TABLE click_events ADD CONSTRAINT playback_under_1000 CHECK ifNull(playback_time_secs, 0) < 1000",
        )
        .await
        .expect("constraint");
    let sink = Sink::new(client.clone(), Backoff::default(), Metrics::new().expect("metrics"));
    let bad = [7, 13, 14];
    let batch = || -> Vec<EventRow> {
        (1..=40)
            .map(|seq| match click(seq) {
                EventRow::Click(mut row) if bad.contains(&seq) => {
                    row.playback_time_secs = Some(5_000.0);
                    EventRow::Click(row)
                }
                other => other,
            })
            .collect()
    };
    let rejected_seqs = |outcome: &WriteOutcome| -> Vec<u64> {
        let mut seqs: Vec<u64> = outcome.rejected.iter().map(|(id, _)| id.as_u64_pair().1).collect();
        seqs.sort_unstable();
        seqs
    };

    let outcome = sink.write(batch()).await;
    assert_eq!((outcome.inserted, outcome.already_stored), (37, 0));
    assert_eq!(rejected_seqs(&outcome), bad);
    for (_, error) in &outcome.rejected {
        assert!(error.to_string().contains("playback_under_1000"), "ClickHouse's own words: {error}");
    }
    // The same batch again (a redelivery): the stored rows are recognised, the bad ones refused.
    let outcome = sink.write(batch()).await;
    assert_eq!((outcome.inserted, outcome.already_stored), (0, 37));
    assert_eq!(rejected_seqs(&outcome), bad);
    let count = |sql: &'static str| {
        let database = database.clone();
        async move { server.sql(&database, sql).await.expect(sql) }
    };
    assert_eq!(count("SELECT count() FROM click_events").await, "37");
    assert_eq!(count("SELECT sum(clicks) FROM click_events_per_minute").await, "37");
}

/// What a write inserted and recognised as stored.
fn written(outcome: WriteOutcome) -> (usize, usize) {
    (outcome.inserted, outcome.already_stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_for_30_s_under_load_loses_nothing() {
    let dir = e2e::scratch_dir("clickhouse-outage");
    let mut clickhouse = ClickHouse::start(&dir).await;
    let stack =
        Stack::start_with(StackOptions { clickhouse: Some(clickhouse.login.clone()), ..StackOptions::default() }).await;

    // About 200 events a second for 40 s.
    let load = Load::start(stack.ingest.url(""), 8_000, 8, 10, Duration::from_millis(40));
    tokio::time::sleep(Duration::from_secs(3)).await;
    clickhouse.stop();
    println!("injected: ClickHouse stopped under load for 30 s");
    eventually("query to notice ClickHouse is down", || async {
        let response = stack.http.get(stack.query.url("/readyz")).send().await.map_err(|e| e.to_string())?;
        if response.status() == 503 {
            Ok(())
        } else {
            Err(response.status().to_string())
        }
    })
    .await;
    // The catalog copy keeps ingest answering (CATALOG_REFRESH_SECS=1 has failed by now).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, answer) = stack.post("/ads/click", json!({"ad_id": uuid::Uuid::new_v4()})).await;
    assert_eq!(status, 422, "unknown ads are still rejected: {answer}");
    // Query answers 503, and tells nothing of ClickHouse's own error.
    let (status, answer) = stack.get("/ads/analytics?timeframe=7d").await;
    assert_eq!(
        (status, answer["detail"].as_str()),
        (503, Some("ClickHouse did not answer; retry shortly")),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_secs(28)).await;
    // The lag the operator sees: messages waiting, and the oldest of them about 30 s old.
    let lag = stack.metrics(&stack.aggregator).await;
    let waiting = e2e::metric(&lag, "aggregator_consumer_pending_messages").unwrap_or(0.0)
        + e2e::metric(&lag, "aggregator_consumer_ack_pending_messages").unwrap_or(0.0);
    let oldest = e2e::metric(&lag, "aggregator_oldest_unprocessed_event_age_seconds").unwrap_or(0.0);
    println!("lag while ClickHouse was down: {waiting} messages waiting, the oldest {oldest:.0} s old");
    assert!(waiting > 0.0 && oldest >= 15.0, "lag metrics during the outage:\n{lag}");
    clickhouse.restart().await;
    println!("ClickHouse back");

    let report = load.finish().await;
    assert_eq!(
        report.statuses.keys().copied().collect::<Vec<_>>(),
        vec![202],
        "ingest kept answering 202: {:?}",
        report.statuses
    );
    stack.assert_counted_exactly(&report).await;
    let metrics = stack.metrics(&stack.aggregator).await;
    let retries = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aggregator_insert_retries_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    println!("aggregator retries while ClickHouse was down: {retries}");
    assert!(retries > 0, "the aggregator backed off and retried");
    eventually("the lag metrics to return to zero", || async {
        let lag = stack.metrics(&stack.aggregator).await;
        let series = [
            "aggregator_consumer_pending_messages",
            "aggregator_consumer_ack_pending_messages",
            "aggregator_oldest_unprocessed_event_age_seconds",
        ];
        match series.iter().all(|s| e2e::metric(&lag, s) == Some(0.0)) {
            true => Ok(()),
            false => Err(lag),
        }
    })
    .await;
    drop(stack);
    clickhouse.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_while_nats_is_down_and_a_retry_counts_once() {
    let mut stack =
        Stack::start_with(StackOptions { ingest_env: vec![("PUBLISH_TIMEOUT_MS", "1000")], ..StackOptions::default() })
            .await;
    // No event_id: the server assigns one and must hand it back with the 503.
    let click = json!({"ad_id": AD_TRAIL_RUNNER});
    stack.nats.stop();
    let response = stack
        .http
        .post(stack.ingest.url("/ads/click"))
        .json(&click)
        .send()
        .await
        .expect("ingest answers while NATS is down");
    assert_eq!(response.status(), 503, "never 202 without JetStream's ack");
    assert!(response.headers().contains_key("retry-after"));
    let answer: serde_json::Value = response.json().await.expect("JSON 503");
    let event_id = answer["event_id"].as_str().unwrap_or_else(|| panic!("503 carries the event_id: {answer}"));
    let event = json!({"event_id": event_id, "ad_id": AD_TRAIL_RUNNER});

    // The client retries with the same event_id once NATS is back. The first attempt may or
    // may not have reached the stream; either way the event is counted once.
    stack.nats.restart().await;
    let (status, answer) = eventually("ingest to accept again", || async {
        match stack.post("/ads/click", event.clone()).await {
            (202, answer) => Ok((202, answer)),
            (status, answer) => Err(format!("{status} {answer}")),
        }
    })
    .await;
    assert_eq!(status, 202, "{answer}");
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 1);
    assert_eq!(stack.count("SELECT sum(clicks) FROM click_events_per_minute").await, 1);
}

/// A browser never retries a redirect or a pixel: while JetStream is down their events go to
/// ingest's spool, which a kill -9 does not empty and a restart (NATS still down) adds to, and
/// are replayed, each counted once, when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_pixels_sent_while_nats_is_down_are_spooled_and_counted_once() {
    let mut stack =
        Stack::start_with(StackOptions { ingest_env: vec![("PUBLISH_TIMEOUT_MS", "500")], ..StackOptions::default() })
            .await;
    let browser = e2e::browser_like_client().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let (click, pixel) =
        (stack.ingest.url(&format!("/c/{AD_TRAIL_RUNNER}")), stack.ingest.url(&format!("/i/{AD_COFFEE_CLUB}.gif")));
    let send = |count: usize| {
        let (browser, click, pixel) = (browser.clone(), click.clone(), pixel.clone());
        async move {
            for _ in 0..count {
                let redirect = browser.get(&click).send().await.expect("redirect");
                assert_eq!(redirect.status(), 302, "the person is sent on");
                let gif = browser.get(&pixel).send().await.expect("pixel");
                assert_eq!(gif.status(), 200);
            }
        }
    };
    stack.nats.stop();
    println!("injected: NATS stopped");
    send(6).await;
    spool_holds(&stack, 12.0).await;
    stack.ingest.kill();
    println!("injected: ingest killed (kill -9) with 12 events spooled, restarted while NATS is down");
    stack.ingest.start().await;
    send(4).await;
    let metrics = spool_holds(&stack, 20.0).await;
    assert!(e2e::metric(&metrics, "ingest_spool_oldest_age_seconds").is_some_and(|age| age > 0.0), "{metrics}");
    let (status, answer) = stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await;
    assert_eq!(status, 503, "a JSON client still retries itself: {answer}");

    stack.nats.restart().await;
    println!("NATS back");
    stack.wait_for_count("SELECT count() FROM click_events", 10).await;
    stack.wait_for_count("SELECT count() FROM impression_events", 10).await;
    spool_holds(&stack, 0.0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(stack.count("SELECT uniqExact(event_id) FROM click_events").await, 10);
    assert_eq!(raw_rows(&stack).await, 20, "each spooled event once");
    assert_eq!(stack.count("SELECT sum(impressions) FROM impression_events_per_minute").await, 10);
    let metrics = stack.metrics(&stack.ingest).await;
    assert_eq!(e2e::metric_sum(&metrics, "ingest_tracking_unrecorded_total", &[]), 0.0, "nothing lost:\n{metrics}");
}

/// Waits until ingest's spool holds `events` (its gauges follow it within a second); returns
/// ingest's metrics.
async fn spool_holds(stack: &Stack, events: f64) -> String {
    eventually(&format!("ingest_spool_events {events}"), || async {
        let metrics = stack.metrics(&stack.ingest).await;
        if e2e::metric(&metrics, "ingest_spool_events") == Some(events) {
            Ok(metrics)
        } else {
            Err(metrics)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_settings_follow_the_configuration_on_restart() {
    let mut stack = Stack::start().await;
    let nats = stack.nats_admin().await;
    let js = async_nats::jetstream::new(nats);
    let ack_wait = |js: async_nats::jetstream::Context| async move {
        let stream = js.get_stream("AD_EVENTS").await.expect("stream");
        let mut consumer = stream.get_consumer::<pull::Config>("aggregator").await.expect("consumer");
        consumer.info().await.expect("consumer info").config.ack_wait
    };
    assert_eq!(ack_wait(js.clone()).await, Duration::from_secs(3));
    stack.aggregator.terminate();
    stack.aggregator.set_env("ACK_WAIT_SECS", "7");
    stack.aggregator.start().await;
    assert_eq!(ack_wait(js).await, Duration::from_secs(7), "a changed ACK_WAIT_SECS is applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_retry_after_the_duplicate_window_is_still_counted_once() {
    let stack = Stack::start_with(StackOptions {
        aggregator_env: vec![("STREAM_DUPLICATE_WINDOW_SECS", "1")],
        ..StackOptions::default()
    })
    .await;
    let click = json!({"event_id": uuid::Uuid::now_v7(), "ad_id": AD_TRAIL_RUNNER});
    assert_eq!(stack.post("/ads/click", click.clone()).await.0, 202);
    stack.wait_for_count("SELECT count() FROM click_events", 1).await;
    // Well past the 1 s window (JetStream forgets ids on a timer, not to the millisecond).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, answer) = stack.post("/ads/click", click).await;
    assert_eq!(status, 202, "{answer}");
    let (messages, _, _) = stack.stream_state().await;
    assert_eq!(messages, 2, "past its window JetStream stores the repeat");
    eventually("the aggregator to see the repeat", || async {
        let metrics = stack.metrics(&stack.aggregator).await;
        if metrics.contains("aggregator_events_already_stored_total 1") {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await;
    assert_eq!(stack.count("SELECT count() FROM click_events").await, 1);
    assert_eq!(stack.count("SELECT sum(clicks) FROM click_events_per_minute").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_under_load_gets_no_202_and_loses_nothing() {
    let mut stack =
        Stack::start_with(StackOptions { ingest_env: vec![("PUBLISH_TIMEOUT_MS", "1000")], ..StackOptions::default() })
            .await;
    let load = Load::start(stack.ingest.url(""), 20_000, 16, 10, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.nats.stop();
    println!("injected: nats-server stopped (SIGTERM) under load for 5 s");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stack.nats.restart().await;
    let report = load.finish().await;
    assert!(report.statuses.get(&503).copied().unwrap_or(0) > 0, "the outage was felt: {:?}", report.statuses);
    stack.assert_counted_exactly(&report).await;
}

/// A SIGTERM must end every service even while NATS is unreachable: each hands NATS what it
/// still buffers for a bounded time only, instead of waiting for a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_service_while_nats_is_down_and_loses_nothing() {
    let mut stack = Stack::start().await;
    let (status, answer) = stack.post("/ads/click", json!({"ad_id": AD_TRAIL_RUNNER})).await;
    assert_eq!(status, 202, "{answer}");
    stack.nats.stop();
    for service in [&mut stack.ingest, &mut stack.aggregator, &mut stack.query] {
        let status = service.terminate();
        assert!(
            status.success(),
            "{} exited with {status} while NATS was down; its log ends:\n{}",
            service.name,
            service.log_tail(20)
        );
    }
    println!("injected: NATS stopped, then SIGTERM to every service: all exited");
    stack.nats.restart().await;
    stack.aggregator.start().await;
    stack.wait_for_count(RAW_ROWS, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_restarted_or_killed_under_load_lose_nothing() {
    let mut stack = Stack::start().await;
    let load = Load::start(stack.ingest.url(""), 20_000, 16, 10, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = stack.ingest.terminate();
    assert!(status.success(), "ingest drained and exited cleanly: {status}");
    println!("injected: ingest stopped with SIGTERM under load, restarted");
    stack.ingest.start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = stack.aggregator.terminate();
    assert!(status.success(), "aggregator flushed and exited cleanly: {status}");
    println!("injected: aggregator stopped with SIGTERM under load, restarted");
    stack.aggregator.start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.ingest.kill();
    println!("injected: kill -9 of ingest under load, restarted");
    stack.ingest.start().await;
    let report = load.finish().await;
    stack.assert_counted_exactly(&report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_killed_in_a_three_node_cluster_under_load_loses_nothing() {
    let mut stack = Stack::start_with(StackOptions {
        nats_cluster: true,
        ingest_env: vec![("PUBLISH_TIMEOUT_MS", "2000")],
        ..StackOptions::default()
    })
    .await;
    let load = Load::start(stack.ingest.url(""), 20_000, 16, 10, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = rand::rng().random_range(0..3);
    if victim == 0 {
        stack.nats.kill()
    } else {
        stack.nats_peers[victim - 1].kill()
    }
    println!("injected: kill -9 of NATS node {victim} of 3 (stream with 3 replicas) under load");
    let report = load.finish().await;
    println!("answers during the failover: {:?}", report.statuses);
    stack.assert_counted_exactly(&report).await;
}
