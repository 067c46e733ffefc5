//! What the project ships for running it elsewhere, checked with the tools operators use: the
//! Kubernetes manifests against the API schemas (`kubernetes-validate`) and against each other,
//! the Prometheus configuration and alert rules with `promtool` (rule unit tests included), the
//! Grafana dashboard's queries against the metrics the services export, and docker-compose.yml
//! against the Compose Specification. Docker and a cluster are not available here, so nothing is
//! started; the scripts live in `tests/deploy/`.

use std::path::PathBuf;
use std::process::Command;

use e2e::workspace_root;

fn python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(python.exists(), "{} not found: run `make test-deps`", python.display());
    python
}

/// Runs `tests/deploy/<script> <repo root>`; fails with its output unless it succeeds.
fn check(script: &str) {
    let root = workspace_root();
    let output = Command::new(python())
        .arg(root.join("tests/deploy").join(script))
        .arg(&root)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    println!("{}", lines[lines.len().saturating_sub(5)..].join("\n"));
}

#[test]
fn kubernetes_manifests_are_valid_and_consistent() {
    check("check_kubernetes.py");
}

#[test]
fn monitoring_and_compose_files_are_valid() {
    check("check_monitoring.py");
}
