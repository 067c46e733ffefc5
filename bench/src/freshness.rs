//! Freshness: how long after its 202 an event shows in the query API, while a paced background
//! load keeps ingest, JetStream and the aggregator busy.
//!
//! A probe clicks on the probe ad every `--probe-interval-ms`; the k-th probe answered 202 is
//! visible once the API counts k clicks for that ad. Probes are sent one after another and
//! the stream keeps their order, so the k-th click to arrive is the k-th probe.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::Stack;
use schemas::EventKind;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::config::Args;
use crate::load::{single_events, LoadReport, Window};
use crate::stats::{micros, Latency};
use crate::verify::Outcomes;
use crate::workload::{Mix, PROBE_AD};

/// How long after the last probe the bench waits for the stragglers to become visible.
const STRAGGLER_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct FreshnessReport {
    /// The paced background load (its `requests_per_sec` is the achieved rate while probing).
    pub background: LoadReport,
    pub probes_sent: u64,
    pub probes_accepted: u64,
    /// Probes that became visible (the rest did not within a minute after the last).
    pub probes_visible: u64,
    /// From a probe's 202 to the first answer of the query API that counts it.
    pub freshness: Latency,
    pub polls: u64,
    /// Messages the aggregator had not processed (or not acked) when the load stopped: a
    /// backlog that grows through the phase means it cannot keep up at this rate.
    pub backlog_at_end: u64,
    /// The aggregator's mean time per batch in each stage while probing (from its
    /// `aggregator_batch_stage_duration_seconds`), keyed by stage: where freshness goes.
    pub aggregator_stages: BTreeMap<String, StageTime>,
}

/// One stage of the aggregator's batches over the phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTime {
    pub batches: u64,
    pub mean_ms: f64,
}

#[derive(Default)]
struct Probes {
    /// When the k-th accepted probe got its 202.
    accepted_at: Vec<Instant>,
    done: bool,
}

pub async fn run(stack: &Stack, mix: &Mix, args: &Args) -> anyhow::Result<(FreshnessReport, Outcomes)> {
    // Probes start after the warm-up, once the background load runs at its pace.
    let window = Window::starting_now(args.warmup(), Duration::from_secs(args.freshness_secs));
    let background = {
        let (addr, connections, mix, rate) =
            (stack.ingest.addr, args.freshness_connections, mix.clone(), args.freshness_rate as f64);
        tokio::spawn(async move { single_events(addr, connections, &mix, window, Some(rate)).await })
    };
    // With no user agent, every probe would be flagged `missing_user_agent`.
    let http = reqwest::Client::builder().user_agent(crate::http::BENCH_USER_AGENT).build()?;
    let probes = Mutex::new(Probes::default());
    let click_url = stack.ingest.url("/ads/click");
    let poll_url = stack.query.url(&format!("/ads/analytics?ad_id={PROBE_AD}&timeframe=15m"));
    let interval = Duration::from_millis(args.probe_interval_ms);
    tokio::time::sleep_until(window.measure_from.into()).await;
    let stages_before = stack.metrics(&stack.aggregator).await;
    let probing = async {
        let sent = send_probes(&http, &click_url, interval, window.until, &probes).await;
        let (_, pending, unacked) = stack.stream_state().await;
        let stages_after = stack.metrics(&stack.aggregator).await;
        (sent, pending + unacked as u64, stage_times(&stages_before, &stages_after))
    };
    let (((probes_sent, mut outcomes), backlog_at_end, aggregator_stages), seen) =
        tokio::join!(probing, watch_probes(&http, &poll_url, Duration::from_millis(args.poll_interval_ms), &probes));
    let (freshness_us, polls) = seen?;
    let probes_accepted = outcomes.clicks.len() as u64;
    let (background, background_outcomes) = background.await.context("background load task")?;
    outcomes.merge(background_outcomes);
    let report = FreshnessReport {
        background,
        probes_sent,
        probes_accepted,
        probes_visible: freshness_us.len() as u64,
        freshness: Latency::of(freshness_us),
        polls,
        backlog_at_end,
        aggregator_stages,
    };
    Ok((report, outcomes))
}

/// The aggregator's batch stages in pipeline order, the `stage` label of its
/// `aggregator_batch_stage_duration_seconds`.
pub const STAGES: [&str; 5] = ["pull", "lookup", "ivt_lookup", "write", "ack"];

