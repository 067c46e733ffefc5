//! `bench`: one command that measures the whole stack on this machine. It starts nats-server,
//! ClickHouse and the three release service binaries through the e2e harness, runs the phases
//! (see README.md), checks that every accepted event was stored exactly once, and writes the
//! figures as JSON and Markdown.

mod ads;
mod bare;
mod burst;
mod config;
mod freshness;
mod http;
mod jetstream;
mod load;
mod query;
mod report;
mod stats;
mod usage;
mod verify;
mod workload;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use e2e::{Stack, StackOptions};
use time::OffsetDateTime;

use crate::config::{Args, Cli, Command, Phase};
use crate::load::{BatchReport, LoadReport, Window};
use crate::report::{Machine, Ratios, Report};
use crate::usage::Sampler;
use crate::verify::{Outcomes, Verification};
use crate::workload::Mix;

/// The query cache TTL default, restated over the harness's test value. Everything else runs
/// with its defaults, the aggregator too (not the harness's test shortcuts): figures are those
/// of a deployment.
const QUERY_ENV: &[(&str, &str)] = &[("CACHE_TTL_MS", "250")];

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::BareServer { addr }) => {
            bare::serve(addr).await?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            cli.args.validate().map_err(anyhow::Error::msg)?;
            run(cli.args).await
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let open_files = service_kit::limits::raise_open_file_limit();
    let started_at = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let clock = Instant::now();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    eprintln!("bench: starting nats-server, ClickHouse and the services");
    let stack = Stack::start_with(StackOptions {
        // As deployed: the defaults' batch sizes and waits, and the invalid-traffic click rules
        // on (the workload's visitors click what they were shown) unless --click-rules false.
        aggregator_defaults: true,
        aggregator_env: if args.click_rules {
            Vec::new()
        } else {
            vec![("IVT_DUPLICATE_CLICK_WINDOW_SECS", "0"), ("IVT_CLICK_IMPRESSION_WINDOW_SECS", "0")]
        },
        query_env: QUERY_ENV.to_vec(),
        ..StackOptions::default()
    })
    .await;
    eprintln!("bench: stack data in {}", stack.dir.display());
    let pids = [
        ("ingest", stack.ingest.pid()),
        ("aggregator", stack.aggregator.pid()),
        ("query", stack.query.pid()),
        ("nats-server", stack.nats.pid()),
        // The stack's ClickHouse is the shared one (none to sample when CLICKHOUSE_URL names another).
        ("clickhouse", e2e::ClickHouse::shared().await.pid()),
        ("bench (load generator)", Some(std::process::id())),
    ];
    let pids: Vec<(&str, u32)> = pids.into_iter().filter_map(|(name, pid)| pid.map(|pid| (name, pid))).collect();
    let mut bench = Bench {
        usage: Sampler::start(&pids, stack.aggregator.url("/metrics")),
        stack,
        outcomes: Outcomes::default(),
        exactly_once: Vec::new(),
        failures: Vec::new(),
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
    };
    let ads = ads::create(&bench.stack, args.ads).await?;
    let last_ad = *ads.last().context("at least one bench ad")?;
    ads::wait_until_ingest_knows(&bench.stack, last_ad, &mut bench.outcomes).await?;
    let mix =
        Mix { ads: Arc::new(ads), click_share: args.click_percent / 100.0, repeat_share: args.repeat_percent / 100.0 };
    let window = || Window::starting_now(args.warmup(), args.duration());

    let mut bare = None;
    if args.runs(Phase::Bare) {
        bench.phase("bare");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], e2e::free_port()));
        match bare::start(addr).await {
            Ok(server) => {
                if let Some(pid) = server.id() {
                    bench.usage.track("bare-server", pid);
                }
                bare = Some(load::single_events(addr, args.connections, &mix, window(), None).await.0);
            }
            Err(error) => bench.fail("bare", error),
        }
    }

    let mut jetstream = Vec::new();
    if args.runs(Phase::Jetstream) {
        bench.phase("jetstream");
        // Every message a new event, as ingest publishes them.
        let fresh = Mix { repeat_share: 0.0, ..mix.clone() };
        let stream = schemas::stream::DEFAULT_STREAM;
        match jetstream::run(
            bench.stack.nats_admin().await,
            stream,
            &fresh,
            &args.jetstream_in_flight,
            args.warmup(),
            args.duration(),
        )
        .await
        {
            Ok(reports) => jetstream = reports,
            Err(error) => bench.fail("jetstream", error),
        }
    }

    let only_clicks = Mix { click_share: 1.0, ..mix.clone() };
    let ingest = bench.single_events(Phase::Ingest, "ingest (mix)", &mix, &args).await;
    let clicks = bench.single_events(Phase::Clicks, "ingest (clicks only)", &only_clicks, &args).await;
    let (batch, batch_skipped) = bench.batches(Phase::Batch, &mix, &args).await;

    let mut burst = None;
    if args.runs(Phase::Burst) {
        bench.phase("burst");
        // The most popular bench ad: one ad, as hey's one fixed body has.
        match burst::run(bench.stack.ingest.addr, mix.ads[0], &args, open_files).await {
            Ok((report, accepted)) => {
                bench.outcomes.merge(accepted);
                burst = Some(report);
            }
            Err(error) => bench.fail("burst", error),
        }
        bench.check_exactly_once("burst").await;
    }

    let mut freshness = None;
    if args.runs(Phase::Freshness) {
        bench.phase("freshness");
        match freshness::run(&bench.stack, &mix, &args).await {
            Ok((report, accepted)) => {
                bench.outcomes.merge(accepted);
                freshness = Some(report);
            }
            Err(error) => bench.fail("freshness", error),
        }
        bench.check_exactly_once("freshness").await;
    }

    // Ingest once more with the aggregator stopped, as the ceilings ran: what ingest itself
    // does, without ClickHouse writing the events on the same cores.
    let ingest_alone = bench.single_events(Phase::IngestAlone, "ingest alone (mix)", &mix, &args).await;
    let clicks_alone = bench.single_events(Phase::ClicksAlone, "ingest alone (clicks only)", &only_clicks, &args).await;
    let (batch_alone, _) = bench.batches(Phase::BatchAlone, &mix, &args).await;

    let mut query = None;
    if args.runs(Phase::Query) {
        bench.phase("query data");
        let measured = match query::generate(&bench.stack, &args).await {
            Ok(insert_secs) => {
                bench.phase("query");
                query::measure(&bench.stack, &mix, &args, insert_secs).await
            }
            Err(error) => Err(error),
        };
        match measured {
            Ok(report) => query = Some(report),
            Err(error) => bench.fail("query", error),
        }
    }

    let clickhouse = bench.stack.sql("SELECT version()").await.unwrap_or_else(|error| format!("unknown ({error})"));
    let service_env = BTreeMap::from([("query", QUERY_ENV.iter().copied().collect())]);
    let usage = bench.usage.finish();
    let ratios = Ratios::of(bare.as_ref(), jetstream.first(), [&ingest, &clicks, &ingest_alone, &clicks_alone]);
    let report = Report {
        ok: bench.failures.is_empty(),
        failures: bench.failures,
        started_at: started_at.format(&time::format_description::well_known::Rfc3339)?,
        total_secs: clock.elapsed().as_secs_f64(),
        command_line,
        machine: Machine::describe(clickhouse),
        args: args.clone(),
        service_env,
        bare,
        jetstream,
        ingest,
        clicks,
        batch,
        batch_skipped,
        burst,
        ingest_alone,
        clicks_alone,
        batch_alone,
        ratios,
        exactly_once: bench.exactly_once,
        freshness,
        query,
        processes: usage.processes,
        machine_cpu_cores: usage.machine_cpu_cores,
        events_inserted: usage.events_inserted,
        cpu_us_per_event: usage.cpu_us_per_event,
    };
    let tables = report::tables(&report);
    let dir = args.out_dir.clone().unwrap_or_else(|| e2e::workspace_root().join("bench/results"));
    let stamp =
        started_at.format(time::macros::format_description!("[year]-[month]-[day]T[hour]-[minute]-[second]Z"))?;
    report::write(&report, &report::render_markdown(&tables), &dir, &stamp)?;
    print!("{}", report::render_text(&tables));
    println!("\nWritten: {0}/latest.json, {0}/{stamp}.json, {0}/latest.md", dir.display());
    if report.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench: FAILED:\n  {}", report.failures.join("\n  "));
        Ok(ExitCode::FAILURE)
    }
}

