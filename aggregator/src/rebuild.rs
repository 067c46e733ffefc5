//! `aggregator rebuild`: the stream is the source of truth, so everything ClickHouse derives
//! from it can be thrown away and recomputed. Drops the event tables, rollups and their views
//! (never the `ads` catalog), recreates them from the migrations, and resets the durable
//! consumer to the start of the stream. The next `aggregator` run then re-reads every event the
//! stream still holds (`STREAM_MAX_AGE_SECS`).
//!
//! Dropping (not truncating) also clears the tables' insert-deduplication logs, which would
//! otherwise recognise the replayed batches' tokens and skip them.

use async_nats::jetstream;
use clickhouse::Client;

use crate::config::Config;
use crate::{migrate, setup};

/// Every table and view derived from the stream, views first (they feed the tables).
/// The plain views over the rollups (`ad_metrics_per_*`, migration 0007) are not listed: they
/// hold nothing, and once the migrations have recreated the tables they read those.
pub const DERIVED: &[&str] = &[
    "click_events_per_minute_mv",
    "impression_events_per_minute_mv",
    "click_events_per_hour_mv",
    "impression_events_per_hour_mv",
    "click_events_per_day_mv",
    "impression_events_per_day_mv",
    "click_event_ids_mv",
    "impression_event_ids_mv",
    "click_event_ids_kv_mv",
    "impression_event_ids_kv_mv",
    "click_events_received_watermark_mv",
    "click_audience_per_hour_mv",
    "click_audience_per_day_mv",
    "impression_audience_per_hour_mv",
    "impression_audience_per_day_mv",
    "click_playback_per_minute_mv",
    "click_playback_per_hour_mv",
    "click_playback_per_day_mv",
    "impression_events_received_watermark_mv",
    "invalid_event_ids_kv_mv",
    "invalid_events_received_watermark_mv",
    "invalid_events_per_minute_mv",
    "invalid_events_per_hour_mv",
    "invalid_events_per_day_mv",
    "click_events_per_minute",
    "impression_events_per_minute",
    "click_events_per_hour",
    "impression_events_per_hour",
    "click_events_per_day",
    "impression_events_per_day",
    "stored_event_ids",
    "stored_event_ids_kv",
    "events_received_watermark",
    "click_audience_per_hour",
    "click_audience_per_day",
    "impression_audience_per_hour",
    "impression_audience_per_day",
    "click_playback_per_minute",
    "click_playback_per_hour",
    "click_playback_per_day",
    "invalid_events_per_minute",
    "invalid_events_per_hour",
    "invalid_events_per_day",
    "click_events_per_minute_reordered",
    "impression_events_per_minute_reordered",
    "click_playback_per_minute_reordered",
    "invalid_events_per_minute_reordered",
    "click_events_per_hour_reordered",
    "impression_events_per_hour_reordered",
    "click_playback_per_hour_reordered",
    "invalid_events_per_hour_reordered",
    "click_audience_per_hour_reordered",
    "impression_audience_per_hour_reordered",
    "ad_unique_visitors_per_day",
    "all_ads_unique_visitors_per_day",
    "click_events",
    "impression_events",
    "invalid_events",
];

pub async fn run(server: &Client, client: &Client, js: &jetstream::Context, config: &Config) -> anyhow::Result<()> {
    let stream = js.get_stream(&config.nats.nats_stream).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    refuse_while_consuming(&stream, config).await?;
    for table in DERIVED {
        client.query(&format!("DROP TABLE IF EXISTS {table} SYNC")).execute().await?;
    }
    tracing::info!(tables = DERIVED.len(), "derived tables dropped");
    migrate::apply(server, client, &config.clickhouse.clickhouse_database, false).await?;
    migrate::apply_retention(client, config.raw_events_ttl_days, config.audience_ttl_days).await?;
    match stream.delete_consumer(&config.consumer.nats_consumer).await {
        Ok(_) => tracing::info!(consumer = %config.consumer.nats_consumer, "consumer reset"),
        Err(error) => tracing::warn!(%error, "no consumer to reset"),
    }
    setup::ensure_consumer(js, config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = stream.get_info().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(messages = info.state.messages, "rebuild prepared: start the aggregator to re-read the stream");
    Ok(())
}

/// A running aggregator would write into the tables being dropped and lose its consumer: look
/// for its waiting pull request for a couple of seconds (an idle aggregator always has one).
async fn refuse_while_consuming(stream: &jetstream::stream::Stream, config: &Config) -> anyhow::Result<()> {
    let Ok(mut consumer) =
        stream.get_consumer::<jetstream::consumer::pull::Config>(&config.consumer.nats_consumer).await
    else {
        return Ok(());
    };
    let samples = 2_000 / config.consumer.batch_max_wait_ms.clamp(1, 1_000) + 2;
    for _ in 0..samples {
        let waiting = consumer.info().await.map_err(|e| anyhow::anyhow!("{e}"))?.num_waiting;
        if waiting > 0 {
            anyhow::bail!(
                "an aggregator is consuming {:?}: stop every aggregator before a rebuild",
                config.consumer.nats_consumer
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(config.consumer.batch_max_wait_ms.min(1_000) / 2 + 1))
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new table or view in the migrations must be classified: derived (listed here) or not.
    #[test]
    fn every_derived_object_of_the_migrations_is_listed() {
        let mut created: Vec<String> = Vec::new();
        for (_, sql) in migrate::MIGRATIONS {
            for line in sql.lines() {
                for prefix in ["CREATE TABLE IF NOT EXISTS ", "CREATE MATERIALIZED VIEW IF NOT EXISTS "] {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        created.push(rest.split_whitespace().next().unwrap_or("").to_owned());
                    }
                }
            }
        }
        // Kept by a rebuild: the catalog, which migrations the database has had, and since when
        // messages are signed (the stream's older messages are read again).
        created.retain(|name| !["ads", "schema_migrations", "event_signing"].contains(&name.as_str()));
        created.sort();
        // A view rebuilt by a later migration (0013) is created twice.
        created.dedup();
        let mut listed: Vec<String> = DERIVED.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(created, listed);
    }
}
