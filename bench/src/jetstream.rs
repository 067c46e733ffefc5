//! The broker ceiling: what ingest publishes (an `AdEvent` JSON with `Nats-Msg-Id` and
//! `Ads-Schema-Version`), published straight to JetStream with a window of acks in flight, to a
//! scratch stream configured like the real one.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream;
use futures::stream::{FuturesUnordered, StreamExt};
use schemas::audience::{Browser, DeviceType};
use schemas::AdEvent;
use serde::Serialize;

use crate::http::BENCH_USER_AGENT;
use crate::load::Window;
use crate::stats::{micros, Latency};
use crate::workload::{Event, Mix, Source};

const SCRATCH_STREAM: &str = "BENCH_SCRATCH";
const SCRATCH_PREFIX: &str = "bench.scratch";

#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// Publishes awaiting their ack at any time.
    pub in_flight: usize,
    pub measured_secs: f64,
    /// Acks received for publishes sent in the measured window, and their rate.
    pub messages: u64,
    pub messages_per_sec: f64,
    /// From publish to ack.
    pub ack_latency: Latency,
    pub errors: u64,
}

/// One measured run per window size, against a scratch copy of `stream`; the copy is deleted
/// afterwards, also when a run fails.
pub async fn run(
    client: async_nats::Client,
    stream: &str,
    mix: &Mix,
    windows: &[usize],
    warmup: std::time::Duration,
    measured: std::time::Duration,
) -> anyhow::Result<Vec<PublishReport>> {
    let js = jetstream::new(client);
    let mut config = js.get_stream(stream).await.context("reading the real stream")?.get_info().await?.config;
    config.name = SCRATCH_STREAM.to_owned();
    config.subjects = vec![format!("{SCRATCH_PREFIX}.>")];
    js.create_stream(config).await.context("creating the scratch stream")?;
    let mut reports = Vec::new();
    let mut outcome = Ok(());
    for &in_flight in windows {
        match publish(&js, Source::new(mix.clone()), in_flight, Window::starting_now(warmup, measured)).await {
            Ok(report) => reports.push(report),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    js.delete_stream(SCRATCH_STREAM).await.context("deleting the scratch stream")?;
    outcome.map(|()| reports)
}

async fn publish(
    js: &jetstream::Context,
    mut source: Source,
    in_flight: usize,
    window: Window,
) -> anyhow::Result<PublishReport> {
    let mut pending = FuturesUnordered::new();
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    loop {
        while pending.len() < in_flight && Instant::now() < window.until {
            let (event, _) = source.next_event();
            // As ingest publishes it: schema version and signature headers.
            let message = e2e::signed_message(ad_event(&event).to_json()).message_id(event.id.to_string());
            let subject = format!("{SCRATCH_PREFIX}.{}", event.kind.as_str());
            let sent = Instant::now();
            let ack = js.send_publish(subject, message).await.context("publishing")?;
            pending.push(async move { (sent, ack.await) });
        }
        let Some((sent, ack)) = pending.next().await else { break };
        match ack {
            Ok(_) if window.measures(sent) => latencies_us.push(micros(sent.elapsed())),
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    let messages = latencies_us.len() as u64;
    Ok(PublishReport {
        in_flight,
        measured_secs: window.measured_secs(),
        messages,
        messages_per_sec: messages as f64 / window.measured_secs(),
        ack_latency: Latency::of(latencies_us),
        errors,
    })
}

/// The event as ingest would publish it for a request from the bench.
fn ad_event(event: &Event) -> AdEvent {
    AdEvent {
        // Truncated, as ingest stores it.
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0))),
        user_agent: Some(BENCH_USER_AGENT.to_owned()),
        playback_time_secs: event.playback.map(|(secs, _)| secs),
        watched_percent: event.playback.map(|(_, percent)| percent),
        device_type: Some(DeviceType::of(BENCH_USER_AGENT)),
        browser: Some(Browser::of(BENCH_USER_AGENT)),
        // Ingest records each request's id (a UUIDv7 when the client sends none).
        request_id: Some(uuid::Uuid::now_v7().to_string()),
        // Ingest hashes each sender into a visitor id and a sender id (the values matter not,
        // the sizes do).
        visitor_id: Some(0x5eed_0000_0000_0001),
        sender_id: Some(0x5eed_0000_0000_0001),
        ..AdEvent::new(event.kind, event.id, event.ad)
    }
}
