//! The bench ads: created straight in the ClickHouse catalog, then waited for until ingest's
//! copy of the catalog knows them (ingest answers 422 for an unknown ad).

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::Stack;
use schemas::EventKind;
use serde_json::json;
use uuid::Uuid;

use crate::verify::Outcomes;
use crate::workload::{bench_ad, bench_ad_sql, PROBE_AD};

const CATALOG_WAIT: Duration = Duration::from_secs(60);

const COLUMNS: &str = "id, title, description, media_url, target_url, campaign_id, active, created_at, updated_at";

/// Creates `count` active bench ads and the probe ad; returns the bench ads' ids.
pub async fn create(stack: &Stack, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let id = bench_ad_sql("number");
    let bench = format!(
        "INSERT INTO ads ({COLUMNS}) SELECT {id}, concat('Bench ad ', toString(number)), 'Created by the bench', \
         concat('https://cdn.example.com/bench/', toString(number), '.mp4'), 'https://example.com/bench', \
         concat('bench-', toString(number % 20)), true, now64(3), now64(3) FROM numbers({count})"
    );
    let probe = format!(
        "INSERT INTO ads ({COLUMNS}) VALUES ('{PROBE_AD}', 'Bench freshness probe', 'Clicked by the freshness probe only', \
         'https://cdn.example.com/bench/probe.png', 'https://example.com/bench', 'bench-probe', true, now64(3), now64(3))"
    );
    for sql in [bench, probe] {
        stack.sql(&sql).await.map_err(anyhow::Error::msg).context("creating the bench ads")?;
    }
    Ok((0..count).map(bench_ad).collect())
}

/// Posts an impression for the last bench ad and for the probe ad until ingest accepts them
/// (its catalog loads every ad at once). The accepted events go into `outcomes`: they are
/// stored like any other.
pub async fn wait_until_ingest_knows(stack: &Stack, last_ad: Uuid, outcomes: &mut Outcomes) -> anyhow::Result<()> {
    let started = Instant::now();
    for ad in [last_ad, PROBE_AD] {
        loop {
            let id = Uuid::new_v4();
            let (status, body) = stack.post("/ads/impression", json!({"event_id": id, "ad_id": ad})).await;
            match status {
                202 => {
                    outcomes.stored(EventKind::Impression, id);
                    break;
                }
                422 if started.elapsed() < CATALOG_WAIT => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => anyhow::bail!("ingest does not accept events for bench ad {ad}: {status} {body}"),
            }
        }
    }
    Ok(())
}
