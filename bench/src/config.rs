//! The command line: which phases run, for how long and how hard. The defaults are what
//! `make bench` runs (about 12 minutes after the build on 2 cores).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks the whole stack on this machine: starts nats-server, ClickHouse and the \
             release service binaries on loopback, runs the phases, prints a table and writes \
             bench/results/latest.json and latest.md.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: Args,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The throughput ceiling's server: a bare poem endpoint (`POST /ads/click` and
    /// `/ads/impression`) that reads the body and answers 202. The bench starts it itself.
    BareServer {
        #[arg(long)]
        addr: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// A bare poem endpoint under the single-event load: the HTTP ceiling.
    Bare,
    /// Raw JetStream async publish of ingest's payload: the broker ceiling.
    Jetstream,
    /// Single-event ingest, the realistic mix (impressions, clicks, repeats).
    Ingest,
    /// Single-event ingest, clicks only.
    Clicks,
    /// Batch ingest, NDJSON on `POST /ads/events`.
    Batch,
    /// `hey -n 100000 -c 10000 -m POST` on `POST /ads/click`: every request answered in
    /// bounded time, nearly all 202.
    Burst,
    /// Time from a 202 to the event being visible in the query API, under background load.
    Freshness,
    /// `ingest` with the aggregator stopped: ingest, nats-server and the load generator have
    /// the machine, as the ceilings do. The aggregator then writes the backlog, which the
    /// exactly-once check waits for.
    IngestAlone,
    /// `clicks` with the aggregator stopped.
    ClicksAlone,
    /// `batch` with the aggregator stopped.
    BatchAlone,
    /// Query latency over millions of generated events.
    Query,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Args {
    /// Phases to run, comma-separated. The stack and the bench ads are always set up; the
    /// exactly-once check runs after the ingest phases and after freshness, when they run.
    /// They run in this order; the `-alone` ones after freshness, so that freshness reads the
    /// same history in the aggregator's click rules as in runs before them.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bare,jetstream,ingest,clicks,batch,burst,freshness,ingest-alone,clicks-alone,batch-alone,query"
    )]
    pub only: Vec<Phase>,
    /// Bench ads created in ClickHouse (events pick them with Zipf-like popularity).
    #[arg(long, default_value_t = 1000)]
    pub ads: usize,
    /// Measured seconds of each throughput phase (bare, each JetStream window, ingest, clicks, batch).
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// Seconds of load before each throughput phase starts measuring.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// Keep-alive connections of the single-event phases (bare, ingest, clicks), one request at a time each.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Percentage of clicks in the mixed load; the rest are impressions.
    #[arg(long, default_value_t = 10.0)]
    pub click_percent: f64,
    /// Percentage of events that repeat an event already answered 202 (same event_id): a
    /// client retry, which must answer "duplicate" and be counted once.
    #[arg(long, default_value_t = 5.0)]
    pub repeat_percent: f64,
    /// Publishes kept in flight by the raw JetStream ceiling, one measured run per value. The
    /// first is the one ingest is compared with.
    #[arg(long, value_delimiter = ',', default_value = "256,4096")]
    pub jetstream_in_flight: Vec<usize>,
    /// Events per `POST /ads/events` request.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Connections of the batch phase.
    #[arg(long, default_value_t = 4)]
    pub batch_connections: usize,
    /// Connections of the burst phase, all opened at once.
    #[arg(long, default_value_t = 10_000)]
    pub burst_connections: usize,
    /// Requests of the burst phase in all, shared evenly by its connections, each sending its
    /// share one after another.
    #[arg(long, default_value_t = 100_000)]
    pub burst_requests: usize,
    /// Seconds a burst request (connecting included, for a connection's first) may take to be
    /// answered in full before it counts as unanswered: hey's default.
    #[arg(long, default_value_t = 20)]
    pub burst_timeout_secs: u64,
    /// Seconds of the freshness phase.
    #[arg(long, default_value_t = 30)]
    pub freshness_secs: u64,
    /// Background events per second during the freshness phase (open loop, paced).
    #[arg(long, default_value_t = 10_000)]
    pub freshness_rate: u64,
    /// Connections carrying the freshness background load. Each has one request in flight,
    /// so it carries at most 1 / latency requests per second: 64 connections at ingest's
    /// ~10 ms under load stopped near 6,000 events/s, short of the rate asked for.
    #[arg(long, default_value_t = 256)]
    pub freshness_connections: usize,
    /// Milliseconds between freshness probes (each a click for the probe ad).
    #[arg(long, default_value_t = 100)]
    pub probe_interval_ms: u64,
    /// Milliseconds between polls of the query service for the probe ad's clicks.
    #[arg(long, default_value_t = 10)]
    pub poll_interval_ms: u64,
    /// Impressions generated straight into ClickHouse for the query phase (last 30 days).
    #[arg(long, default_value_t = 9_000_000)]
    pub query_impressions: u64,
    /// Clicks generated straight into ClickHouse for the query phase (last 30 days).
    #[arg(long, default_value_t = 1_000_000)]
    pub query_clicks: u64,
    /// Distinct visitors (client IP + user agent) of the generated events.
    #[arg(long, default_value_t = 1_000_000)]
    pub query_visitors: u64,
    /// Rows per generating `INSERT ... SELECT`.
    #[arg(long, default_value_t = 1_000_000)]
    pub insert_chunk_rows: u64,
    /// Measured requests per query case, after the warm-up.
    #[arg(long, default_value_t = 200)]
    pub query_requests: usize,
    /// Unmeasured requests before each query case.
    #[arg(long, default_value_t = 10)]
    pub query_warmup: usize,
    /// Events per second sent (single events, the phase mix) while the query cases run, so that
    /// the aggregator keeps writing and the query service keeps dropping cached answers; 0: none.
    #[arg(long, default_value_t = 2_000)]
    pub query_background_rate: u64,
    /// A query case stops measuring after this many seconds, even short of --query-requests.
    #[arg(long, default_value_t = 60)]
    pub query_case_max_secs: u64,
    /// Run the aggregator's invalid-traffic click rules (duplicate_click,
    /// click_without_impression), as deployed; `false` measures the pipeline without their
    /// history lookups.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub click_rules: bool,
    /// Seconds the aggregator may take to drain the stream before the bench fails.
    #[arg(long, default_value_t = 600)]
    pub drain_timeout_secs: u64,
    /// Where latest.json, latest.md and the timestamped JSON copy go [default: <workspace>/bench/results].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

