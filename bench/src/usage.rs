//! What each process used, sampled from /proc every 200 ms through the whole run: resident
//! memory (VmRSS; peak overall, with its phase, and per phase) and CPU (cores busy on average
//! per phase). The load generator (this process) is sampled too: it shares the cores with the
//! servers it measures. So is the whole machine's CPU: what the processes do not account for
//! was used by others (a build running meanwhile makes the figures worthless).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

const EVERY: Duration = Duration::from_millis(200);
/// Unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on Linux whatever the kernel's HZ).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub process: String,
    pub peak_rss_kib: u64,
    pub peak_rss_phase: String,
    pub by_phase: BTreeMap<String, PhaseUsage>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseUsage {
    pub peak_rss_kib: u64,
    /// CPU seconds over the phase's wall seconds: 1.0 is one core busy all along.
    pub cpu_cores: f64,
    #[serde(skip)]
    cpu_secs: f64,
}

struct Tracked {
    pid: u32,
    last_ticks: Option<u64>,
    usage: ProcessUsage,
}

/// What [`Sampler::finish`] returns.
pub struct Usage {
    pub processes: Vec<ProcessUsage>,
    /// Every process of the machine together, in cores busy per phase.
    pub machine_cpu_cores: BTreeMap<String, f64>,
    /// Rows the aggregator inserted into the raw tables in each phase (its
    /// `aggregator_events_inserted_total`), what ClickHouse's CPU per event divides by.
    pub events_inserted: BTreeMap<String, u64>,
    /// Per process, then phase: CPU microseconds per row inserted, in the phases that inserted
    /// at least [`MIN_EVENTS_PER_PHASE`] rows (a CPU time over a handful of rows means nothing).
    pub cpu_us_per_event: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Fewest rows a phase must insert for a CPU time per row.
pub const MIN_EVENTS_PER_PHASE: u64 = 1_000;

struct State {
    phase: String,
    last_sample: Instant,
    /// Wall seconds spent in each phase (a phase may come back, as "verify" does).
    wall_secs: BTreeMap<String, f64>,
    processes: Vec<Tracked>,
    machine_last_ticks: Option<u64>,
    machine_cpu_secs: BTreeMap<String, f64>,
    /// The aggregator's count of inserted rows when last read, and the rows per phase.
    last_inserted: Option<u64>,
    events_inserted: BTreeMap<String, u64>,
}

pub struct Sampler {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Samples `processes` (name, pid), and the rows the aggregator at `aggregator_metrics`
    /// inserted, every 200 ms until [`Sampler::finish`].
    pub fn start(processes: &[(&str, u32)], aggregator_metrics: String) -> Self {
        let state = State {
            phase: "setup".to_owned(),
            last_sample: Instant::now(),
            wall_secs: BTreeMap::new(),
            processes: Vec::new(),
            machine_last_ticks: machine_busy_ticks(),
            machine_cpu_secs: BTreeMap::new(),
            last_inserted: None,
            events_inserted: BTreeMap::new(),
        };
        let state = Arc::new(Mutex::new(state));
        let task = tokio::spawn(sample_forever(state.clone(), aggregator_metrics));
        let sampler = Self { state, task };
        for &(name, pid) in processes {
            sampler.track(name, pid);
        }
        sampler
    }

    /// Samples `pid` too from now on (a process started after the sampler).
    pub fn track(&self, name: &str, pid: u32) {
        let usage = ProcessUsage {
            process: name.to_owned(),
            peak_rss_kib: 0,
            peak_rss_phase: String::new(),
            by_phase: BTreeMap::new(),
        };
        lock(&self.state).processes.push(Tracked { pid, last_ticks: cpu_ticks(pid), usage });
    }

    /// Samples the process `name` under its new `pid` from now on (it was restarted); what
    /// the old one used stays counted.
    pub fn retrack(&self, name: &str, pid: u32) {
        let mut state = lock(&self.state);
        sample(&mut state);
        if let Some(tracked) = state.processes.iter_mut().find(|t| t.usage.process == name) {
            tracked.pid = pid;
            tracked.last_ticks = cpu_ticks(pid);
        }
    }

    /// Samples taken from now on belong to `phase`.
    pub fn phase(&self, phase: &str) {
        let mut state = lock(&self.state);
        // The ending phase gets the time since the last sample.
        sample(&mut state);
        state.phase = phase.to_owned();
    }

