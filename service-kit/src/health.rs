//! `/healthz`, `/readyz` and `/metrics`, on a service's own routes or its admin address.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use poem::http::StatusCode;
use poem::{EndpointExt, Response, Route};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::limits;
use crate::problem::problem_for_error;

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
