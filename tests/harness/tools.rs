//! Third-party tools the tests run from the project venv (`make test-deps` installs them):
//! the contract tools and the browser tests' Playwright.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::workspace_root;

/// Longest any one tool may run before the test fails.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// The project venv's bin directory (`CONTRACT_VENV` overrides), checked to hold `tools`.
pub fn venv_bin(tools: &[&str]) -> PathBuf {
    let venv = std::env::var_os("CONTRACT_VENV").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".venv"));
    let bin = venv.join("bin");
    for tool in tools {
        assert!(
            bin.join(tool).exists(),
            "{} not found: run `make test-deps` (installs tests/contract/requirements.txt into .venv)",
            bin.join(tool).display()
        );
    }
    bin
}

/// Runs `program args` in `dir` with `env` added, to completion (at most `TOOL_TIMEOUT`),
/// and returns its exit status and its stdout and stderr, interleaved as written.
pub async fn run_tool(
    name: &str,
    program: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(&str, OsString)],
) -> (bool, String) {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).expect("tool log");
    let bin = program.parent().expect("tool in a directory").to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let ok = match tokio::time::timeout(TOOL_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("wait for tool").success(),
        Err(_) => {
            let _ = child.kill().await;
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("{name} did not finish within {TOOL_TIMEOUT:?}; its output:\n{output}");
        }
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!(
        "{name}: {} in {:.1} s (full output: {})",
        if ok { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        log_path.display()
    );
    (ok, output)
}

/// Fails the test with the tool's whole output unless it succeeded; prints the last `tail`
/// lines of it otherwise.
pub fn assert_tool_passed(name: &str, (ok, output): (bool, String), tail: usize) {
    assert!(ok, "{name} failed; its output:\n{output}");
    let lines: Vec<&str> = output.lines().collect();
    println!("{}", lines[lines.len().saturating_sub(tail)..].join("\n"));
}
