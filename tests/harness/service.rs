//! One of the workspace's service binaries, run as a child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{eventually, free_port, terminate, PATIENCE};

/// One of the workspace's service binaries, run as a child process.
pub struct Service {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Where it serves `/metrics`: its admin address, or `addr` when it has none.
    pub metrics_addr: SocketAddr,
    env: Vec<(String, String)>,
    log: PathBuf,
    process: Option<Child>,
}

/// The directory holding the workspace's binaries: `target/<profile>/`. A test binary sits in
/// its `deps/`, the bench binary in it, so the bench runs the services of its own profile.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("the executable's directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>/deps has a parent").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

impl Service {
    /// `admin_var`: the variable of its admin address, if it has one.
    pub(crate) fn new(
        name: &'static str,
        addr_var: &str,
        admin_var: Option<&str>,
        dir: &Path,
        mut env: Vec<(String, String)>,
    ) -> Service {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        env.push((addr_var.to_owned(), addr.to_string()));
        let metrics_addr = match admin_var {
            Some(variable) => {
                let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
                env.push((variable.to_owned(), admin.to_string()));
                admin
            }
            None => addr,
        };
        Service { name, addr, metrics_addr, env, log: dir.join(format!("{name}.log")), process: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The service's URL, for tools that append paths themselves.
    pub fn base_url(&self) -> String {
        self.url("")
    }

    /// The process id while the service runs (the bench samples its memory).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    pub fn command(&self) -> Command {
        let bin = bin_dir().join(self.name);
        assert!(bin.exists(), "{} not built: run `cargo build --workspace --bins` (make test does)", bin.display());
        let mut command = Command::new(bin);
        command.envs(self.env.iter().map(|(k, v)| (k, v))).env("RUST_LOG", "info");
        command
    }

    /// Adds or replaces an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the service and waits until `/readyz` answers 200.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("service log");
        let child = self
            .command()
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.process = Some(child);
        let url = self.url("/readyz");
        eventually(&format!("{} /readyz", self.name), || {
            let url = url.clone();
            async move {
                match reqwest::get(&url).await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(r.text().await.unwrap_or_default()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
    }

    /// SIGKILL: no chance to flush or ack.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit; a service still running after twice `PATIENCE` (longer
    /// than any shutdown grace a test sets) is killed and fails the test, rather than hanging it.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.process.take().expect("service is running");
        terminate(&mut child);
        let deadline = Instant::now() + 2 * PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait for service") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} still running {:?} after SIGTERM; its log ends:\n{}",
                    self.name,
                    2 * PATIENCE,
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
