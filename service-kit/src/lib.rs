//! What the three services share, so each `main.rs` reads as its data path:
//! connection settings ([`NatsArgs`], [`ClickHouseArgs`]), JSON logging, the `/healthz`,
//! `/readyz` and `/metrics` endpoints, and the shutdown signal.

pub mod catalog;
pub mod http_metrics;
pub mod limits;
pub mod operations;
pub mod rate;
pub mod request_id;
pub mod spec;
pub mod web;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use poem::http::StatusCode;
use poem::{EndpointExt, Response, Route};
use prometheus::{Encoder, Registry, TextEncoder};

/// How to reach NATS JetStream and which stream holds the events.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL; several (comma-separated) for a cluster.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// JetStream stream holding every accepted event.
    #[arg(long, env = "NATS_STREAM", default_value = schemas::stream::DEFAULT_STREAM)]
    pub nats_stream: String,
    /// Subject prefix: events go to `<prefix>.click` and `<prefix>.impression`.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = schemas::stream::DEFAULT_SUBJECT_PREFIX)]
    pub nats_subject_prefix: String,
    #[command(flatten)]
    pub login: NatsLogin,
}

impl NatsArgs {
    /// Connects, retrying in the background after the first success (async-nats reconnects).
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        connect_nats(&self.nats_url, &self.login).await
    }
}

/// Who a service is to NATS (deploy/nats/adtrack-users.conf).
#[derive(Debug, Clone, clap::Args)]
pub struct NatsLogin {
    /// This service's own NATS user.
    #[arg(long, env = "NATS_USER", default_value = "")]
    pub nats_user: String,
    /// Required: NATS lets in no one without credentials.
    #[arg(long, env = "NATS_PASSWORD", default_value = "", hide_env_values = true)]
    pub nats_password: String,
}

impl NatsLogin {
    pub fn validate(&self) -> Result<(), String> {
        if self.nats_user.is_empty() || self.nats_password.is_empty() {
            return Err(
                "NATS_USER and NATS_PASSWORD are required: this service's NATS user (docs/deploy.md, \"NATS users\")"
                    .into(),
            );
        }
        Ok(())
    }

    /// Where this user's replies come: its own inbox prefix, the only one its permissions let
    /// it subscribe to.
    pub fn inbox_prefix(&self) -> String {
        format!("_INBOX.{}", self.nats_user)
    }
}

/// Connects to the NATS servers of `urls` (comma-separated) as `login`, retrying in the
/// background until one answers and reconnecting after that.
pub async fn connect_nats(urls: &str, login: &NatsLogin) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers = urls
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e))?;
    async_nats::ConnectOptions::with_user_and_password(login.nats_user.clone(), login.nats_password.clone())
        .custom_inbox_prefix(login.inbox_prefix())
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
}

/// How long a stopping service waits on NATS: while the client is connected, and once it is
/// not. A connected server that is slow (a loaded machine) is waited for longer, since what is
/// waited for (the aggregator's last acks) would otherwise be redelivered after the ack wait;
/// one that is gone may never come back.
const BEFORE_EXIT_WHILE_CONNECTED: Duration = Duration::from_secs(30);
const BEFORE_EXIT_WHILE_DISCONNECTED: Duration = Duration::from_secs(5);

/// Awaits `work`, something NATS must take or answer, before the process exits: for at most 30 s
/// while the client is connected, 5 s once it is not. Bounded, because with NATS unreachable the
/// client waits for a reconnect that may never come, and the service would never finish its
/// SIGTERM. `None`, after a warning naming `what`, when it gave up.
pub async fn before_exit<T>(nats: &async_nats::Client, what: &str, work: impl Future<Output = T>) -> Option<T> {
    let started = std::time::Instant::now();
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let connected = nats.connection_state() == async_nats::connection::State::Connected;
        let limit = if connected { BEFORE_EXIT_WHILE_CONNECTED } else { BEFORE_EXIT_WHILE_DISCONNECTED };
        if started.elapsed() >= limit {
            tracing::warn!(connected, waited_secs = limit.as_secs(), "NATS gave no answer before exit: {what}");
            return None;
        }
    }
}

/// Hands NATS whatever the client still buffers before the process exits, within
/// [`before_exit`]'s bounds. Giving up loses nothing: every event answered 202 already has its
/// PubAck. (The aggregator's acks need an answer, not a flush: `aggregator::consumer::confirm_acks`.)
pub async fn flush_before_exit(nats: &async_nats::Client) {
    if let Some(Err(error)) = before_exit(nats, "flush", nats.flush()).await {
        tracing::warn!(%error, "NATS not flushed before exit");
    }
}

