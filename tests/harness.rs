//! Test harness: a real `nats-server` and a real ClickHouse on free loopback ports, and the
//! three services started as processes from the workspace's build, configured only through
//! their environment variables, exactly as an operator would.
//!
//! - ClickHouse: one server per test binary (started from `dev/clickhouse_server.py`, or the
//!   one `CLICKHOUSE_URL` names, as the administrator `CLICKHOUSE_USER`/`CLICKHOUSE_PASSWORD`),
//!   a fresh database per test. Tests that stop ClickHouse start a private one with
//!   [`ClickHouse::start`]. The services log in as the administrator too, since the services'
//!   own users may only use the database `adtrack` ([`StackOptions::service_users`]).
//! - NATS: one server per test, with its own JetStream directory.
//! - Service logs go to files in the test's directory; a failing test prints their tails.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// Sample ads from `clickhouse/seed.sql`.
pub const AD_TRAIL_RUNNER: &str = "a1000000-0000-4000-8000-000000000001";
pub const AD_COFFEE_CLUB: &str = "a1000000-0000-4000-8000-000000000002";
pub const AD_CITY_BREAK: &str = "a1000000-0000-4000-8000-000000000003";
pub const AD_INACTIVE: &str = "a1000000-0000-4000-8000-000000000004";

/// The key ingest signs messages with and the aggregator checks (`EVENT_SIGNING_KEY`).
pub const TEST_EVENT_SIGNING_KEY: &str = "e2e-event-signing-key";

/// A stream message of `payload` as ingest publishes it: schema version and signature.
pub fn signed_message(payload: impl Into<Vec<u8>>) -> async_nats::jetstream::message::PublishMessage {
    let payload = payload.into();
    let key = schemas::stream::SigningKey::new(TEST_EVENT_SIGNING_KEY).expect("the test key is long enough");
    let signature = key.sign(&payload);
    async_nats::jetstream::message::PublishMessage::build()
        .header(schemas::stream::SCHEMA_VERSION_HEADER, schemas::SCHEMA_VERSION.to_string().as_str())
        .header(schemas::stream::SIGNATURE_HEADER, signature.as_str())
        .payload(payload.into())
}

/// What the tests' HTTP clients call themselves: a browser's user agent. Ingest flags a request
/// without one (`missing_user_agent`), and one from an HTTP library as a bot's.
pub const BROWSER_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// An HTTP client that sends [`BROWSER_USER_AGENT`], so that the events it sends are billable.
pub fn browser_like_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(BROWSER_USER_AGENT)
}

/// Ingest's `VISITOR_HASH_SECRET` in every test stack.
pub const TEST_VISITOR_HASH_SECRET: &str = "e2e-visitor-hash-secret";

/// The users of the ClickHouse servers started here and their passwords: the administrator,
/// then who else logs in (deploy/clickhouse/users.d/adtrack.xml).
pub const TEST_CLICKHOUSE_ADMIN: (&str, &str) = ("adtrack_admin", "e2e-clickhouse-admin-password");
pub const TEST_CLICKHOUSE_USERS: [(&str, &str, &str); 4] = [
    ("ingest", "adtrack_ingest", "e2e-clickhouse-ingest-password"),
    ("aggregator", "adtrack_aggregator", "e2e-clickhouse-aggregator-password"),
    ("query", "adtrack_query", "e2e-clickhouse-query-password"),
    ("analyst", "adtrack_analyst", "e2e-clickhouse-analyst-password"),
];

/// The NATS users of every server started here and their passwords: the administrator first,
/// then each service (deploy/nats/adtrack-users.conf). Services always log in as their own.
pub const TEST_NATS_USERS: [(&str, &str, &str); 4] = [
    ("admin", "adtrack_admin", "e2e-nats-admin-password"),
    ("ingest", "adtrack_ingest", "e2e-nats-ingest-password"),
    ("aggregator", "adtrack_aggregator", "e2e-nats-aggregator-password"),
    ("query", "adtrack_query", "e2e-nats-query-password"),
];

