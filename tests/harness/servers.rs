//! The real servers: ClickHouse (chdb-core, or the one `CLICKHOUSE_URL` names) and nats-server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use tokio::sync::OnceCell;

use crate::{
    eventually, free_port, scratch_dir, terminate, wait_for_port, workspace_root, TEST_CLICKHOUSE_ADMIN,
    TEST_CLICKHOUSE_USERS, TEST_NATS_USERS,
};

/// Where a ClickHouse server is, and who to log in as.
#[derive(Debug, Clone)]
pub struct ClickHouseLogin {
    pub url: String,
    pub user: String,
    pub password: String,
}

impl ClickHouseLogin {
    /// The services' environment for this login.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CLICKHOUSE_URL".to_owned(), self.url.clone()),
            ("CLICKHOUSE_USER".to_owned(), self.user.clone()),
            ("CLICKHOUSE_PASSWORD".to_owned(), self.password.clone()),
        ]
    }

    /// The same server, as another user.
    pub fn as_user(&self, user: &str, password: &str) -> ClickHouseLogin {
        ClickHouseLogin { url: self.url.clone(), user: user.to_owned(), password: password.to_owned() }
    }

    /// The same server (one started here), as `who` of [`TEST_CLICKHOUSE_USERS`].
    pub fn as_test_user(&self, who: &str) -> ClickHouseLogin {
        let (_, user, password) = TEST_CLICKHOUSE_USERS
            .iter()
            .find(|(name, ..)| *name == who)
            .unwrap_or_else(|| panic!("no test user {who}"));
        self.as_user(user, password)
    }
}

pub struct ClickHouse {
    /// The administrator's login.
    pub login: ClickHouseLogin,
    process: Option<Child>,
    launch: Option<(PathBuf, u16, u16)>,
}

static SHARED_CLICKHOUSE: OnceCell<ClickHouse> = OnceCell::const_new();

impl ClickHouse {
    /// The server shared by this test binary: `CLICKHOUSE_URL` if set, else one started here.
    pub async fn shared() -> &'static ClickHouse {
        SHARED_CLICKHOUSE
            .get_or_init(|| async {
                match std::env::var("CLICKHOUSE_URL") {
                    Ok(url) if !url.is_empty() => {
                        let variable = |name: &str| {
                            std::env::var(name)
                                .unwrap_or_else(|_| panic!("CLICKHOUSE_URL is set: set {name} too (an administrator)"))
                        };
                        let login = ClickHouseLogin {
                            url,
                            user: variable("CLICKHOUSE_USER"),
                            password: variable("CLICKHOUSE_PASSWORD"),
                        };
                        ClickHouse { login, process: None, launch: None }
                    }
                    _ => ClickHouse::start(&scratch_dir("clickhouse")).await,
                }
            })
            .await
    }

    /// Starts a private server with its data in `dir`.
    pub async fn start(dir: &Path) -> ClickHouse {
        let (http, tcp) = (free_port(), free_port());
        let (user, password) = TEST_CLICKHOUSE_ADMIN;
        let login = ClickHouseLogin {
            url: format!("http://127.0.0.1:{http}"),
            user: user.to_owned(),
            password: password.to_owned(),
        };
        let mut server = ClickHouse { login, process: None, launch: Some((dir.to_path_buf(), http, tcp)) };
        server.restart().await;
        server
    }

    fn python() -> PathBuf {
        std::env::var_os("CHDB_PYTHON").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
    }

    /// Starts the server again on the same ports and data (after [`ClickHouse::stop`]).
    pub async fn restart(&mut self) {
        let (dir, http, tcp) = self.launch.clone().expect("only a server started here can be restarted");
        let python = Self::python();
        assert!(python.exists(), "{} not found: run `make deps` (or set CHDB_PYTHON)", python.display());
        let log = std::fs::File::create(dir.join("clickhouse.log")).expect("clickhouse log");
        let child = Command::new(python)
            .arg(workspace_root().join("dev/clickhouse_server.py"))
            .arg(dir.join("server"))
            .arg(http.to_string())
            .arg(tcp.to_string())
            .env("EXIT_WITH_PARENT", "1")
            .env("CLICKHOUSE_ADMIN_PASSWORD", TEST_CLICKHOUSE_ADMIN.1)
            .envs(
                TEST_CLICKHOUSE_USERS
                    .map(|(who, _, password)| (format!("CLICKHOUSE_{}_PASSWORD", who.to_uppercase()), password)),
            )
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start ClickHouse");
        self.process = Some(child);
        let url = self.login.url.clone();
        eventually("ClickHouse /ping", || {
            let url = url.clone();
            async move {
                match reqwest::get(format!("{url}/ping")).await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
    }

    /// SIGTERM, and wait until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            terminate(&mut child);
            let _ = child.wait();
        }
    }

    pub async fn sql(&self, database: &str, sql: &str) -> Result<String, String> {
        run_sql(&self.login, database, sql).await
    }

    /// The server's process id, when it was started here and runs (the bench samples it).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }
}