/// Where the aggregator announces its writes and the query service listens for them
/// (`schemas::stream::WrittenNotice`).
#[derive(Debug, Clone, clap::Args)]
pub struct WrittenArgs {
    /// Core-NATS subject announcing each write to ClickHouse; must lie outside the stream's
    /// `<NATS_SUBJECT_PREFIX>.>`.
    #[arg(long, env = "NATS_WRITTEN_SUBJECT", default_value = schemas::stream::DEFAULT_WRITTEN_SUBJECT)]
    pub nats_written_subject: String,
}

/// How fresh a service's copy of the ad catalog is kept.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogArgs {
    /// How often the ad catalog is re-read from ClickHouse.
    #[arg(long, env = "CATALOG_REFRESH_SECS", default_value_t = 5)]
    pub catalog_refresh_secs: u64,
}

impl CatalogArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.catalog_refresh_secs == 0 {
            return Err("CATALOG_REFRESH_SECS must be at least 1".into());
        }
        Ok(())
    }

    pub fn refresh(&self) -> Duration {
        Duration::from_secs(self.catalog_refresh_secs)
    }
}

/// How to reach ClickHouse over HTTP.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP interface URL.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    /// Database holding the ads catalog, raw events and rollups.
    #[arg(long, env = "CLICKHOUSE_DATABASE", default_value = "adtrack")]
    pub clickhouse_database: String,
    /// This service's own ClickHouse user (deploy/clickhouse/users.d/adtrack.xml).
    #[arg(long, env = "CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    /// Required: a ClickHouse user without a password is open to anything that reaches the port.
    #[arg(long, env = "CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    pub clickhouse_password: String,
}

impl ClickHouseArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.clickhouse_password.is_empty() {
            return Err(format!(
                "CLICKHOUSE_PASSWORD is empty: give ClickHouse user {:?} a password (docs/deploy.md, \"ClickHouse users\")",
                self.clickhouse_user
            ));
        }
        Ok(())
    }

    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_database(&self.clickhouse_database)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
    }

    /// A client for the server itself, before the database exists.
    pub fn server_client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
    }
}

/// The body of every service's `main`: JSON logging, configuration parsed from flags and
/// environment and validated (exit code 2 naming the variable), then `run` (exit code 1 on error).
pub async fn run_service<C, F, Fut>(name: &str, validate: fn(&C) -> Result<(), String>, run: F) -> ExitCode
where
    C: clap::Parser,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    init_logging();
    let config = C::parse();
    if let Err(message) = validate(&config) {
        tracing::error!(%message, "invalid configuration");
        return ExitCode::from(2);
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(service = name, error = format!("{error:#}"), "stopped on error");
            ExitCode::FAILURE
        }
    }
}

/// poem's server names the client's full address and port when it closes an idle connection
/// (at INFO), and no full client IP may reach the logs: its lines below WARN are dropped,
/// whatever `RUST_LOG` says.
const QUIET_POEM_SERVER: &str = "poem::server=warn";

