use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ingest::coalesce::Coalescer;
use ingest::config::Config;
use ingest::http::{BodyLimits, IngestApi};
use ingest::metrics::Metrics;
use ingest::publisher::{self, Publisher};
use ingest::service::Ingest;
use ingest::spool::Spool;
use poem::{EndpointExt, Route};
use poem_openapi::OpenApiService;
use service_kit::catalog::Catalog;
use service_kit::limits::limit_header_size;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::run_service("ingest", Config::validate, run).await
}

async fn run(config: Config) -> anyhow::Result<()> {
    let nats = config.nats.connect().await.context("connecting to NATS")?;
    let js = async_nats::jetstream::new(nats.clone());
    let spool = Arc::new(Spool::open(&config.spool_dir, config.spool_max_bytes)?);
    let limits = publisher::stream_limits_once_reached(&js, &config.nats.nats_stream).await.map_err(|e| {
        anyhow::anyhow!(
            "reading stream {:?}: {e} (the aggregator creates it: run `aggregator migrate` first)",
            config.nats.nats_stream
        )
    })?;

    let clickhouse = config.clickhouse.client();
    let catalog = Arc::new(Catalog::default());
    match catalog.load(&clickhouse).await {
        Ok(count) => tracing::info!(ads = count, "catalog loaded"),
        Err(error) => tracing::warn!(%error, "catalog not loaded yet; event requests get 503 until it is"),
    }
    tokio::spawn(catalog.clone().refresh_forever(clickhouse, config.catalog.refresh()));

    let metrics = Metrics::new()?;
    let rate_limiter = service_kit::rate::RateLimiter::new(config.rate_limit_per_ip, config.rate_limit_burst);
    let signing = config.signing_key().map_err(anyhow::Error::msg)?;
    let publisher =
        Publisher::new(js, config.nats.nats_subject_prefix.clone(), config.publish_timeout(), signing, metrics.clone());
    tokio::spawn(ingest::spool::replay_forever(spool.clone(), publisher.clone(), metrics.clone()));
    let ingest = Arc::new(Ingest {
        catalog: catalog.clone(),
        rate_limiter,
        publisher: publisher.clone(),
        singles: Coalescer::start(publisher, config.publish_max_in_flight),
        limits,
        spool,
        trusted_proxies: config.trusted_proxy_nets().map_err(anyhow::Error::msg)?,
        max_batch_events: config.max_batch_events,
        request_rules: ingest::ivt::RequestRules::new(config.datacenter_ranges().map_err(anyhow::Error::msg)?),
        privacy: ingest::privacy::Privacy::new(&config.visitor_hash_secret, config.keep_raw_ips),
        metrics: metrics.clone(),
    });
    let api = OpenApiService::new(IngestApi { ingest: ingest.clone() }, "Ad event ingest", env!("CARGO_PKG_VERSION"));
    let docs = api.swagger_ui();
    let spec = service_kit::spec::close_objects(&api.spec(), ingest::http::CLOSED_SCHEMAS)?;
    let operations = service_kit::operations::Operations::from_spec(&spec)?;
    let http_metrics =
        service_kit::http_metrics::HttpMetrics::new(&metrics.registry, &operations, &[&ingest::demo::DEMO_PAGE])?;
    let catalog_check = service_kit::readiness_check(move || {
        let loaded = catalog.is_loaded();
        async move {
            if loaded {
                Ok(())
            } else {
                Err("catalog: not loaded yet".to_owned())
            }
        }
    });
    // Not NATS: while it is down, redirects and pixels are still answered (and spooled), and the
    // JSON endpoints answer 503 with Retry-After themselves.
    let checks = std::sync::Arc::new(vec![("catalog", catalog_check)]);
    service_kit::serve_admin(config.admin_addr, metrics.registry.clone(), checks.clone())?;
    let routes = service_kit::with_health_routes(
        ingest::demo::serve(
            Route::new().nest("/", api).nest("/docs", docs).at("/openapi.json", service_kit::spec_endpoint(spec)),
            ingest.catalog.clone(),
        ),
        checks,
    );
    let max_header_bytes = config.connections.max_header_bytes;
    // Without origins, no CORS headers at all: browsers then refuse cross-origin calls.
    let cors = (!config.cors_allowed_origins.is_empty()).then(|| {
        poem::middleware::Cors::new()
            .allow_origins(config.cors_allowed_origins.iter().map(String::as_str))
            .allow_methods([poem::http::Method::GET, poem::http::Method::POST])
            .allow_headers(["content-type", service_kit::request_id::HEADER])
            .expose_headers([service_kit::request_id::HEADER])
            .max_age(600)
    });
    let app = routes
        .data(BodyLimits::new(
            config.max_body_bytes,
            config.max_batch_body_bytes,
            config.max_batch_bytes_in_flight,
            config.body_read_timeout(),
        ))
        .with(service_kit::operations::KnownQueryParameters::new(
            operations.ignoring_unknown_query_parameters(ingest::http::LINK_OPERATIONS),
        ))
        .around(move |next, req| limit_header_size(next, req, max_header_bytes))
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .catch_all_error(service_kit::problem_for_error)
        .around(service_kit::request_id::with_request_id)
        .with(http_metrics);
    config
        .connections
        .server(config.addr, "ingest", metrics.connections_refused.clone())?
        .run_with_graceful_shutdown(
            app,
            service_kit::shutdown_signal(),
            Some(std::time::Duration::from_secs(config.shutdown_grace_secs)),
        )
        .await?;
    service_kit::flush_before_exit(&nats).await;
    tracing::info!("ingest stopped");
    Ok(())
}