impl Phase {
    /// As on the command line (`ingest-alone`); also the phase's name in the usage tables.
    pub fn name(self) -> String {
        self.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default()
    }
}

impl Args {
    pub fn validate(&self) -> Result<(), String> {
        for (name, percent) in [("--click-percent", self.click_percent), ("--repeat-percent", self.repeat_percent)] {
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!("{name} must be between 0 and 100"));
            }
        }
        // Bench ad ids carry the index in 12 decimal digits.
        if !(1..=1_000_000).contains(&self.ads) {
            return Err("--ads must be between 1 and 1,000,000".into());
        }
        let positive = [
            ("--duration-secs", self.duration_secs as usize),
            ("--connections", self.connections),
            ("--batch-size", self.batch_size),
            ("--batch-connections", self.batch_connections),
            ("--burst-connections", self.burst_connections),
            ("--burst-timeout-secs", self.burst_timeout_secs as usize),
            ("--freshness-secs", self.freshness_secs as usize),
            ("--freshness-rate", self.freshness_rate as usize),
            ("--freshness-connections", self.freshness_connections),
            ("--probe-interval-ms", self.probe_interval_ms as usize),
            ("--poll-interval-ms", self.poll_interval_ms as usize),
            ("--query-visitors", self.query_visitors as usize),
            ("--insert-chunk-rows", self.insert_chunk_rows as usize),
            ("--query-requests", self.query_requests),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.burst_requests < self.burst_connections {
            return Err(
                "--burst-requests must be at least --burst-connections: each connection sends one or more".into()
            );
        }
        if self.jetstream_in_flight.contains(&0) {
            return Err("--jetstream-in-flight values must be at least 1".into());
        }
        Ok(())
    }

    pub fn runs(&self, phase: Phase) -> bool {
        self.only.contains(&phase)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup_secs)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    pub fn burst_timeout(&self) -> Duration {
        Duration::from_secs(self.burst_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(options: &[&str]) -> Result<(), String> {
        Cli::try_parse_from([&["bench"], options].concat()).map_err(|error| error.to_string())?.args.validate()
    }

    #[test]
    fn the_burst_is_hey_s_by_default() {
        let args = Cli::try_parse_from(["bench"]).unwrap().args;
        assert_eq!((args.burst_connections, args.burst_requests, args.burst_timeout_secs), (10_000, 100_000, 20));
        assert!(args.runs(Phase::Burst));
        assert_eq!(Phase::Burst.name(), "burst");
        assert!(validate(&["--only", "burst"]).is_ok());
    }

    #[test]
    fn burst_options_are_validated() {
        assert!(validate(&["--burst-connections", "0"]).unwrap_err().contains("--burst-connections"));
        assert!(validate(&["--burst-timeout-secs", "0"]).unwrap_err().contains("--burst-timeout-secs"));
        let fewer_requests = validate(&["--burst-connections", "10", "--burst-requests", "9"]).unwrap_err();
        assert!(fewer_requests.contains("--burst-requests"), "{fewer_requests}");
        assert!(validate(&["--burst-connections", "10", "--burst-requests", "10"]).is_ok());
    }
}