/// Runs SQL in `database` over HTTP and returns the trimmed text answer.
pub async fn run_sql(login: &ClickHouseLogin, database: &str, sql: &str) -> Result<String, String> {
    let response = reqwest::Client::new()
        .post(format!("{}/?database={database}", login.url))
        .basic_auth(&login.user, Some(&login.password))
        .body(sql.to_owned())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text.trim().to_owned())
    } else {
        Err(format!("{status}: {text}"))
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `nats-server` with JetStream, alone or as a node of a cluster.
pub struct Nats {
    pub url: String,
    port: u16,
    dir: PathBuf,
    /// Cluster flags (name, route port, routes), for a node of a cluster.
    cluster_args: Vec<String>,
    process: Option<Child>,
}

impl Nats {
    pub async fn start(dir: &Path) -> Nats {
        let mut nats = Nats::new(dir.join("nats"), Vec::new());
        nats.restart().await;
        nats
    }

    fn new(dir: PathBuf, cluster_args: Vec<String>) -> Nats {
        let port = free_port();
        Nats { url: format!("nats://127.0.0.1:{port}"), port, dir, cluster_args, process: None }
    }

    /// Three JetStream nodes routed to each other (a stream can then have 3 replicas).
    pub async fn start_cluster(dir: &Path) -> Vec<Nats> {
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let mut nodes: Vec<Nats> = (0..3)
            .map(|i| {
                let args = vec![
                    "--name".into(),
                    format!("node-{i}"),
                    "--cluster_name".into(),
                    "adtrack".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", route_ports[i]),
                    "--routes".into(),
                    routes.clone(),
                ];
                Nats::new(dir.join(format!("nats-{i}")), args)
            })
            .collect();
        for node in &mut nodes {
            node.restart().await;
        }
        nodes
    }

    pub async fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("nats log");
        // `make test` sets NATS_SERVER (Debian puts it in /usr/sbin, not on every PATH).
        let binary = std::env::var_os("NATS_SERVER").unwrap_or_else(|| "nats-server".into());
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cluster_args)
            .arg("-sd")
            .arg(&self.dir)
            .arg("-c")
            .arg(workspace_root().join("deploy/nats/adtrack-users.conf"))
            .envs(TEST_NATS_USERS.map(|(who, _, password)| (format!("NATS_{}_PASSWORD", who.to_uppercase()), password)))
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start nats-server (is it installed? `make deps`)");
        self.process = Some(child);
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], self.port)), "nats-server").await;
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            terminate(&mut child);
            let _ = child.wait();
        }
    }

    /// The process id while the server runs (the bench samples it).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// The permission violations this server logged since it last started.
    pub fn permission_violations(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
        log.lines().filter(|line| line.contains(" Violation - ")).map(str::to_owned).collect()
    }

    /// SIGKILL, as a crashed machine.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}
