use std::process::ExitCode;

use aggregator::backoff::Backoff;
use aggregator::config::{Command, Config};
use aggregator::consumer::Consumer;
use aggregator::metrics::Metrics;
use aggregator::sink::Sink;
use aggregator::{migrate, setup};
use poem::listener::TcpListener;
use poem::Server;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::run_service("aggregator", Config::validate, run).await
}

async fn run(config: Config) -> anyhow::Result<()> {
    let clickhouse = config.clickhouse.client();
    let seed = matches!(config.command, Some(Command::Migrate { seed: true }));
    migrate::apply(&config.clickhouse.server_client(), &clickhouse, &config.clickhouse.clickhouse_database, seed)
        .await
        .map_err(|e| anyhow::anyhow!("applying clickhouse migrations: {e}"))?;
    let nats = config.nats.connect().await?;
    let js = async_nats::jetstream::new(nats.clone());
    setup::ensure_stream(&js, &config).await.map_err(|e| anyhow::anyhow!("creating the stream: {e}"))?;
    let pull = setup::ensure_consumer(&js, &config).await.map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?;
    if matches!(config.command, Some(Command::Migrate { .. })) {
        tracing::info!("migrations, stream and consumer are in place");
        return Ok(());
    }

    let metrics = Metrics::new()?;
    let ops = service_kit::with_ops_routes(
        poem::Route::new(),
        metrics.registry.clone(),
        vec![
            ("clickhouse", service_kit::clickhouse_check(clickhouse.clone())),
            ("nats", service_kit::nats_check(nats.clone())),
        ],
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let consumer = Consumer {
        consumer: pull,
        sink: Sink::new(clickhouse, Backoff::default(), metrics.clone()),
        metrics,
        args: config.consumer.clone(),
    };
    let grace = std::time::Duration::from_secs(config.shutdown_grace_secs);
    let consuming = tokio::spawn(consumer.run(stop_rx, grace));
    let server = Server::new(TcpListener::bind(config.addr));
    tracing::info!(addr = %config.addr, "aggregator running");
    server
        .run_with_graceful_shutdown(ops, service_kit::shutdown_signal(), None)
        .await?;
    // The signal arrived: finish the batch in hand, ack it, then leave.
    let _ = stop_tx.send(true);
    consuming.await?;
    nats.flush().await?;
    Ok(())
}