/// A service's (or the administrator's) NATS environment: `NATS_USER`, `NATS_PASSWORD`.
pub fn nats_login_env(who: &str) -> Vec<(String, String)> {
    let (_, user, password) =
        TEST_NATS_USERS.iter().find(|(name, ..)| *name == who).unwrap_or_else(|| panic!("no NATS user {who}"));
    vec![("NATS_USER".to_owned(), (*user).to_owned()), ("NATS_PASSWORD".to_owned(), (*password).to_owned())]
}

/// A client of the NATS servers of `urls` (comma-separated: any live node will do), as the
/// administrator.
pub async fn nats_admin(urls: &str) -> async_nats::Client {
    let servers: Vec<async_nats::ServerAddr> = urls.split(',').map(|url| url.parse().expect("NATS URL")).collect();
    let (_, user, password) = TEST_NATS_USERS[0];
    async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
        .connect(servers)
        .await
        .expect("connect to NATS")
}

/// How long any condition is waited for before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Closed UTC days (per kind, per ad or for every ad) whose events have no current stored
/// unique-visitor count: the aggregator's `closed_days` pass has not (yet) stored them.
pub const UNSTORED_CLOSED_DAYS: &str = "SELECT \
    (SELECT count() FROM ( \
      SELECT 'click' AS kind, ad_id, day, sum(clicks) AS events FROM click_events_per_day GROUP BY ad_id, day \
      UNION ALL SELECT 'impression', ad_id, day, sum(impressions) FROM impression_events_per_day GROUP BY ad_id, day) AS r \
     LEFT ANTI JOIN (SELECT kind, ad_id, day, events FROM ad_unique_visitors_per_day FINAL) AS s \
     ON r.kind = s.kind AND r.ad_id = s.ad_id AND r.day = s.day AND r.events = s.events \
     WHERE r.day < toStartOfDay(now('UTC'))) + \
    (SELECT count() FROM ( \
      SELECT 'click' AS kind, day, sum(clicks) AS events FROM click_events_per_day GROUP BY day \
      UNION ALL SELECT 'impression', day, sum(impressions) FROM impression_events_per_day GROUP BY day) AS r \
     LEFT ANTI JOIN (SELECT kind, day, events FROM all_ads_unique_visitors_per_day FINAL) AS s \
     ON r.kind = s.kind AND r.day = s.day AND r.events = s.events \
     WHERE r.day < toStartOfDay(now('UTC')))";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Where test servers keep their data: `$E2E_TMP` (make test sets `.data/test`) or the temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let base =
        std::env::var_os("E2E_TMP").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("adtrack-e2e"));
    let dir = base.join(format!("{name}-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A port nobody listens on right now, for a server started next. It is taken from below the
/// kernel's ephemeral range: the kernel also hands those ports to outgoing connections, and with
/// many tests side by side one took a port between this check and the server's own bind
/// ("Address already in use"). Each call tries the next port, from a start that differs per
/// process, so that the tests of one binary, and two binaries run at once, rarely try the same.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Below the ephemeral range (Linux: `ip_local_port_range`, 32768-60999 by default), and
    // above the ports reserved for root and the well-known services.
    let ephemeral_start: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000, ephemeral_start.max(20_000));
    let span = high - low;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = (low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}")
}

/// Polls `check` until it returns `Ok`, or fails the test with the last `Err` after `PATIENCE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() > PATIENCE => panic!("timed out waiting for {what}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn wait_for_port(addr: SocketAddr, what: &str) {
    eventually(what, || async move {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).map(|_| ()).map_err(|e| e.to_string())
    })
    .await
}