/// JSON logs on stderr (stdout stays free for command output); the level comes from
/// `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(QUIET_POEM_SERVER.parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        // The `request` span (request_id) on every line written while a request is handled.
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). On Unix, the handlers are installed by this call,
/// not when the future is first polled: a signal that arrives in between is kept, where it would
/// otherwise kill the process on the spot. The aggregator relies on this, since its consumer
/// starts writing (and must finish its batch) before the server first polls the future.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::error!(%error, "cannot listen for {name}");
                None
            }
        };
        (listen(SignalKind::terminate(), "SIGTERM"), listen(SignalKind::interrupt(), "SIGINT"))
    };
    async move {
        #[cfg(unix)]
        {
            async fn received(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (term, interrupt) = signals;
            tokio::select! {
                () = received(term) => {},
                () = received(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested");
    }
}

/// A dependency check for `/readyz`: `Err(reason)` when the dependency does not answer.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Builds a [`ReadinessCheck`] from an async closure.
pub fn readiness_check<F, Fut>(check: F) -> ReadinessCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || check().boxed())
}

/// Checks that ClickHouse answers a trivial query.
pub fn clickhouse_check(client: clickhouse::Client) -> ReadinessCheck {
    readiness_check(move || {
        let client = client.clone();
        async move { client.query("SELECT 1").execute().await.map_err(|e| format!("clickhouse: {e}")) }
    })
}

/// Checks that the NATS connection is up.
pub fn nats_check(client: async_nats::Client) -> ReadinessCheck {
    readiness_check(move || {
        let state = client.connection_state();
        async move {
            match state {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(format!("nats: {other}")),
            }
        }
    })
}

/// Adds `/healthz` (the process is alive), `/readyz` (every dependency answers) and `/metrics`.
pub fn with_ops_routes(route: Route, registry: Registry, checks: Arc<Vec<(&'static str, ReadinessCheck)>>) -> Route {
    with_health_routes(route, checks).at("/metrics", poem::endpoint::make_sync(move |_| metrics(&registry)))
}

/// `/healthz` and `/readyz` (what orchestrators probe), without `/metrics`: for a listener
/// clients reach, whose metrics are served on an admin address ([`serve_admin`]).
pub fn with_health_routes(route: Route, checks: Arc<Vec<(&'static str, ReadinessCheck)>>) -> Route {
    route.at("/healthz", poem::endpoint::make_sync(|_| "ok")).at(
        "/readyz",
        poem::endpoint::make(move |_| {
            let checks = checks.clone();
            async move { readiness(&checks).await }
        }),
    )
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`, an address for Prometheus and
/// operators only, until the process ends. Binds at once, so a taken address stops the start.
pub fn serve_admin(
    addr: std::net::SocketAddr,
    registry: Registry,
    checks: Arc<Vec<(&'static str, ReadinessCheck)>>,
) -> std::io::Result<()> {
    let acceptor = limits::listen(addr)?;
    let app = with_ops_routes(Route::new(), registry, checks).catch_all_error(problem_for_error);
    tracing::info!(%addr, "metrics on the admin address");
    tokio::spawn(async move {
        if let Err(error) = poem::Server::new_with_acceptor(acceptor).run(app).await {
            tracing::error!(%error, "admin address stopped");
        }
    });
    Ok(())
}

async fn readiness(checks: &[(&'static str, ReadinessCheck)]) -> Response {
    let mut failures = Vec::new();
    for (name, check) in checks {
        match tokio::time::timeout(Duration::from_secs(2), check()).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => failures.push(reason),
            Err(_) => failures.push(format!("{name}: no answer within 2 s")),
        }
    }
    if failures.is_empty() {
        Response::builder().status(StatusCode::OK).body("ready")
    } else {
        Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(failures.join("\n"))
    }
}

fn metrics(registry: &Registry) -> Response {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => Response::builder().content_type(prometheus::TEXT_FORMAT).body(buffer),
        Err(error) => Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(error.to_string()),
    }
}

/// Serves `spec` (JSON) as is: the service's amended OpenAPI document (see [`spec`]).
pub fn spec_endpoint(spec: String) -> impl poem::Endpoint<Output = Response> {
    poem::endpoint::make_sync(move |_| {
        Response::builder().content_type("application/json; charset=utf-8").body(spec.clone())
    })
}

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every error answer of every service and operation: RFC 9457 problem details, sent as
/// `application/problem+json`.
#[derive(Debug, Clone, poem_openapi::Object)]
#[oai(example)]
pub struct Problem {
    /// Always `about:blank`: the HTTP status is the kind of problem (RFC 9457, section 4.2.1);
    /// `field` and `detail` say what to fix.
    #[oai(rename = "type")]
    pub problem_type: String,
    /// The status's standard phrase, e.g. `Unprocessable Entity`.
    pub title: String,
    /// The HTTP status code, repeated for clients that keep only the body.
    pub status: u16,
    /// What is wrong with this request, for people.
    pub detail: String,
    /// The request field or parameter at fault, when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: field.map(str::to_owned),
        }
    }

    /// The whole answer, for errors raised outside the OpenAPI operations (unknown paths,
    /// methods, oversized headers).
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = poem_openapi::types::ToJSON::to_json_string(&self);
        Response::builder().status(status).content_type(PROBLEM_JSON).body(body)
    }
}

/// A query or path parameter poem-openapi could not parse or validate, as a 400 problem naming
/// it; `path_param` is the name of the operation's one path parameter (poem-openapi's path
/// errors do not carry it).
pub fn parameter_problem(error: &poem::Error, path_param: &'static str) -> Problem {
    if let Some(e) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        return Problem::new(StatusCode::BAD_REQUEST, format!("{path_param}: {}", e.reason), Some(path_param));
    }
    let field = error.downcast_ref::<poem_openapi::error::ParseParamError>().map(|e| e.name);
    Problem::new(StatusCode::BAD_REQUEST, error.to_string(), field)
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ad 0b0e7a4c-5a0e-4a53-9d8f-1f2e3d4c5b6a is inactive",
            Some("ad_id"),
        )
    }
}

/// Answers every error that escapes the OpenAPI operations (404 for an unknown path, 405 for a
/// wrong method, ...) as a [`Problem`], so that clients meet one error shape everywhere.
pub async fn problem_for_error(error: poem::Error) -> Response {
    let status = error.status();
    let detail = if status == StatusCode::NOT_FOUND { "no such path".to_owned() } else { error.to_string() };
    Problem::new(status, detail, None).into_response()
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    /// A SIGTERM between the call and the first poll is kept. Were the handler installed only
    /// at the first poll, the signal would end this test process.
    #[tokio::test]
    async fn a_sigterm_before_the_first_poll_is_kept() {
        let shutdown = super::shutdown_signal();
        let kill = std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status();
        assert!(kill.is_ok_and(|status| status.success()), "kill -TERM ran");
        tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("the SIGTERM ends the wait");
    }
}
