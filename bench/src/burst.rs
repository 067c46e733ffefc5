//! The burst: `hey -n 100000 -c 10000 -m POST` on `POST /ads/click`, as in the issue "First
//! contact". Every connection opens at once and sends its share of the requests one after
//! another, all with one body (one ad, no `event_id`, so ingest names each event) and one
//! browser user agent. The targets: every request answered within the timeout (a 202, or a
//! fast 503/429 with `Retry-After` when ingest is overloaded), and at least 99 % answered 202.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use schemas::EventKind;
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::config::Args;
use crate::http::Connection;
use crate::stats::{micros, Latency};
use crate::verify::Outcomes;

/// A current desktop browser's: a bot's would only measure ingest's bot rule.
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// What the issue counts as a quick answer.
const QUICK: Duration = Duration::from_secs(1);

/// The least share of requests to be answered 202.
pub const MIN_ACCEPTED_SHARE: f64 = 0.99;

/// Files the bench holds beside the burst's connections: its children's pipes, its NATS and
/// ClickHouse clients, the usage sampler's reads of /proc, and sockets of dropped connections
/// still closing.
const OTHER_FILES: u64 = 1024;

#[derive(Debug, Clone, Serialize)]
pub struct BurstReport {
    pub connections: usize,
    pub requests: usize,
    pub timeout_secs: u64,
    /// The body and user agent of every request.
    pub body: String,
    pub user_agent: &'static str,
    /// From the moment every connection was set to go until the last request ended.
    pub duration_secs: f64,
    /// Every request by the status of its answer; 0: no complete answer within the timeout,
    /// or the connection failed.
    pub http_statuses: BTreeMap<u16, u64>,
    /// Of the answered requests (any status): from sending, connecting included when the
    /// request opened its connection, to having read the whole answer.
    pub latency: Latency,
    /// Of all requests: the share answered (any status) within 1 s.
    pub answered_within_1s: f64,
    /// Of all requests: the share answered 202.
    pub answered_202: f64,
    /// 202 answers without a readable `event_id`: the exactly-once check cannot name them.
    pub accepted_without_event_id: u64,
    /// 202 answers naming an `event_id` that an earlier 202 named: every request was a new
    /// event, so there should be none.
    pub accepted_ids_repeated: u64,
    pub targets: BurstTargets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BurstTargets {
    /// Every request got a complete answer within the timeout.
    pub none_unanswered: bool,
    /// At least [`MIN_ACCEPTED_SHARE`] of the requests were answered 202.
    pub enough_accepted: bool,
}

/// What a burst sends.
struct Plan {
    connections: usize,
    requests: usize,
    timeout: Duration,
    body: String,
}

impl Plan {
    fn of(args: &Args, ad: Uuid) -> Self {
        Self {
            connections: args.burst_connections,
            requests: args.burst_requests,
            timeout: args.burst_timeout(),
            body: format!(r#"{{"ad_id":"{ad}"}}"#),
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Answer {
    /// 0: unanswered.
    status: u16,
    latency: Duration,
    /// From the answer's body: the event a 202 stored, or the one a 503 may have stored.
    event_id: Option<Uuid>,
}

#[derive(Deserialize)]
struct NamedEvent {
    event_id: Option<Uuid>,
}

/// Runs the burst against ingest at `addr`, clicking `ad`; `open_files` is the bench's
/// open-file limit. Returns the report and what the answers said about each event.
pub async fn run(addr: SocketAddr, ad: Uuid, args: &Args, open_files: u64) -> anyhow::Result<(BurstReport, Outcomes)> {
    let plan = Plan::of(args, ad);
    let connections = plan.connections;
    anyhow::ensure!(
        open_files >= connections as u64 + OTHER_FILES,
        "the bench may open {open_files} files (RLIMIT_NOFILE, its soft limit raised to the hard one), too few for \
         {connections} connections and {OTHER_FILES} other files: raise the hard limit (ulimit -Hn) or lower --burst-connections"
    );
    let body = Bytes::from(plan.body.clone());
    // Every task waits here once spawned, so that the connections open together.
    let start = Arc::new(Barrier::new(connections + 1));
    let tasks: Vec<_> = (0..connections)
        .map(|index| {
            let requests = requests_of(index, connections, plan.requests);
            tokio::spawn(connection(addr, requests, plan.timeout, body.clone(), start.clone()))
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut answers = Vec::with_capacity(plan.requests);
    for task in tasks {
        // A connection task only panics on a bug; then the bench should stop loudly.
        answers.extend(task.await.expect("burst connection task"));
    }
    let duration = started.elapsed();
    Ok(summarize(plan, &answers, duration))
}

/// The requests connection `index` of `connections` sends: an even share, the first ones one
/// more when they do not divide evenly.
fn requests_of(index: usize, connections: usize, requests: usize) -> usize {
    requests / connections + usize::from(index < requests % connections)
}

/// One connection, as one of hey's workers: its requests one after another, reconnecting
/// after an error, a timeout or an answer with `connection: close`.
async fn connection(
    addr: SocketAddr,
    requests: usize,
    timeout: Duration,
    body: Bytes,
    start: Arc<Barrier>,
) -> Vec<Answer> {
    let mut connection = Connection::with_timeout(addr, timeout);
    let mut answers = Vec::with_capacity(requests);
    start.wait().await;
    for _ in 0..requests {
        let sent = Instant::now();
        let result = connection.post("/ads/click", "application/json", USER_AGENT, body.clone()).await;
        let latency = sent.elapsed();
        answers.push(match result {
            Ok((status, body)) => {
                let event_id = serde_json::from_slice::<NamedEvent>(&body).ok().and_then(|named| named.event_id);
                Answer { status, latency, event_id }
            }
            Err(_) => Answer { status: 0, latency, event_id: None },
        });
    }
    answers
}

/// The report and the events' outcomes: a 202 stored its event;
/// a 503 naming an event may have stored it (one that names none published nothing); an
/// unanswered request may have stored an event whose id the bench never learned.
fn summarize(plan: Plan, answers: &[Answer], duration: Duration) -> (BurstReport, Outcomes) {
    let mut http_statuses = BTreeMap::new();
    let mut outcomes = Outcomes::default();
    let mut accepted_ids = HashSet::new();
    let (mut accepted_without_event_id, mut accepted_ids_repeated) = (0, 0);
    for answer in answers {
        *http_statuses.entry(answer.status).or_default() += 1;
        match (answer.status, answer.event_id) {
            (202, Some(id)) => {
                outcomes.stored(EventKind::Click, id);
                accepted_ids_repeated += u64::from(!accepted_ids.insert(id));
            }
            (202, None) => {
                accepted_without_event_id += 1;
                outcomes.uncertain_unnamed();
            }
            (503, Some(id)) => outcomes.uncertain(id),
            (0, _) => outcomes.uncertain_unnamed(),
            _ => {}
        }
    }
    let answered: Vec<&Answer> = answers.iter().filter(|answer| answer.status != 0).collect();
    let share = |count: usize| if answers.is_empty() { 0.0 } else { count as f64 / answers.len() as f64 };
    let answered_202 = share(http_statuses.get(&202).copied().unwrap_or(0) as usize);
    let report = BurstReport {
        connections: plan.connections,
        requests: answers.len(),
        timeout_secs: plan.timeout.as_secs(),
        body: plan.body,
        user_agent: USER_AGENT,
        duration_secs: duration.as_secs_f64(),
        latency: Latency::of(answered.iter().map(|answer| micros(answer.latency)).collect()),
        answered_within_1s: share(answered.iter().filter(|answer| answer.latency <= QUICK).count()),
        answered_202,
        accepted_without_event_id,
        accepted_ids_repeated,
        targets: BurstTargets {
            none_unanswered: !http_statuses.contains_key(&0),
            enough_accepted: answered_202 >= MIN_ACCEPTED_SHARE,
        },
        http_statuses,
    };
    (report, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_shared_evenly_and_all_sent() {
        assert!((0..10_000).all(|index| requests_of(index, 10_000, 100_000) == 10));
        let shares: Vec<usize> = (0..4).map(|index| requests_of(index, 4, 10)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_eq!((0..7).map(|index| requests_of(index, 7, 1_000_003)).sum::<usize>(), 1_000_003);
    }

    fn plan(connections: usize, requests: usize) -> Plan {
        Plan { connections, requests, timeout: Duration::from_secs(20), body: r#"{"ad_id":"x"}"#.into() }
    }

    fn answer(status: u16, latency_ms: u64, event_id: Option<Uuid>) -> Answer {
        Answer { status, latency: Duration::from_millis(latency_ms), event_id }
    }

    #[test]
    fn answers_become_shares_targets_and_outcomes() {
        let ids: Vec<Uuid> = (1..=4).map(Uuid::from_u128).collect();
        let answers = [
            answer(202, 10, Some(ids[0])),
            answer(202, 1_000, Some(ids[1])),
            answer(202, 1_001, Some(ids[2])),
            answer(202, 20, None),
            answer(503, 2, Some(ids[3])),
            answer(503, 3, None),
            answer(429, 4, None),
            answer(0, 20_000, None),
        ];
        let (report, outcomes) = summarize(plan(2, 8), &answers, Duration::from_secs(3));
        assert_eq!(report.http_statuses, BTreeMap::from([(0, 1), (202, 4), (429, 1), (503, 2)]));
        assert_eq!(report.requests, 8);
        assert_eq!(report.latency.samples, 7, "the unanswered request has no latency");
        assert_eq!(report.latency.max_us, 1_001_000);
        // 1 s exactly is within; 1.001 s and the unanswered one are not.
        assert_eq!(report.answered_within_1s, 6.0 / 8.0);
        assert_eq!(report.answered_202, 4.0 / 8.0);
        assert_eq!(report.targets, BurstTargets { none_unanswered: false, enough_accepted: false });
        assert_eq!(report.accepted_without_event_id, 1);
        assert_eq!(outcomes.clicks, ids[..3].iter().copied().collect());
        assert!(outcomes.impressions.is_empty());
        // The 503 that named its event may have stored it; the one that named none did not.
        assert_eq!(outcomes.uncertain, HashSet::from([ids[3]]));
        // The unanswered request, and the 202 that did not say which event it stored.
        assert_eq!(outcomes.uncertain_unnamed, 2);
    }

    #[test]
    fn targets_hold_with_every_request_answered_and_99_percent_accepted() {
        let mut answers: Vec<Answer> = (0..99).map(|i| answer(202, 5, Some(Uuid::from_u128(i)))).collect();
        answers.push(answer(503, 1, None));
        let (report, _) = summarize(plan(10, 100), &answers, Duration::from_secs(1));
        assert_eq!(report.targets, BurstTargets { none_unanswered: true, enough_accepted: true });
        assert_eq!(report.answered_within_1s, 1.0);
        answers[0] = answer(503, 1, None);
        let (report, _) = summarize(plan(10, 100), &answers, Duration::from_secs(1));
        assert_eq!(report.targets, BurstTargets { none_unanswered: true, enough_accepted: false });
    }

    #[test]
    fn a_repeated_event_id_is_reported() {
        let id = Uuid::from_u128(7);
        let (report, outcomes) =
            summarize(plan(1, 2), &[answer(202, 1, Some(id)), answer(202, 1, Some(id))], Duration::from_secs(1));
        assert_eq!(report.accepted_ids_repeated, 1);
        assert_eq!(outcomes.clicks.len(), 1);
    }
}