/// What the phases share: the stack, the usage sampler, what clients were told, and what
/// went wrong so far (a failed phase is recorded and the others still run).
struct Bench {
    stack: Stack,
    usage: Sampler,
    outcomes: Outcomes,
    exactly_once: Vec<Verification>,
    failures: Vec<String>,
    drain_timeout: Duration,
}

impl Bench {
    fn phase(&self, phase: &str) {
        eprintln!("bench: phase {phase}");
        self.usage.phase(phase);
    }

    fn fail(&mut self, phase: &str, error: anyhow::Error) {
        eprintln!("bench: {phase} FAILED: {error:#}");
        self.failures.push(format!("{phase}: {error:#}"));
    }

    /// Waits for the aggregator to drain the stream, then checks ClickHouse against every
    /// answer so far. Run after each ingest phase, so that the next one starts on an idle
    /// pipeline and the drain time shows how far the aggregator fell behind.
    async fn check_exactly_once(&mut self, after: &str) {
        self.phase("verify");
        match verify::drain_and_check(&self.stack, &self.outcomes, after, self.drain_timeout).await {
            Ok(check) if check.ok => self.exactly_once.push(check),
            Ok(check) => {
                let error = anyhow::anyhow!("ClickHouse does not hold exactly the accepted events: {check:?}");
                self.exactly_once.push(check);
                self.fail(&format!("exactly-once check after {after}"), error);
            }
            Err(error) => self.fail(&format!("exactly-once check after {after}"), error),
        }
    }
}

