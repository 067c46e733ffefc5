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

mod answers;
mod load;
mod servers;
mod service;
mod stack;
pub mod tools;

pub use answers::{assert_problem, metric, metric_sum, read_answer};
pub use load::{Load, LoadReport};
pub use servers::{run_sql, ClickHouse, ClickHouseLogin, Nats};
pub use service::Service;
pub use stack::{Stack, StackOptions};

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

pub(crate) async fn wait_for_port(addr: SocketAddr, what: &str) {
    eventually(what, || async move {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).map(|_| ()).map_err(|e| e.to_string())
    })
    .await
}

pub(crate) fn terminate(child: &mut Child) {
    // SIGTERM, the way an orchestrator stops a service.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}
