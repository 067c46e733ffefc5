//! HTTP load: N keep-alive connections, each its own task doing request → answer in a loop
//! (closed loop), or sending on a fixed timetable (open loop, paced). A warm-up comes first;
//! only requests started inside the measured window count for latency and throughput, while
//! every answer counts for statuses and for what must end up in ClickHouse.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::MissedTickBehavior;

use crate::http::Connection;
use crate::stats::{micros, Latency};
use crate::verify::Outcomes;
use crate::workload::{Event, Mix, Source};

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// The phase's clock: warm-up until `measure_from`, measured until `until`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub until: Instant,
}

impl Window {
    pub fn starting_now(warmup: Duration, measured: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Self { measure_from, until: measure_from + measured }
    }

    pub fn measures(&self, started: Instant) -> bool {
        started >= self.measure_from && started < self.until
    }

    pub fn measured_secs(&self) -> f64 {
        (self.until - self.measure_from).as_secs_f64()
    }
}

/// What single-event traffic did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub connections: usize,
    pub measured_secs: f64,
    /// Requests started in the measured window, and their rate.
    pub requests: u64,
    pub requests_per_sec: f64,
    /// For a paced load: the rate asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_per_sec: Option<f64>,
    pub latency: Latency,
    /// Every answer by HTTP status, warm-up included (0: no answer).
    pub http_statuses: BTreeMap<u16, u64>,
    /// The `status` of the 202 answers: accepted or duplicate.
    pub answers: BTreeMap<String, u64>,
    /// Repeats of an event already answered 202, and how many were answered "duplicate".
    pub repeats_sent: u64,
    pub repeats_answered_duplicate: u64,
    /// New events answered "duplicate": should be none.
    pub new_events_answered_duplicate: u64,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    answers: BTreeMap<String, u64>,
    repeats_sent: u64,
    repeats_duplicate: u64,
    new_duplicate: u64,
    outcomes: Outcomes,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (answer, n) in other.answers {
            *self.answers.entry(answer).or_default() += n;
        }
        self.repeats_sent += other.repeats_sent;
        self.repeats_duplicate += other.repeats_duplicate;
        self.new_duplicate += other.new_duplicate;
        self.outcomes.merge(other.outcomes);
    }
}

#[derive(Deserialize)]
struct Ack {
    status: String,
}

/// Closed loop when `rate` is `None`; else `rate` events per second in all, spread evenly
/// over the connections and sent on schedule whether or not earlier answers are back (a
/// connection that falls behind catches up back to back).
pub async fn single_events(
    addr: SocketAddr,
    connections: usize,
    mix: &Mix,
    window: Window,
    rate: Option<f64>,
) -> (LoadReport, Outcomes) {
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let pace = rate.map(|rate| {
                let period = Duration::from_secs_f64(connections as f64 / rate);
                // Staggered, so that the connections do not send in lockstep.
                (Instant::now() + period.mul_f64(i as f64 / connections as f64), period)
            });
            tokio::spawn(single_connection(addr, Source::new(mix.clone()), window, pace))
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        // A load task only panics on a bug; then the bench should stop loudly.
        tally.merge(task.await.expect("load connection task"));
    }
    let requests = tally.latencies_us.len() as u64;
    let report = LoadReport {
        connections,
        measured_secs: window.measured_secs(),
        requests,
        requests_per_sec: requests as f64 / window.measured_secs(),
        target_per_sec: rate,
        latency: Latency::of(tally.latencies_us),
        http_statuses: tally.statuses,
        answers: tally.answers,
        repeats_sent: tally.repeats_sent,
        repeats_answered_duplicate: tally.repeats_duplicate,
        new_events_answered_duplicate: tally.new_duplicate,
    };
    (report, tally.outcomes)
}