impl Bench {
    /// A single-event phase (`Ingest`, `Clicks` or one of their `-alone` twins), then the
    /// exactly-once check; `None` when the phase is not asked for.
    async fn single_events(&mut self, phase: Phase, name: &str, mix: &Mix, args: &Args) -> Option<LoadReport> {
        if !args.runs(phase) {
            return None;
        }
        let alone = self.begin(phase);
        let window = Window::starting_now(args.warmup(), args.duration());
        let (report, accepted) = load::single_events(self.stack.ingest.addr, args.connections, mix, window, None).await;
        self.outcomes.merge(accepted);
        self.end(alone, name).await;
        Some(report)
    }

    /// A batch phase (`Batch` or `BatchAlone`): its report, or why it was skipped.
    async fn batches(&mut self, phase: Phase, mix: &Mix, args: &Args) -> (Option<BatchReport>, Option<String>) {
        if !args.runs(phase) {
            return (None, None);
        }
        let addr = self.stack.ingest.addr;
        match batch_endpoint_missing(addr).await {
            Ok(Some(reason)) => (None, Some(reason)),
            Ok(None) => {
                let alone = self.begin(phase);
                let window = Window::starting_now(args.warmup(), args.duration());
                let (report, accepted) =
                    load::batches(addr, args.batch_connections, args.batch_size, mix, window).await;
                self.outcomes.merge(accepted);
                self.end(alone, if alone { "ingest alone (batches)" } else { "ingest (batches)" }).await;
                (Some(report), None)
            }
            Err(error) => {
                self.fail(&phase.name(), error);
                (None, None)
            }
        }
    }

    /// Starts a throughput phase; for an `-alone` one, stops the aggregator first (SIGTERM: it
    /// writes and acks the batch in hand). Returns whether it did.
    fn begin(&mut self, phase: Phase) -> bool {
        let alone = matches!(phase, Phase::IngestAlone | Phase::ClicksAlone | Phase::BatchAlone);
        if alone {
            let status = self.stack.aggregator.terminate();
            if !status.success() {
                self.fail(&phase.name(), anyhow::anyhow!("the aggregator did not stop cleanly: {status}"));
            }
        }
        self.phase(&phase.name());
        alone
    }

    /// Ends a throughput phase: starts the aggregator again if it was stopped, then waits for
    /// it to write everything and checks it did, exactly once.
    async fn end(&mut self, restart_aggregator: bool, after: &str) {
        if restart_aggregator {
            self.stack.aggregator.start().await;
            if let Some(pid) = self.stack.aggregator.pid() {
                self.usage.retrack("aggregator", pid);
            }
        }
        self.check_exactly_once(after).await;
    }
}

/// Why `POST /ads/events` cannot be benchmarked, if it cannot: an ingest build without it
/// answers 404 or 405. Asks with an item for an unknown ad, so that nothing is stored.
async fn batch_endpoint_missing(addr: std::net::SocketAddr) -> anyhow::Result<Option<String>> {
    let item = format!("{{\"type\":\"impression\",\"ad_id\":\"{}\"}}\n", uuid::Uuid::nil());
    let (status, _) = http::Connection::new(addr)
        .post("/ads/events", "application/x-ndjson", http::BENCH_USER_AGENT, item.into())
        .await?;
    Ok(matches!(status, 404 | 405)
        .then(|| format!("POST /ads/events answered {status}: this ingest build has no batch endpoint")))
}