/// Mean time per batch in each stage between two readings of the aggregator's metrics; a stage
/// no batch passed in between is left out.
fn stage_times(before: &str, after: &str) -> BTreeMap<String, StageTime> {
    let read = |text: &str, part: &str, stage: &str| {
        e2e::metric(text, &format!("aggregator_batch_stage_duration_seconds_{part}{{stage=\"{stage}\"}}"))
            .unwrap_or(0.0)
    };
    STAGES
        .into_iter()
        .filter_map(|stage| {
            let batches = read(after, "count", stage) - read(before, "count", stage);
            let seconds = read(after, "sum", stage) - read(before, "sum", stage);
            (batches > 0.0).then(|| {
                (stage.to_owned(), StageTime { batches: batches as u64, mean_ms: seconds * 1_000.0 / batches })
            })
        })
        .collect()
}

/// One probe click per `interval` until `until`, each after the previous one's answer.
async fn send_probes(
    http: &reqwest::Client,
    url: &str,
    interval: Duration,
    until: Instant,
    probes: &Mutex<Probes>,
) -> (u64, Outcomes) {
    let mut outcomes = Outcomes::default();
    let mut sent = 0;
    let mut ticks = tokio::time::interval(interval);
    while Instant::now() < until {
        ticks.tick().await;
        let id = Uuid::new_v4();
        sent += 1;
        let status = match http.post(url).json(&json!({"event_id": id, "ad_id": PROBE_AD})).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        };
        match status {
            202 => {
                lock(probes).accepted_at.push(Instant::now());
                outcomes.stored(EventKind::Click, id);
            }
            0 | 503 => outcomes.uncertain(id),
            _ => {}
        }
    }
    lock(probes).done = true;
    (sent, outcomes)
}

/// Polls while some accepted probe is not visible yet; returns each probe's freshness (µs)
/// and the number of polls.
async fn watch_probes(
    http: &reqwest::Client,
    url: &str,
    interval: Duration,
    probes: &Mutex<Probes>,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let mut freshness_us = Vec::new();
    let mut polls = 0;
    let mut last_probe_at = None;
    loop {
        let (accepted, done) = {
            let probes = lock(probes);
            (probes.accepted_at.len(), probes.done)
        };
        if done {
            let since = *last_probe_at.get_or_insert_with(Instant::now);
            if freshness_us.len() == accepted || since.elapsed() > STRAGGLER_WAIT {
                return Ok((freshness_us, polls));
            }
        }
        if freshness_us.len() < accepted {
            let clicks = probe_clicks(http, url).await?;
            let visible_at = Instant::now();
            polls += 1;
            let probes = lock(probes);
            let visible = usize::try_from(clicks).unwrap_or(usize::MAX).min(probes.accepted_at.len());
            for accepted_at in &probes.accepted_at[freshness_us.len().min(visible)..visible] {
                freshness_us.push(micros(visible_at - *accepted_at));
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// The probe ad's clicks as the query API reports them, billable or not: the probes come from
/// one visitor, without impressions, so the click rules flag them (`invalid_clicks`), and an
/// event is visible as soon as it is counted either way.
async fn probe_clicks(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let response = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("GET {url}: answer is not JSON"))?;
    anyhow::ensure!(status.is_success(), "GET {url}: {status} {body}");
    let count = |field: &Value| {
        field.as_u64().with_context(|| format!("GET {url}: no ads[0].clicks or invalid_clicks.total in {body}"))
    };
    Ok(count(&body["ads"][0]["clicks"])? + count(&body["ads"][0]["invalid_clicks"]["total"])?)
}

fn lock(probes: &Mutex<Probes>) -> std::sync::MutexGuard<'_, Probes> {
    // Nothing panics while holding the lock, so it cannot be poisoned.
    probes.lock().expect("probe state lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_means_come_from_the_histograms_deltas() {
        let text = |pull_sum: f64, pull_count: u64| {
            format!(
                "# TYPE aggregator_batch_stage_duration_seconds histogram\n\
                 aggregator_batch_stage_duration_seconds_bucket{{stage=\"pull\",le=\"0.001\"}} 1\n\
                 aggregator_batch_stage_duration_seconds_sum{{stage=\"pull\"}} {pull_sum}\n\
                 aggregator_batch_stage_duration_seconds_count{{stage=\"pull\"}} {pull_count}\n\
                 aggregator_batch_stage_duration_seconds_sum{{stage=\"write\"}} 0.5\n\
                 aggregator_batch_stage_duration_seconds_count{{stage=\"write\"}} 2\n"
            )
        };
        let before = text(1.0, 10);
        assert_eq!(stage_times("", &before)["pull"], StageTime { batches: 10, mean_ms: 100.0 });
        let times = stage_times(&before, &text(1.6, 13));
        assert_eq!(times.len(), 1, "no batch wrote between the readings: {times:?}");
        assert_eq!(times["pull"].batches, 3);
        assert!((times["pull"].mean_ms - 200.0).abs() < 1e-6, "{times:?}");
    }
}
