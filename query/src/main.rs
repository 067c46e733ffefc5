use std::process::ExitCode;
use std::sync::Arc;

use poem::{EndpointExt, Route};
use poem_openapi::OpenApiService;
use query::api::QueryApi;
use query::config::Config;
use query::metrics::Metrics;
use query::repo::Repo;
use query::service::Analytics;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::run_service("query", Config::validate, run).await
}

async fn run(config: Config) -> anyhow::Result<()> {
    let clickhouse = config.clickhouse.client();
    let metrics = Metrics::new()?;
    let repo = Repo::new(clickhouse.clone(), metrics.clickhouse_seconds.clone());
    let analytics =
        Analytics::new(repo, config.cache_ttl(), config.cache_past_ttl(), config.cache_max_bytes(), &metrics);
    let analytics = Arc::new(analytics);
    tokio::spawn(query::written::forget_on_writes(
        config.nats_url.clone(),
        config.nats_login.clone(),
        config.written.nats_written_subject.clone(),
        analytics.clone(),
        metrics.clone(),
    ));
    let keys = query::auth::Keys::new(&config.api_keys, &config.read_api_keys, config.anonymous_reads);
    let api = OpenApiService::new(
        QueryApi { analytics, keys: Arc::new(keys.clone()), audience_ttl_days: config.audience_ttl_days },
        "Ad analytics",
        env!("CARGO_PKG_VERSION"),
    );
    let gate = Arc::new(query::auth::Gate {
        keys,
        rate_limiter: service_kit::rate::RateLimiter::new(config.rate_limit_per_caller, config.rate_limit_burst),
    });
    let docs = api.swagger_ui();
    let spec =
        query::api::add_gate_answers(&service_kit::spec::close_objects(&api.spec(), query::api::CLOSED_SCHEMAS)?)?;
    let operations = service_kit::operations::Operations::from_spec(&spec)?;
    let http_metrics = service_kit::http_metrics::HttpMetrics::new(
        &metrics.registry,
        &operations,
        &[&query::dashboard::DASHBOARD_PAGE],
    )?;
    let max_header_bytes = config.connections.max_header_bytes;
    let checks = Arc::new(vec![("clickhouse", service_kit::clickhouse_check(clickhouse))]);
    service_kit::serve_admin(config.admin_addr, metrics.registry.clone(), checks.clone())?;
    let app = service_kit::with_health_routes(
        service_kit::web::serve(
            Route::new().nest("/", api).nest("/docs", docs).at("/openapi.json", service_kit::spec_endpoint(spec)),
            &query::dashboard::DASHBOARD_PAGE,
        ),
        checks,
    )
    .with(service_kit::operations::KnownQueryParameters::new(operations))
    .around(move |next, req| query::auth::gate(next, req, gate.clone()))
    .around(move |next, req| service_kit::limits::limit_header_size(next, req, max_header_bytes))
    .catch_all_error(service_kit::problem_for_error)
    .around(service_kit::request_id::with_request_id)
    .with(http_metrics);
    config
        .connections
        .server(config.addr, "query", metrics.connections_refused.clone())?
        .run_with_graceful_shutdown(app, service_kit::shutdown_signal(), Some(std::time::Duration::from_secs(10)))
        .await?;
    tracing::info!("query stopped");
    Ok(())
}