fn terminate(child: &mut Child) {
    // SIGTERM, the way an orchestrator stops a service.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}

/// A ClickHouse server (chdb-core) serving HTTP on a loopback port.
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
    fn new(
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

/// What differs between tests' stacks.
#[derive(Default)]
pub struct StackOptions {
    /// Leave the aggregator stopped (start it with `stack.aggregator.start()`).
    pub aggregator_stopped: bool,
    /// Run the aggregator with its own defaults, not the tests' shortcuts (short batch and ack
    /// waits, 1 s catalog refresh): the bench measures it as deployed.
    pub aggregator_defaults: bool,
    /// Extra environment for the aggregator.
    pub aggregator_env: Vec<(&'static str, &'static str)>,
    /// Extra environment for ingest.
    pub ingest_env: Vec<(&'static str, &'static str)>,
    /// Extra environment for the query service.
    pub query_env: Vec<(&'static str, &'static str)>,
    /// Use this ClickHouse instead of the shared one.
    pub clickhouse: Option<ClickHouseLogin>,
    /// The database `adtrack`, and each service logged in as its own ClickHouse user, as
    /// deployed (the migrations still run as the administrator). Only on a server started here
    /// for this test: the database is not a fresh one.
    pub service_users: bool,
    /// A 3-node NATS cluster and a stream with 3 replicas, instead of one server.
    pub nats_cluster: bool,
}

fn admin_command(aggregator: &Service, clickhouse: &ClickHouseLogin) -> Command {
    let mut command = aggregator.command();
    command.envs(clickhouse.env()).envs(nats_login_env("admin"));
    command
}

/// NATS, a fresh ClickHouse database with the schema and sample ads, and the three services.
pub struct Stack {
    pub dir: PathBuf,
    pub database: String,
    /// The administrator's login.
    pub clickhouse: ClickHouseLogin,
    /// The NATS server (the first node, with a cluster).
    pub nats: Nats,
    /// The other nodes of a cluster.
    pub nats_peers: Vec<Nats>,
    /// Every node's URL, comma-separated (what the services get as NATS_URL).
    pub nats_url: String,
    pub ingest: Service,
    pub aggregator: Service,
    pub query: Service,
    pub http: reqwest::Client,
    /// The test provokes NATS permission violations itself; otherwise, any one fails it.
    pub permission_violations_expected: bool,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> Stack {
        let dir = scratch_dir("stack");
        let clickhouse = match options.clickhouse {
            Some(login) => login,
            None => ClickHouse::shared().await.login.clone(),
        };
        let (nats, nats_peers) = if options.nats_cluster {
            let mut nodes = Nats::start_cluster(&dir).await.into_iter();
            let first = nodes.next().expect("three nodes");
            (first, nodes.collect())
        } else {
            (Nats::start(&dir).await, Vec::new())
        };
        let nats_url = std::iter::once(&nats).chain(&nats_peers).map(|n| n.url.clone()).collect::<Vec<_>>().join(",");
        let database =
            if options.service_users { "adtrack".to_owned() } else { format!("e2e_{}", uuid::Uuid::new_v4().simple()) };
        let common =
            vec![("NATS_URL".to_owned(), nats_url.clone()), ("CLICKHOUSE_DATABASE".to_owned(), database.clone())];
        let with = |service: &str, extra: &[(&str, &str)]| {
            let mut env = common.clone();
            let login = if options.service_users { clickhouse.as_test_user(service) } else { clickhouse.clone() };
            env.extend(login.env());
            env.extend(nats_login_env(service));
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            env
        };
        let mut aggregator_env = if options.aggregator_defaults {
            Vec::new()
        } else {
            // The click rules of invalid traffic off: most tests send clicks from one address
            // with no impression first (invalid_traffic.rs turns them on).
            vec![
                ("BATCH_MAX_WAIT_MS", "100"),
                ("ACK_WAIT_SECS", "3"),
                ("CATALOG_REFRESH_SECS", "1"),
                ("IVT_DUPLICATE_CLICK_WINDOW_SECS", "0"),
                ("IVT_CLICK_IMPRESSION_WINDOW_SECS", "0"),
                ("CLOSED_DAYS_INTERVAL_SECS", "1"),
            ]
        };
        aggregator_env.push(("EVENT_SIGNING_KEY", TEST_EVENT_SIGNING_KEY));
        if options.nats_cluster {
            aggregator_env.push(("STREAM_REPLICAS", "3"));
        }
        aggregator_env.extend(options.aggregator_env);
        let aggregator = Service::new("aggregator", "AGGREGATOR_ADDR", None, &dir, with("aggregator", &aggregator_env));
        // As `make run` does: no rate limits (here and on query), since every test client is 127.0.0.1.
        let spool_dir = dir.join("ingest-spool").display().to_string();
        let mut ingest_env = vec![
            ("CATALOG_REFRESH_SECS", "1"),
            ("SPOOL_DIR", spool_dir.as_str()),
            ("VISITOR_HASH_SECRET", TEST_VISITOR_HASH_SECRET),
            ("EVENT_SIGNING_KEY", TEST_EVENT_SIGNING_KEY),
            ("RATE_LIMIT_PER_IP", "0"),
        ];
        ingest_env.extend(options.ingest_env);
        let ingest =
            Service::new("ingest", "INGEST_ADDR", Some("INGEST_ADMIN_ADDR"), &dir, with("ingest", &ingest_env));
        let mut query_env = vec![("CACHE_TTL_MS", "200"), ("RATE_LIMIT_PER_CALLER", "0")];
        // As `make run` does: reads open on loopback, unless the test gives keys.
        if !options.query_env.iter().any(|(name, _)| *name == "API_KEY" || *name == "READ_API_KEYS") {
            query_env.push(("ANONYMOUS_READS", "true"));
        }
        query_env.extend(options.query_env);
        let query = Service::new("query", "QUERY_ADDR", Some("QUERY_ADMIN_ADDR"), &dir, with("query", &query_env));

        // A fresh cluster takes a moment to elect its JetStream leader: retry until then.
        eventually("aggregator migrate", || async {
            let migrate = admin_command(&aggregator, &clickhouse)
                .args(["migrate", "--seed"])
                .output()
                .expect("run aggregator migrate");
            if migrate.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&migrate.stderr).into_owned())
            }
        })
        .await;

        let mut stack = Stack {
            dir,
            database,
            clickhouse,
            nats,
            nats_peers,
            nats_url,
            ingest,
            aggregator,
            query,
            http: browser_like_client().build().expect("http client"),
            permission_violations_expected: false,
        };
        if !options.aggregator_stopped {
            stack.aggregator.start().await;
        }
        stack.ingest.start().await;
        stack.query.start().await;
        stack
    }

    /// The aggregator's binary as an operator runs its subcommands (`migrate`, `rebuild`,
    /// `dead-letters`): as the administrator of ClickHouse and of NATS.
    pub fn admin_command(&self) -> Command {
        admin_command(&self.aggregator, &self.clickhouse)
    }

    /// Runs `aggregator <args>` as [`Stack::admin_command`] does, to its end.
    pub fn run_admin(&self, args: &[&str]) -> std::process::Output {
        self.admin_command().args(args).output().unwrap_or_else(|e| panic!("run aggregator {args:?}: {e}"))
    }

    /// A NATS client of this stack, as the administrator.
    pub async fn nats_admin(&self) -> async_nats::Client {
        nats_admin(&self.nats_url).await
    }

    /// Runs SQL against this stack's database.
    pub async fn sql(&self, sql: &str) -> Result<String, String> {
        run_sql(&self.clickhouse, &self.database, sql).await
    }

    /// Waits until `sql` (a count) returns `expected`.
    pub async fn wait_for_count(&self, sql: &str, expected: u64) {
        eventually(&format!("{sql} = {expected}"), || async {
            match self.count(sql).await {
                n if n == expected => Ok(()),
                n => Err(format!("{n}")),
            }
        })
        .await
    }

    /// A single number from SQL.
    pub async fn count(&self, sql: &str) -> u64 {
        let text = self.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        text.parse().unwrap_or_else(|_| panic!("{sql}: not a number: {text:?}"))
    }

    /// POSTs a JSON body to ingest; returns the status and the JSON answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, "application/json", body.to_string().into_bytes(), &[]).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.http.post(self.ingest.url(path)).header("content-type", content_type).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read_answer(&format!("POST {path}"), response).await
    }

    /// GETs from the query service; returns the status and the JSON answer.
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.query.url(path_and_query))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e:?}"));
        read_answer(&format!("GET {path_and_query}"), response).await
    }

    /// A service's Prometheus text.
    pub async fn metrics(&self, service: &Service) -> String {
        let url = format!("http://{}/metrics", service.metrics_addr);
        self.http.get(url).send().await.expect("GET /metrics").text().await.expect("metrics text")
    }
}