    pub fn finish(self) -> Usage {
        self.task.abort();
        let mut state = lock(&self.state);
        sample(&mut state);
        let cores = |phase: &str, cpu_secs: f64| match state.wall_secs.get(phase) {
            Some(&wall) if wall > 0.0 => cpu_secs / wall,
            _ => 0.0,
        };
        let processes = state
            .processes
            .iter()
            .map(|tracked| {
                let mut usage = tracked.usage.clone();
                for (phase, in_phase) in &mut usage.by_phase {
                    in_phase.cpu_cores = cores(phase, in_phase.cpu_secs);
                }
                usage
            })
            .collect();
        let machine_cpu_cores =
            state.machine_cpu_secs.iter().map(|(phase, secs)| (phase.clone(), cores(phase, *secs))).collect();
        let cpu_us_per_event = state
            .processes
            .iter()
            .map(|tracked| {
                let per_phase = tracked
                    .usage
                    .by_phase
                    .iter()
                    .filter_map(|(phase, in_phase)| {
                        let events = *state.events_inserted.get(phase)?;
                        (events >= MIN_EVENTS_PER_PHASE)
                            .then(|| (phase.clone(), in_phase.cpu_secs * 1e6 / events as f64))
                    })
                    .collect();
                (tracked.usage.process.clone(), per_phase)
            })
            .collect();
        Usage { processes, machine_cpu_cores, events_inserted: state.events_inserted.clone(), cpu_us_per_event }
    }
}

async fn sample_forever(state: Arc<Mutex<State>>, aggregator_metrics: String) {
    let http = reqwest::Client::new();
    loop {
        tokio::time::sleep(EVERY).await;
        // Unreadable while the aggregator is stopped (the "alone" phases): nothing inserted.
        let inserted = inserted_rows(&http, &aggregator_metrics).await;
        let mut state = lock(&state);
        sample(&mut state);
        if let Some(total) = inserted {
            // A restarted aggregator counts from 0 again.
            let delta = match state.last_inserted {
                Some(last) if total >= last => total - last,
                _ => total,
            };
            let phase = state.phase.clone();
            *state.events_inserted.entry(phase).or_default() += delta;
            state.last_inserted = Some(total);
        }
    }
}

/// The sum of the aggregator's `aggregator_events_inserted_total` over its tables.
async fn inserted_rows(http: &reqwest::Client, url: &str) -> Option<u64> {
    let text = http.get(url).timeout(EVERY).send().await.ok()?.text().await.ok()?;
    Some(e2e::metric_sum(&text, "aggregator_events_inserted_total", &[]) as u64)
}

fn sample(state: &mut State) {
    let now = Instant::now();
    let phase = state.phase.clone();
    *state.wall_secs.entry(phase.clone()).or_default() += (now - state.last_sample).as_secs_f64();
    state.last_sample = now;
    if let Some(ticks) = machine_busy_ticks() {
        let delta = ticks.saturating_sub(state.machine_last_ticks.unwrap_or(ticks));
        *state.machine_cpu_secs.entry(phase.clone()).or_default() += delta as f64 / TICKS_PER_SEC;
        state.machine_last_ticks = Some(ticks);
    }
    for tracked in &mut state.processes {
        // A process that is gone has nothing more to report.
        let (Some(kib), Some(ticks)) = (resident_kib(tracked.pid), cpu_ticks(tracked.pid)) else { continue };
        let in_phase = tracked.usage.by_phase.entry(phase.clone()).or_default();
        in_phase.peak_rss_kib = in_phase.peak_rss_kib.max(kib);
        in_phase.cpu_secs += ticks.saturating_sub(tracked.last_ticks.unwrap_or(ticks)) as f64 / TICKS_PER_SEC;
        tracked.last_ticks = Some(ticks);
        if kib > tracked.usage.peak_rss_kib {
            tracked.usage.peak_rss_kib = kib;
            tracked.usage.peak_rss_phase = phase.clone();
        }
    }
}

/// VmRSS of a process, in KiB.
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of a process (all its threads), in ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields follow the command name, which is in parentheses and may hold spaces; utime and
    // stime are fields 14 and 15, the 12th and 13th after it.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// User and system CPU time of the whole machine (every process and kernel thread), in ticks.
/// Interrupt time is left out: the loopback traffic's share of it belongs to no process, so
/// it would look like someone else's work.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    // user nice system (then idle, iowait, irq, ...); guest time is inside user.
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(3).map(str::parse).collect::<Result<_, _>>().ok()?;
    let [user, nice, system] = ticks[..] else { return None };
    Some(user + nice + system)
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // Nothing panics while holding the lock, so it cannot be poisoned.
    state.lock().expect("usage sampler lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(resident_kib(pid).is_some_and(|kib| kib > 0));
        assert!(cpu_ticks(pid).is_some());
        assert!(machine_busy_ticks().is_some());
    }
}