async fn single_connection(
    addr: SocketAddr,
    mut source: Source,
    window: Window,
    pace: Option<(Instant, Duration)>,
) -> Tally {
    let mut connection = Connection::new(addr);
    let mut tally = Tally::default();
    let mut ticks = pace.map(|(start, period)| {
        let mut ticks = tokio::time::interval_at(start.into(), period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        ticks
    });
    loop {
        if let Some(ticks) = &mut ticks {
            ticks.tick().await;
        }
        let started = Instant::now();
        if started >= window.until {
            return tally;
        }
        let (event, repeat) = source.next_event();
        let result = connection.post(event.path(), JSON, &event.user_agent(), event.body()).await;
        if window.measures(started) {
            tally.latencies_us.push(micros(started.elapsed()));
        }
        tally.repeats_sent += u64::from(repeat);
        let status = result.as_ref().map_or(0, |(status, _)| *status);
        *tally.statuses.entry(status).or_default() += 1;
        match result {
            Ok((202, body)) => {
                let answer =
                    serde_json::from_slice::<Ack>(&body).map_or_else(|_| "unreadable".to_owned(), |ack| ack.status);
                if answer == "duplicate" {
                    tally.repeats_duplicate += u64::from(repeat);
                    tally.new_duplicate += u64::from(!repeat);
                }
                *tally.answers.entry(answer).or_default() += 1;
                tally.outcomes.stored(event.kind, event.id);
                source.accepted(&event);
            }
            Ok((503, _)) => tally.outcomes.uncertain(event.id),
            Ok(_) => {}
            Err(_) => {
                tally.outcomes.uncertain(event.id);
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// What batch traffic did.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub connections: usize,
    pub batch_size: usize,
    pub measured_secs: f64,
    /// Requests started in the measured window, and their rate.
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Items of measured requests answered 202 or 207, per second.
    pub events_per_sec: f64,
    pub latency: Latency,
    /// Every answer by HTTP status, warm-up included (0: no answer).
    pub http_statuses: BTreeMap<u16, u64>,
    /// Every item by its `status` in the answer, warm-up included.
    pub item_statuses: BTreeMap<String, u64>,
    /// Answers whose `results` did not match the items sent.
    pub unreadable_answers: u64,
}

#[derive(Default)]
struct BatchTally {
    latencies_us: Vec<u64>,
    measured_events: u64,
    statuses: BTreeMap<u16, u64>,
    items: BTreeMap<String, u64>,
    unreadable: u64,
    outcomes: Outcomes,
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<Ack>,
}

/// `connections` closed loops of `POST /ads/events`, `batch_size` NDJSON items each.
pub async fn batches(
    addr: SocketAddr,
    connections: usize,
    batch_size: usize,
    mix: &Mix,
    window: Window,
) -> (BatchReport, Outcomes) {
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(batch_connection(addr, Source::new(mix.clone()), batch_size, window)))
        .collect();
    let mut all = BatchTally::default();
    for task in tasks {
        let tally = task.await.expect("batch connection task");
        all.latencies_us.extend(tally.latencies_us);
        all.measured_events += tally.measured_events;
        for (status, n) in tally.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
        for (item, n) in tally.items {
            *all.items.entry(item).or_default() += n;
        }
        all.unreadable += tally.unreadable;
        all.outcomes.merge(tally.outcomes);
    }
    let requests = all.latencies_us.len() as u64;
    let report = BatchReport {
        connections,
        batch_size,
        measured_secs: window.measured_secs(),
        requests,
        requests_per_sec: requests as f64 / window.measured_secs(),
        events_per_sec: all.measured_events as f64 / window.measured_secs(),
        latency: Latency::of(all.latencies_us),
        http_statuses: all.statuses,
        item_statuses: all.items,
        unreadable_answers: all.unreadable,
    };
    (report, all.outcomes)
}

async fn batch_connection(addr: SocketAddr, mut source: Source, batch_size: usize, window: Window) -> BatchTally {
    let mut connection = Connection::new(addr);
    let mut tally = BatchTally::default();
    loop {
        let started = Instant::now();
        if started >= window.until {
            return tally;
        }
        let events: Vec<Event> = (0..batch_size).map(|_| source.next_event().0).collect();
        let mut body = String::with_capacity(batch_size * 160);
        for event in &events {
            event.push_batch_line(&mut body);
        }
        // One request, one visitor: a batch's events all get its user agent.
        let user_agent = events.first().map(Event::user_agent).unwrap_or_default();
        let result = connection.post("/ads/events", NDJSON, &user_agent, Bytes::from(body)).await;
        let measured = window.measures(started);
        if measured {
            tally.latencies_us.push(micros(started.elapsed()));
        }
        let status = result.as_ref().map_or(0, |(status, _)| *status);
        *tally.statuses.entry(status).or_default() += 1;
        match result {
            Ok((202 | 207, body)) => match serde_json::from_slice::<BatchAnswer>(&body) {
                Ok(answer) if answer.results.len() == events.len() => {
                    if measured {
                        tally.measured_events += events.len() as u64;
                    }
                    for (event, item) in events.iter().zip(answer.results) {
                        match item.status.as_str() {
                            "accepted" | "duplicate" => {
                                tally.outcomes.stored(event.kind, event.id);
                                source.accepted(event);
                            }
                            "unavailable" => tally.outcomes.uncertain(event.id),
                            _ => {}
                        }
                        *tally.items.entry(item.status).or_default() += 1;
                    }
                }
                _ => {
                    tally.unreadable += 1;
                    events.iter().for_each(|event| tally.outcomes.uncertain(event.id));
                }
            },
            Ok((503, _)) | Err(_) => events.iter().for_each(|event| tally.outcomes.uncertain(event.id)),
            Ok(_) => {}
        }
    }
}