/// One series' value in Prometheus text: `series` is the name with its labels as printed
/// (`name{a="x",b="y"}`, labels in the order the service prints them), or the bare name.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of the series of metric `name` in Prometheus text whose labels include each of
/// `labels` (`key="value"`, as printed); with none, of all its series.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (printed, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let has = |wanted: &&str| printed.split(',').any(|label| label == *wanted);
            labels.iter().all(has).then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The status and JSON body of an answer. Every error answer of every test is checked to be an
/// RFC 9457 problem (`application/problem+json` with `type`, `title` and the same `status`).
pub async fn read_answer(request: &str, response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        assert_problem(request, status, &content_type, &body);
    }
    (status, body)
}

/// Panics unless `body` is an RFC 9457 problem for `status`.
pub fn assert_problem(request: &str, status: u16, content_type: &str, body: &Value) {
    assert_eq!(content_type, "application/problem+json", "{request}: {status} {body}");
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{request}: {body}");
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{request}: {body}");
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for service in [&self.ingest, &self.aggregator, &self.query] {
                eprintln!("----- {} log (last 30 lines) -----\n{}", service.name, service.log_tail(30));
            }
            eprintln!("----- test data kept in {} -----", self.dir.display());
        } else if !self.permission_violations_expected {
            // A service asked NATS for something its user may not do: some path of it fails
            // (often quietly, as a warning) wherever deploy/nats/adtrack-users.conf is used.
            let violations: Vec<String> =
                std::iter::once(&self.nats).chain(&self.nats_peers).flat_map(Nats::permission_violations).collect();
            assert!(violations.is_empty(), "NATS refused a service:\n{}", violations.join("\n"));
        }
    }
}

