//! The result of a run: the JSON document (`latest.json`), and the same figures as tables, as
//! text for the terminal and as Markdown for BENCHMARKS.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use crate::burst::{BurstReport, MIN_ACCEPTED_SHARE};
use crate::config::Args;
use crate::freshness::{FreshnessReport, STAGES};
use crate::jetstream::PublishReport;
use crate::load::{BatchReport, LoadReport};
use crate::query::QueryReport;
use crate::usage::ProcessUsage;
use crate::verify::{raw_rows_of, Verification};

#[derive(Debug, Serialize)]
pub struct Report {
    /// No phase failed and every exactly-once check held.
    pub ok: bool,
    pub failures: Vec<String>,
    pub started_at: String,
    pub total_secs: f64,
    pub command_line: String,
    pub machine: Machine,
    pub args: Args,
    /// Environment the bench gives the services beyond addresses and databases (ingest also
    /// gets the harness's CATALOG_REFRESH_SECS=1; the aggregator runs with its defaults).
    pub service_env: BTreeMap<&'static str, BTreeMap<&'static str, &'static str>>,
    pub bare: Option<LoadReport>,
    pub jetstream: Vec<PublishReport>,
    pub ingest: Option<LoadReport>,
    pub clicks: Option<LoadReport>,
    pub batch: Option<BatchReport>,
    /// Why the batch phase did not run, when it was asked for.
    pub batch_skipped: Option<String>,
    pub burst: Option<BurstReport>,
    /// The same three phases with the aggregator stopped.
    pub ingest_alone: Option<LoadReport>,
    pub clicks_alone: Option<LoadReport>,
    pub batch_alone: Option<BatchReport>,
    pub ratios: Ratios,
    pub exactly_once: Vec<Verification>,
    pub freshness: Option<FreshnessReport>,
    pub query: Option<QueryReport>,
    /// Memory and CPU of the services, nats-server, ClickHouse and the bench itself.
    pub processes: Vec<ProcessUsage>,
    /// Cores busy per phase on the whole machine (user and system time, every process and
    /// kernel thread): well above the processes' sum, something else ran.
    pub machine_cpu_cores: BTreeMap<String, f64>,
    /// Rows the aggregator inserted per phase, and CPU microseconds per row per process.
    pub events_inserted: BTreeMap<String, u64>,
    pub cpu_us_per_event: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Throughput relative to the ceilings (absolute numbers vary from run to run; ratios less).
#[derive(Debug, Default, Serialize)]
pub struct Ratios {
    /// The JetStream run compared with: the first of `--jetstream-in-flight`.
    pub jetstream_in_flight: Option<usize>,
    /// Ingest requests per second (mixed load) over the bare endpoint's.
    pub ingest_over_bare: Option<f64>,
    /// Ingest requests per second (mixed load) over raw JetStream publishes per second.
    pub ingest_over_jetstream: Option<f64>,
    pub clicks_over_bare: Option<f64>,
    pub clicks_over_jetstream: Option<f64>,
    /// The same with the aggregator stopped (the `-alone` phases), as the ceilings ran.
    pub ingest_alone_over_bare: Option<f64>,
    pub ingest_alone_over_jetstream: Option<f64>,
    pub clicks_alone_over_bare: Option<f64>,
    pub clicks_alone_over_jetstream: Option<f64>,
}

impl Ratios {
    /// `singles`: the ingest, clicks, ingest-alone and clicks-alone phases.
    pub fn of(bare: Option<&LoadReport>, jetstream: Option<&PublishReport>, singles: [&Option<LoadReport>; 4]) -> Self {
        let rate = |load: &Option<LoadReport>| load.as_ref().map(|r| r.requests_per_sec);
        let bare = bare.map(|r| r.requests_per_sec);
        let js = jetstream.map(|r| r.messages_per_sec);
        let over = |load: &Option<LoadReport>, ceiling: Option<f64>| match (rate(load), ceiling) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let [ingest, clicks, ingest_alone, clicks_alone] = singles;
        Self {
            jetstream_in_flight: jetstream.map(|r| r.in_flight),
            ingest_over_bare: over(ingest, bare),
            ingest_over_jetstream: over(ingest, js),
            clicks_over_bare: over(clicks, bare),
            clicks_over_jetstream: over(clicks, js),
            ingest_alone_over_bare: over(ingest_alone, bare),
            ingest_alone_over_jetstream: over(ingest_alone, js),
            clicks_alone_over_bare: over(clicks_alone, bare),
            clicks_alone_over_jetstream: over(clicks_alone, js),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub os: String,
    pub nats_server: String,
    pub clickhouse: String,
    pub rustc: String,
    pub git_commit: String,
    /// Uncommitted changes in the checkout when the bench ran.
    pub git_dirty: bool,
}

impl Machine {
    pub fn describe(clickhouse_version: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let field = |text: &str, key: &str, separator: char| {
            text.lines()
                .find_map(|line| {
                    line.split_once(separator).filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let memory_kib: u64 = field(&meminfo, "MemTotal", ':').trim_end_matches("kB").trim().parse().unwrap_or(0);
        // The harness runs $NATS_SERVER (make exports it), else nats-server from PATH.
        let nats = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned());
        let root = e2e::workspace_root();
        let git = |args: &[&str]| command_output(Command::new("git").arg("-C").arg(&root).args(args));
        Self {
            cpu_model: field(&cpuinfo, "model name", ':'),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_mib: memory_kib / 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            os: field(&os_release, "PRETTY_NAME", '=').trim_matches('"').to_owned(),
            nats_server: command_output(Command::new(nats).arg("--version")),
            clickhouse: clickhouse_version,
            rustc: command_output(Command::new("rustc").arg("--version")),
            git_commit: git(&["rev-parse", "HEAD"]),
            git_dirty: !git(&["status", "--porcelain"]).is_empty(),
        }
    }
}

/// A command's trimmed stdout, or what went wrong (a fact missing is not worth failing for).
fn command_output(command: &mut Command) -> String {
    match command.output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        Ok(output) => format!("unknown ({})", output.status),
        Err(error) => format!("unknown ({error})"),
    }
}

/// Writes latest.json, a timestamped copy of it, and latest.md into `dir`.
pub fn write(report: &Report, markdown: &str, dir: &Path, stamp: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    for name in ["latest.json".to_owned(), format!("{stamp}.json")] {
        let path = dir.join(name);
        std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    let path = dir.join("latest.md");
    std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))
}

pub struct Table {
    title: String,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

/// Every figure of the report, grouped as they are read.
pub fn tables(report: &Report) -> Vec<Table> {
    let mut tables: Vec<Table> = targets_table(report).into_iter().collect();
    let throughput = throughput(report);
    // Empty when only other phases ran (e.g. `--only burst`).
    if !throughput.rows.is_empty() {
        tables.push(throughput);
    }
    if let Some(burst) = &report.burst {
        tables.push(burst_table(burst));
    }
    let r = &report.ratios;
    let ratio_rows: Vec<Vec<String>> = [
        ("ingest (mixed) ÷ bare poem endpoint", r.ingest_over_bare),
        ("ingest (mixed) ÷ raw JetStream publish", r.ingest_over_jetstream),
        ("ingest (clicks only) ÷ bare poem endpoint", r.clicks_over_bare),
        ("ingest (clicks only) ÷ raw JetStream publish", r.clicks_over_jetstream),
        ("ingest alone (mixed) ÷ bare poem endpoint", r.ingest_alone_over_bare),
        ("ingest alone (mixed) ÷ raw JetStream publish", r.ingest_alone_over_jetstream),
        ("ingest alone (clicks only) ÷ bare poem endpoint", r.clicks_alone_over_bare),
        ("ingest alone (clicks only) ÷ raw JetStream publish", r.clicks_alone_over_jetstream),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| vec![name.to_owned(), format!("{v:.2}")]))
    .collect();
    if !ratio_rows.is_empty() {
        let mut notes: Vec<String> = r
            .jetstream_in_flight
            .map(|n| format!("Raw JetStream: the run with {n} publishes in flight."))
            .into_iter()
            .collect();
        if r.ingest_alone_over_jetstream.is_some() || r.clicks_alone_over_jetstream.is_some() {
            notes.push("Ingest alone: the aggregator stopped, so ingest, nats-server and the load generator have the machine, as the ceilings do.".into());
        }
        tables.push(Table {
            title: "Ratios (requests or messages per second)".into(),
            header: vec!["ratio", "value"],
            rows: ratio_rows,
            notes,
        });
    }
    if !report.exactly_once.is_empty() {
        tables.push(exactly_once(&report.exactly_once));
    }
    if let Some(freshness) = &report.freshness {
        tables.push(freshness_table(freshness));
    }
    if let Some(query) = &report.query {
        tables.extend(query_tables(query));
    }
    if !report.processes.is_empty() {
        tables.push(memory_table(&report.processes));
        tables.push(cpu_table(&report.processes, &report.machine_cpu_cores, report.machine.cores));
        if let Some(table) = cpu_per_event_table(report) {
            tables.push(table);
        }
    }
    tables.push(machine_table(report));
    tables
}

fn throughput(report: &Report) -> Table {
    let mut rows = Vec::new();
    let single = |name: &str, load: &LoadReport| {
        let l = &load.latency;
        vec![
            name.to_owned(),
            format!("{} conns", load.connections),
            format!("{} req/s", thousands(load.requests_per_sec)),
            ms(l.p50_us),
            ms(l.p95_us),
            ms(l.p99_us),
            ms(l.max_us),
            statuses(&load.http_statuses, &[202]),
        ]
    };
    if let Some(bare) = &report.bare {
        rows.push(single("bare poem endpoint (ceiling)", bare));
    }
    for js in &report.jetstream {
        let l = &js.ack_latency;
        rows.push(vec![
            "raw JetStream publish (ceiling)".into(),
            format!("{} in flight", js.in_flight),
            format!("{} msg/s", thousands(js.messages_per_sec)),
            ms(l.p50_us),
            ms(l.p95_us),
            ms(l.p99_us),
            ms(l.max_us),
            if js.errors == 0 { "none".into() } else { format!("{} failed", js.errors) },
        ]);
    }
    let batch_row = |name: &str, batch: &BatchReport| {
        let l = &batch.latency;
        vec![
            format!("{name}, NDJSON batches of {}", batch.batch_size),
            format!("{} conns", batch.connections),
            format!("{} events/s ({} req/s)", thousands(batch.events_per_sec), thousands(batch.requests_per_sec)),
            ms(l.p50_us),
            ms(l.p95_us),
            ms(l.p99_us),
            ms(l.max_us),
            statuses(&batch.http_statuses, &[202, 207]),
        ]
    };
    let singles = [
        ("ingest, single events (mix)", &report.ingest),
        ("ingest, clicks only", &report.clicks),
        ("ingest alone, single events (mix)", &report.ingest_alone),
        ("ingest alone, clicks only", &report.clicks_alone),
    ];
    for (name, load) in singles {
        if let Some(load) = load {
            rows.push(single(name, load));
        }
    }
    for (name, batch) in [("ingest", &report.batch), ("ingest alone", &report.batch_alone)] {
        if let Some(batch) = batch {
            rows.push(batch_row(name, batch));
        }
    }
    let mut notes =
        vec!["Latency: request to complete answer, as the load generator sees it (JetStream: publish to ack). \
         Load generator and servers share the machine."
            .to_owned()];
    for (name, load) in singles {
        if let Some(load) = load {
            notes.push(format!(
                "{name}: answers {}; {} repeats sent, {} answered \"duplicate\"; new events answered \"duplicate\": {}.",
                answers(&load.answers),
                thousands(load.repeats_sent as f64),
                thousands(load.repeats_answered_duplicate as f64),
                load.new_events_answered_duplicate
            ));
        }
    }
    for (name, batch) in [("Batch", &report.batch), ("Batch alone", &report.batch_alone)] {
        if let Some(batch) = batch {
            notes.push(format!(
                "{name} items: {}; answers not matching the items sent: {}.",
                answers(&batch.item_statuses),
                batch.unreadable_answers
            ));
        }
    }
    if report.ingest_alone.is_some() || report.clicks_alone.is_some() || report.batch_alone.is_some() {
        notes.push("Alone: with the aggregator stopped; it wrote their events afterwards.".into());
    }
    if let Some(reason) = &report.batch_skipped {
        notes.push(format!("Batch phase skipped: {reason}."));
    }
    Table {
        title: "Ingest throughput".into(),
        header: vec!["phase", "concurrency", "throughput", "p50", "p95", "p99", "max", "errors"],
        rows,
        notes,
    }
}

/// The targets this run can tell, each with what was measured and whether it was met; `None`
/// when no phase that has one ran.
fn targets_table(report: &Report) -> Option<Table> {
    let burst = report.burst.as_ref()?;
    let unanswered = burst.http_statuses.get(&0).copied().unwrap_or(0);
    let met = |yes: bool| if yes { "yes".to_owned() } else { "NO".to_owned() };
    let rows = vec![
        vec![
            format!("burst: every request answered within {} s", burst.timeout_secs),
            format!("{} of {} unanswered", thousands(unanswered as f64), thousands(burst.requests as f64)),
            met(burst.targets.none_unanswered),
        ],
        vec![
            format!("burst: at least {} answered 202", percent(MIN_ACCEPTED_SHARE)),
            format!("{} answered 202", percent(burst.answered_202)),
            met(burst.targets.enough_accepted),
        ],
    ];
    Some(Table { title: "Targets".into(), header: vec!["target", "this run", "met?"], rows, notes: Vec::new() })
}

fn burst_table(burst: &BurstReport) -> Table {
    let l = &burst.latency;
    let share = burst.requests / burst.connections;
    let share = if burst.requests.is_multiple_of(burst.connections) {
        share.to_string()
    } else {
        format!("{share} or {}", share + 1)
    };
    Table {
        title: format!(
            "Burst: {} POST /ads/click from {} connections at once (hey -n {} -c {})",
            thousands(burst.requests as f64),
            thousands(burst.connections as f64),
            burst.requests,
            burst.connections
        ),
        header: vec!["answers", "p50", "p99", "max", "answered ≤ 1 s", "answered 202", "took"],
        rows: vec![vec![
            statuses(&burst.http_statuses, &[]),
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us),
            percent(burst.answered_within_1s),
            percent(burst.answered_202),
            format!("{:.1} s", burst.duration_secs),
        ]],
        notes: vec![
            format!(
                "Each connection sends its share ({} requests) one after another, keep-alive (on a new connection \
                 after `connection: close`, an error or a timeout), every one with the body {} (no event_id) and a \
                 browser's user agent. No answer: none complete within {} s, or the connection failed. Latency: of \
                 answered requests, from sending (connecting included, when the request opened its connection) to \
                 the whole answer. Answered ≤ 1 s and answered 202: shares of all requests. The exactly-once check \
                 after `burst` looks up every 202's event_id.",
                share, burst.body, burst.timeout_secs
            ),
            format!(
                "202 answers without an event_id: {}; event_ids named by two 202s: {}.",
                burst.accepted_without_event_id, burst.accepted_ids_repeated
            ),
        ],
    }
}

fn exactly_once(checks: &[Verification]) -> Table {
    let rows = checks
        .iter()
        .map(|v| {
            vec![
                v.after.clone(),
                format!("{} + {}", thousands(v.expected_clicks as f64), thousands(v.expected_impressions as f64)),
                format!("{} + {}", thousands(v.stored_clicks as f64), thousands(v.stored_impressions as f64)),
                format!("{} + {}", thousands(v.flagged_clicks as f64), thousands(v.flagged_impressions as f64)),
                rollups(v),
                v.uncertain.to_string(),
                format!("{} msgs, {:.1} s", thousands(v.pending_at_start as f64), v.drain_secs),
                if v.ok { "ok".into() } else { "MISMATCH".into() },
            ]
        })
        .collect();
    Table {
        title: "Exactly once (clicks + impressions)".into(),
        header: vec![
            "after",
            "accepted ids",
            "raw rows",
            "of which flagged",
            "rollups",
            "uncertain",
            "drain",
            "result",
        ],
        rows,
        notes: vec!["Accepted ids: distinct event ids answered 202 (accepted or duplicate). Raw rows: billable and \
             flagged (invalid traffic, stored in invalid_events) together. \
             Uncertain: answered 503 or not at all (each may be stored once). Drain: messages not yet \
             processed when the wait began."
            .into()],
    }
}

/// "all 9 = raw", or the tables that differ from their raw table.
fn rollups(v: &Verification) -> String {
    let differing: Vec<String> = v
        .rollups
        .iter()
        .filter(|(table, &sum)| {
            sum != raw_rows_of(
                table,
                v.stored_clicks - v.flagged_clicks,
                v.stored_impressions - v.flagged_impressions,
                v.flagged_clicks + v.flagged_impressions,
            )
        })
        .map(|(table, sum)| format!("{table} {}", thousands(*sum as f64)))
        .collect();
    if differing.is_empty() {
        format!("all {} = raw", v.rollups.len())
    } else {
        differing.join(", ")
    }
}

fn freshness_table(f: &FreshnessReport) -> Table {
    let target = f.background.target_per_sec.unwrap_or_default();
    Table {
        title: "Freshness (202 → visible in GET /ads/analytics)".into(),
        header: vec!["background load", "achieved", "probes visible", "p50", "p99", "max"],
        rows: vec![vec![
            format!("{} events/s", thousands(target)),
            format!("{} events/s", thousands(f.background.requests_per_sec)),
            format!("{} of {}", f.probes_visible, f.probes_accepted),
            ms(f.freshness.p50_us),
            ms(f.freshness.p99_us),
            ms(f.freshness.max_us),
        ]],
        notes: vec![
            format!(
                "Background: {} connections, latency p50 {} / p99 {}, errors {}. Messages the aggregator had not \
             processed when the load stopped: {}.",
                f.background.connections,
                ms(f.background.latency.p50_us),
                ms(f.background.latency.p99_us),
                statuses(&f.background.http_statuses, &[202]),
                thousands(f.backlog_at_end as f64)
            ),
            aggregator_stages(f),
        ],
    }
}

/// Where a batch's time went in the aggregator while probing, in pipeline order.
fn aggregator_stages(f: &FreshnessReport) -> String {
    let stages: Vec<String> = STAGES
        .into_iter()
        .filter_map(|stage| f.aggregator_stages.get(stage).map(|t| format!("{stage} {:.1} ms", t.mean_ms)))
        .collect();
    let batches = f.aggregator_stages.get("write").map_or(0, |t| t.batches);
    format!(
        "Aggregator while probing, mean per batch over {batches} batches: {}. `write` holds both lookups (run at once) and the inserts.",
        if stages.is_empty() { "no batch written".to_owned() } else { stages.join(", ") }
    )
}

fn query_tables(q: &QueryReport) -> Vec<Table> {
    let rows = q
        .cases
        .iter()
        .map(|c| {
            let (sql, ratio) = match &c.plain_sql {
                Some(sql) => (
                    format!("{} / {}", ms(sql.p50_us), ms(sql.p99_us)),
                    format!(
                        "{:.1}× / {:.1}×",
                        sql.p50_us as f64 / c.latency.p50_us.max(1) as f64,
                        sql.p99_us as f64 / c.latency.p99_us.max(1) as f64
                    ),
                ),
                None => ("".into(), "".into()),
            };
            vec![
                c.name.clone(),
                if c.cached { "cached".into() } else { "uncached".into() },
                c.requests.to_string(),
                ms(c.latency.p50_us),
                ms(c.latency.p99_us),
                ms(c.latency.max_us),
                sql,
                ratio,
                format!("{} / {}", c.cache_hits, c.cache_misses),
                format!("{} / {}", c.past_hits, c.past_misses),
                c.write_notices.to_string(),
                c.errors.to_string(),
            ]
        })
        .collect();
    let raw: u64 = ["click_events", "impression_events"].iter().filter_map(|t| q.tables.get(*t)).map(|t| t.rows).sum();
    let latency = Table {
        title: format!("Query latency over {} raw events (one client, sequential)", thousands(raw as f64)),
        header: vec![
            "query",
            "answer",
            "requests",
            "p50",
            "p99",
            "max",
            "plain SQL p50 / p99",
            "SQL ÷ API p50 / p99",
            "cache hits / misses",
            "past days hits / misses",
            "write notices",
            "errors",
        ],
        rows,
        notes: vec![
            "Cached: the same URL again (its first request, the miss, is in the warm-up). Uncached: each request \
             a new 30-day window (shifted by a minute), so every one reaches ClickHouse: for today, its first part \
             day and the whole window's playback percentiles; the whole days between come from the cached counts of \
             past days (`CACHE_PAST_TTL_SECS`) once read, which write announcements of today's events leave in place \
             (past days hits / misses: pieces of windows read from that cache or from ClickHouse)."
                .into(),
            "Plain SQL: the same numbers from the raw tables (uniqExact for unique visitors), for the windows of the \
             first uncached requests; each request's statements run at once, as the API's do."
                .into(),
            format!(
                "Meanwhile a background load of {} events/s asked ({:.0}/s stored) kept the aggregator writing; write \
                 notices are the announcements the query service received during each case. The cases began once the \
                 aggregator had stored the closed days' unique visitors ({:.0} s after the load).",
                q.background_rate, q.background_stored_per_sec, q.closed_days_stored_secs
            ),
        ],
    };
    let sizes = Table {
        title: "Data set".into(),
        header: vec!["table", "rows", "active parts"],
        rows: q.tables.iter().map(|(name, size)| vec![name.clone(), thousands(size.rows as f64), size.active_parts.to_string()]).collect(),
        notes: vec![format!(
            "Generated: {} impressions and {} clicks over 30 days from {} visitors, inserted in {:.0} s, plus the events of the ingest phases.",
            thousands(q.generated_impressions as f64),
            thousands(q.generated_clicks as f64),
            thousands(q.generated_visitors as f64),
            q.insert_secs
        )],
    };
    vec![latency, sizes]
}

/// Phases in the order they run.
pub const PHASE_ORDER: [&str; 14] = [
    "setup",
    "bare",
    "jetstream",
    "ingest",
    "clicks",
    "batch",
    "burst",
    "verify",
    "freshness",
    "ingest-alone",
    "clicks-alone",
    "batch-alone",
    "query data",
    "query",
];

/// The phases that have samples, in the order they ran.
fn phases_of(processes: &[ProcessUsage]) -> Vec<&'static str> {
    PHASE_ORDER.into_iter().filter(|phase| processes.iter().any(|p| p.by_phase.contains_key(*phase))).collect()
}

fn memory_table(processes: &[ProcessUsage]) -> Table {
    let phases = phases_of(processes);
    let mut header = vec!["process", "peak", "during"];
    header.extend(&phases);
    let rows = processes
        .iter()
        .map(|p| {
            let mut row = vec![p.process.clone(), mib(p.peak_rss_kib), p.peak_rss_phase.clone()];
            row.extend(phases.iter().map(|phase| p.by_phase.get(*phase).map_or("-".into(), |u| mib(u.peak_rss_kib))));
            row
        })
        .collect();
    Table { title: "Peak resident memory (VmRSS, sampled every 200 ms)".into(), header, rows, notes: Vec::new() }
}

/// Cores used by other processes above which a phase counts as disturbed. Per-process and
/// machine-wide counters account kernel work differently, so they disagree by about 0.2
/// cores even on a quiet machine.
const OTHERS_NOTICED: f64 = 0.3;

fn cpu_table(processes: &[ProcessUsage], machine: &BTreeMap<String, f64>, cores: usize) -> Table {
    let phases = phases_of(processes);
    let mut header = vec!["process"];
    header.extend(&phases);
    let mut rows: Vec<Vec<String>> = processes
        .iter()
        .map(|p| {
            let mut row = vec![p.process.clone()];
            row.extend(
                phases.iter().map(|phase| p.by_phase.get(*phase).map_or("-".into(), |u| format!("{:.2}", u.cpu_cores))),
            );
            row
        })
        .collect();
    let mut total = vec!["all of the above".to_owned()];
    total.extend(phases.iter().map(|phase| {
        let sum: f64 = processes.iter().filter_map(|p| p.by_phase.get(*phase)).map(|u| u.cpu_cores).sum();
        format!("{sum:.2}")
    }));
    rows.push(total);
    let mut whole = vec!["whole machine".to_owned()];
    whole.extend(phases.iter().map(|phase| machine.get(*phase).map_or("-".into(), |cores| format!("{cores:.2}"))));
    rows.push(whole);
    let mut notes = vec![
        "Whole machine: user and system time of every process and kernel thread (interrupts left out). Where it is \
         well above the processes' sum, something else was running, and a warning below names the phase."
            .to_owned(),
    ];
    let disturbed: Vec<String> = phases
        .iter()
        .filter_map(|phase| {
            let ours: f64 = processes.iter().filter_map(|p| p.by_phase.get(*phase)).map(|u| u.cpu_cores).sum();
            let others = machine.get(*phase)? - ours;
            (others > OTHERS_NOTICED).then(|| format!("{phase} ({others:.2} cores)"))
        })
        .collect();
    if !disturbed.is_empty() {
        notes.push(format!("WARNING: other work ran during {}: rerun on a quiet machine.", disturbed.join(", ")));
    }
    Table { title: format!("CPU by phase (cores busy on average, of {cores})"), header, rows, notes }
}

/// CPU time per row inserted, per process and phase: the write path's cost, ClickHouse's above
/// all (issue 16 asks at most 20 µs of it per event at 10,000 events/s).
fn cpu_per_event_table(report: &Report) -> Option<Table> {
    let inserted = |phase: &str| report.events_inserted.get(phase).copied().unwrap_or(0);
    let phases: Vec<&'static str> =
        PHASE_ORDER.into_iter().filter(|p| inserted(p) >= crate::usage::MIN_EVENTS_PER_PHASE).collect();
    if phases.is_empty() {
        return None;
    }
    let mut header = vec!["process"];
    header.extend(&phases);
    let mut rows = vec![{
        let mut row = vec!["rows inserted".to_owned()];
        row.extend(phases.iter().map(|p| thousands(inserted(p) as f64)));
        row
    }];
    rows.extend(report.cpu_us_per_event.iter().map(|(process, by_phase)| {
        let mut row = vec![format!("{process} (µs per row)")];
        row.extend(phases.iter().map(|p| by_phase.get(*p).map_or("-".into(), |us| format!("{us:.1}"))));
        row
    }));
    Some(Table {
        title: "CPU per row inserted, by phase".into(),
        header,
        rows,
        notes: vec![
            "Rows: the aggregator's inserts into the raw tables (`aggregator_events_inserted_total`), read every 200 ms. \
             A phase's CPU time over its rows includes all the process did then: in `query`, ClickHouse also answers \
             the queries; in a phase after a backlog, the aggregator writes rows accepted earlier."
                .into(),
        ],
    })
}

fn machine_table(report: &Report) -> Table {
    let m = &report.machine;
    let rows = [
        ("CPU", format!("{} ({} cores)", m.cpu_model, m.cores)),
        ("memory", format!("{} MiB", thousands(m.memory_mib as f64))),
        ("OS, kernel", format!("{}, {}", m.os, m.kernel)),
        ("nats-server", m.nats_server.clone()),
        ("ClickHouse", m.clickhouse.clone()),
        ("rustc", m.rustc.clone()),
        ("commit", format!("{}{}", m.git_commit, if m.git_dirty { " (with uncommitted changes)" } else { "" })),
        ("command", report.command_line.clone()),
        ("started, took", format!("{}, {:.0} s", report.started_at, report.total_secs)),
    ];
    Table {
        title: "Machine and run".into(),
        header: vec!["", ""],
        rows: rows.into_iter().map(|(k, v)| vec![k.to_owned(), v]).collect(),
        notes: Vec::new(),
    }
}

pub fn render_text(tables: &[Table]) -> String {
    let mut out = String::new();
    for table in tables {
        let columns = table.header.len();
        let width = |i: usize| {
            let cells = table.rows.iter().map(|row| row[i].chars().count());
            cells.chain([table.header[i].chars().count()]).max().unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        out.push_str(&format!("\n== {} ==\n", table.title));
        if table.header.iter().any(|h| !h.is_empty()) {
            out.push_str(&line(table.header.clone()));
            out.push_str(&line(
                widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect(),
            ));
        }
        for row in &table.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        for note in &table.notes {
            out.push_str(&format!("  {note}\n"));
        }
    }
    out
}

pub fn render_markdown(tables: &[Table]) -> String {
    let mut out = String::new();
    let row = |cells: Vec<&str>| {
        format!("| {} |\n", cells.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "))
    };
    for table in tables {
        out.push_str(&format!("### {}\n\n", table.title));
        out.push_str(&row(table.header.clone()));
        out.push_str(&row(table.header.iter().map(|_| "---").collect()));
        for cells in &table.rows {
            out.push_str(&row(cells.iter().map(String::as_str).collect()));
        }
        out.push('\n');
        for note in &table.notes {
            out.push_str(&format!("{note}\n\n"));
        }
    }
    out
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    match ms {
        ms if ms < 10.0 => format!("{ms:.2} ms"),
        ms if ms < 1000.0 => format!("{ms:.1} ms"),
        ms => format!("{ms:.0} ms"),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Statuses other than `ok`, e.g. `503: 12, no answer: 3`; `none` when there are none.
fn statuses(all: &BTreeMap<u16, u64>, ok: &[u16]) -> String {
    let bad: Vec<String> = all
        .iter()
        .filter(|(status, _)| !ok.contains(status))
        .map(|(status, n)| match status {
            0 => format!("no answer: {}", thousands(*n as f64)),
            status => format!("{status}: {}", thousands(*n as f64)),
        })
        .collect();
    if bad.is_empty() {
        "none".into()
    } else {
        bad.join(", ")
    }
}

/// A share as a percentage, rounded down: 100 % only when it is all.
fn percent(share: f64) -> String {
    format!("{:.2} %", (share * 10_000.0).floor() / 100.0)
}

fn answers(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(answer, n)| format!("{answer} {}", thousands(*n as f64))).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(1_234), "1.23 ms");
        assert_eq!(ms(123_456), "123.5 ms");
        assert_eq!(ms(2_345_678), "2346 ms");
        let mut all = BTreeMap::new();
        all.insert(202, 10);
        assert_eq!(statuses(&all, &[202]), "none");
        all.insert(0, 2);
        all.insert(503, 1);
        assert_eq!(statuses(&all, &[202]), "no answer: 2, 503: 1");
        all.insert(202, 99_871);
        assert_eq!(statuses(&all, &[]), "no answer: 2, 202: 99,871, 503: 1");
        assert_eq!(percent(0.99999), "99.99 %");
        assert_eq!(percent(1.0), "100.00 %");
        assert_eq!(percent(0.5), "50.00 %");
        assert_eq!(percent(99.0 / 100.0), "99.00 %");
    }

    #[test]
    fn tables_render_aligned_and_as_markdown() {
        let table = Table {
            title: "T".into(),
            header: vec!["a", "bb"],
            rows: vec![vec!["xyz".into(), "1".into()]],
            notes: vec!["note".into()],
        };
        assert_eq!(render_text(std::slice::from_ref(&table)), "\n== T ==\na    bb\n---  --\nxyz  1\n  note\n");
        assert_eq!(render_markdown(&[table]), "### T\n\n| a | bb |\n| --- | --- |\n| xyz | 1 |\n\nnote\n\n");
    }
}
