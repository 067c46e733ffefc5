use std::process::ExitCode;
use std::sync::Arc;

use aggregator::backoff::Backoff;
use aggregator::config::{Command, Config, DeadLetterCommand};
use aggregator::consumer::Consumer;
use aggregator::dead_letter::{self, DeadLetters};
use aggregator::metrics::Metrics;
use aggregator::sink::Sink;
use aggregator::{migrate, setup};
use poem::listener::TcpListener;
use poem::{EndpointExt, Server};
use service_kit::catalog::Catalog;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::run_service("aggregator", Config::validate, run).await
}

async fn run(config: Config) -> anyhow::Result<()> {
    let nats = config.nats.connect().await?;
    let js = async_nats::jetstream::new(nats.clone());
    if let Some(Command::DeadLetters(command)) = &config.command {
        return dead_letters(&js, &config, command).await;
    }

    let clickhouse = config.clickhouse.client();
    if let Some(Command::Rebuild) = &config.command {
        return aggregator::rebuild::run(&config.clickhouse.server_client(), &clickhouse, &js, &config).await;
    }
    if let Some(Command::Migrate { seed }) = config.command {
        migrate::apply(&config.clickhouse.server_client(), &clickhouse, &config.clickhouse.clickhouse_database, seed)
            .await
            .map_err(|e| anyhow::anyhow!("applying clickhouse migrations: {e}"))?;
        migrate::apply_retention(&clickhouse, config.raw_events_ttl_days, config.audience_ttl_days)
            .await
            .map_err(|e| anyhow::anyhow!("applying RAW_EVENTS_TTL_DAYS and AUDIENCE_TTL_DAYS: {e}"))?;
    } else {
        migrate::check_applied(&config.clickhouse.server_client(), &config.clickhouse.clickhouse_database).await?;
    }
    let stream = setup::ensure_stream(&js, &config).await.map_err(|e| anyhow::anyhow!("creating the stream: {e}"))?;
    if matches!(config.command, Some(Command::Migrate { .. })) {
        migrate::record_signing_start(&clickhouse, stream.state.last_sequence)
            .await
            .map_err(|e| anyhow::anyhow!("recording since when messages are signed: {e}"))?;
    }
    dead_letter::ensure_stream(&js, &config.dead_letters, config.stream.stream_replicas)
        .await
        .map_err(|e| anyhow::anyhow!("creating the dead-letter stream: {e}"))?;
    let pull = setup::ensure_consumer(&js, &config).await.map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?;
    if matches!(config.command, Some(Command::Migrate { .. })) {
        tracing::info!("migrations, streams and consumer are in place");
        return Ok(());
    }

    let catalog = Arc::new(Catalog::default());
    if let Err(error) = catalog.load(&clickhouse).await {
        tracing::warn!(%error, "catalog not loaded yet; events are counted without the unknown-ad check until it is");
    }
    tokio::spawn(catalog.clone().refresh_forever(clickhouse.clone(), config.catalog.refresh()));

    let metrics = Metrics::new()?;
    let http_metrics = service_kit::http_metrics::HttpMetrics::new(
        &metrics.registry,
        &service_kit::operations::Operations::default(),
        &[],
    )?;
    let ops = service_kit::with_ops_routes(
        poem::Route::new(),
        metrics.registry.clone(),
        Arc::new(vec![
            ("clickhouse", service_kit::clickhouse_check(clickhouse.clone())),
            ("nats", service_kit::nats_check(nats.clone())),
        ]),
    );
    let stream =
        js.get_stream(&config.nats.nats_stream).await.map_err(|e| anyhow::anyhow!("looking up the stream: {e}"))?;
    let subjects = schemas::stream::stream_subjects(&config.nats.nats_subject_prefix);
    tokio::spawn(aggregator::lag::watch(pull.clone(), stream, subjects, metrics.clone()));
    let written = aggregator::written::Announcer::new(nats.clone(), &config.written.nats_written_subject);
    tokio::spawn(aggregator::closed_days::store_forever(
        clickhouse.clone(),
        config.closed_days.clone(),
        config.raw_events_ttl_days,
        written.clone(),
    ));
    let acked_to = pull.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signatures = aggregator::consumer::Signatures {
        key: config.signing_key().map_err(anyhow::Error::msg)?,
        required_from_seq: migrate::signed_from_stream_seq(&clickhouse)
            .await
            .map_err(|e| anyhow::anyhow!("reading event_signing: {e}"))?,
    };
    let consumer = Consumer {
        consumer: pull,
        signatures,
        clickhouse: clickhouse.clone(),
        sink: Sink::new(clickhouse, Backoff::default(), metrics.clone())
            .with_invalid_traffic_rules(aggregator::ivt::Rules::from_args(&config.invalid_traffic)),
        dead_letters: DeadLetters::new(js, &config.dead_letters),
        written,
        catalog,
        metrics,
        args: config.consumer.clone(),
    };
    let grace = std::time::Duration::from_secs(config.shutdown_grace_secs);
    // Listen before the consumer starts: from its first batch on, a SIGTERM must let it
    // finish that batch rather than kill the process mid-write.
    let shutdown = service_kit::shutdown_signal();
    let consuming = tokio::spawn(consumer.run(stop_rx, grace));
    let ops = ops.catch_all_error(service_kit::problem_for_error).with(http_metrics);
    let server = Server::new(TcpListener::bind(config.addr));
    tracing::info!(addr = %config.addr, "aggregator running");
    server.run_with_graceful_shutdown(ops, shutdown, None).await?;
    // The signal arrived: finish the batch in hand, ack it, then leave.
    let _ = stop_tx.send(true);
    consuming.await?;
    aggregator::consumer::confirm_acks(&nats, &acked_to).await;
    Ok(())
}

async fn dead_letters(
    js: &async_nats::jetstream::Context,
    config: &Config,
    command: &DeadLetterCommand,
) -> anyhow::Result<()> {
    let args = &config.dead_letters;
    match command {
        DeadLetterCommand::List { reason } => {
            let letters = dead_letter::list(js, args, reason.as_deref()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            for letter in letters {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        DeadLetterCommand::Redrive { reason } => {
            let count = dead_letter::redrive(js, args, reason.as_deref()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("re-drove {count} dead letters");
        }
    }
    Ok(())
}