/// What a [`Load`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Distinct event ids that got a 202, by kind: exactly what must be counted.
    pub clicks: HashSet<uuid::Uuid>,
    pub impressions: HashSet<uuid::Uuid>,
    /// Every answer by status (0: no answer, e.g. connection refused).
    pub statuses: BTreeMap<u16, u64>,
}

impl LoadReport {
    pub fn sends(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// Client traffic that behaves as a careful SDK should: each event carries its own event_id and
/// is sent until ingest answers 202, retrying 503s and connection errors with the same id; every
/// `repeat_every`-th event is then sent once more (a retry after a lost answer).
pub struct Load {
    task: tokio::task::JoinHandle<LoadReport>,
}

impl Load {
    /// `events` events over the three sample ads (one in four an impression), `concurrency` at a
    /// time, each sender pausing `pause` between its events.
    pub fn start(ingest_url: String, events: usize, concurrency: usize, repeat_every: usize, pause: Duration) -> Load {
        let task = tokio::spawn(async move {
            let http = browser_like_client().timeout(Duration::from_secs(10)).build().expect("http client");
            let outcomes: Vec<(bool, uuid::Uuid, Vec<u16>)> = futures::stream::iter(0..events)
                .map(|i| {
                    let (http, url) = (http.clone(), ingest_url.clone());
                    async move {
                        let ads = [AD_TRAIL_RUNNER, AD_COFFEE_CLUB, AD_CITY_BREAK];
                        let id = uuid::Uuid::now_v7();
                        let (is_click, path) =
                            if i % 4 == 3 { (false, "/ads/impression") } else { (true, "/ads/click") };
                        let mut body = json!({"event_id": id, "ad_id": ads[i % 3]});
                        if is_click {
                            body["playback_time_secs"] = json!((i % 60) as f64);
                        }
                        let sends = if repeat_every > 0 && i % repeat_every == 0 { 2 } else { 1 };
                        let mut statuses = Vec::new();
                        for _ in 0..sends {
                            loop {
                                let status = match http.post(format!("{url}{path}")).json(&body).send().await {
                                    Ok(response) => response.status().as_u16(),
                                    Err(_) => 0,
                                };
                                statuses.push(status);
                                match status {
                                    202 => break,
                                    0 | 503 => tokio::time::sleep(Duration::from_millis(100)).await,
                                    _ => return (is_click, id, statuses),
                                }
                            }
                        }
                        tokio::time::sleep(pause).await;
                        (is_click, id, statuses)
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let mut report = LoadReport::default();
            for (is_click, id, statuses) in outcomes {
                if statuses.last() == Some(&202) {
                    if is_click {
                        report.clicks.insert(id)
                    } else {
                        report.impressions.insert(id)
                    };
                }
                for status in statuses {
                    *report.statuses.entry(status).or_default() += 1;
                }
            }
            report
        });
        Load { task }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until every event got its 202 (or a final error).
    pub async fn finish(self) -> LoadReport {
        self.task.await.expect("load task")
    }
}

impl Stack {
    /// Asserts that ClickHouse holds exactly the events `report` got 202s for: each once, in the
    /// raw tables and in the rollups. Prints expected versus actual.
    pub async fn assert_counted_exactly(&self, report: &LoadReport) {
        let (clicks, impressions) = (report.clicks.len() as u64, report.impressions.len() as u64);
        eventually("every accepted event in ClickHouse", || async {
            let stored =
                self.count("SELECT (SELECT count() FROM click_events) + (SELECT count() FROM impression_events)").await;
            if stored >= clicks + impressions {
                Ok(())
            } else {
                Err(format!("{stored} of {} rows", clicks + impressions))
            }
        })
        .await;
        // Only once the consumer has nothing pending or unacked can no redelivery still come.
        eventually("the consumer to drain", || async {
            match self.stream_state().await {
                (_, 0, 0) => Ok(()),
                (_, pending, unacked) => Err(format!("{pending} pending, {unacked} unacked")),
            }
        })
        .await;
        let raw_clicks = self.count("SELECT count() FROM click_events").await;
        let distinct_clicks = self.count("SELECT uniqExact(event_id) FROM click_events").await;
        let rollup_clicks = self.count("SELECT sum(clicks) FROM click_events_per_minute").await;
        let raw_impressions = self.count("SELECT count() FROM impression_events").await;
        let rollup_impressions = self.count("SELECT sum(impressions) FROM impression_events_per_minute").await;
        println!(
            "clicks: expected {clicks}, raw {raw_clicks} (distinct {distinct_clicks}), rollup {rollup_clicks}; \
             impressions: expected {impressions}, raw {raw_impressions}, rollup {rollup_impressions}; answers {:?}",
            report.statuses
        );
        assert_eq!((raw_clicks, distinct_clicks, rollup_clicks), (clicks, clicks, clicks), "clicks");
        assert_eq!((raw_impressions, rollup_impressions), (impressions, impressions), "impressions");
        for rollup in ["hour", "day"] {
            let clicks_in = self.count(&format!("SELECT sum(clicks) FROM click_events_per_{rollup}")).await;
            let impressions_in =
                self.count(&format!("SELECT sum(impressions) FROM impression_events_per_{rollup}")).await;
            assert_eq!((clicks_in, impressions_in), (clicks, impressions), "per-{rollup} rollups");
        }
        for (table, accepted) in [("click_events", &report.clicks), ("impression_events", &report.impressions)] {
            let ids = self.sql(&format!("SELECT event_id FROM {table}")).await.expect("event ids");
            let stored: HashSet<uuid::Uuid> = ids.lines().filter_map(|l| l.parse().ok()).collect();
            assert!(&stored == accepted, "{table} holds exactly the accepted events");
        }
    }

    /// Messages in the stream, and the aggregator consumer's undelivered and unacked counts.
    pub async fn stream_state(&self) -> (u64, u64, usize) {
        // Any live node will do (a test may have killed one).
        let js = async_nats::jetstream::new(nats_admin(&self.nats_url).await);
        let stream = js.get_stream("AD_EVENTS").await.expect("stream");
        let mut consumer =
            stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>("aggregator").await.expect("consumer");
        let info = consumer.info().await.expect("consumer info");
        let messages = stream.get_info().await.expect("stream info").state.messages;
        (messages, info.num_pending, info.num_ack_pending)
    }
}

/// Third-party tools the tests run from the project venv (`make test-deps` installs them):
/// the contract tools and the browser tests' Playwright.
pub mod tools {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use super::workspace_root;

    /// Longest any one tool may run before the test fails.
    const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

    /// The project venv's bin directory (`CONTRACT_VENV` overrides), checked to hold `tools`.
    pub fn venv_bin(tools: &[&str]) -> PathBuf {
        let venv =
            std::env::var_os("CONTRACT_VENV").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".venv"));
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
}
