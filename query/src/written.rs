//! Listens for the aggregator's write announcements (`NATS_WRITTEN_SUBJECT`, see
//! `schemas::stream::WrittenNotice`) and drops the cached answers about events on each, so a
//! new event shows in the next answer rather than after the cache's TTL. Without NATS the
//! service still answers; its cached answers then live out their TTL.

use std::sync::Arc;

use futures::StreamExt;

use crate::metrics::Metrics;
use crate::service::Analytics;

/// Runs until the connection is closed for good. async-nats reconnects and resubscribes on
/// its own; announcements sent meanwhile are lost, which only the TTL covers.
pub async fn forget_on_writes(nats_url: String, subject: String, analytics: Arc<Analytics>, metrics: Metrics) {
    let nats = match service_kit::connect_nats(&nats_url).await {
        Ok(nats) => nats,
        Err(error) => {
            tracing::warn!(%error, "not listening for write announcements; cached answers live out their TTL");
            return;
        }
    };
    let mut announcements = match nats.subscribe(subject.clone()).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::warn!(%error, subject, "not listening for write announcements; cached answers live out their TTL");
            return;
        }
    };
    tracing::info!(subject, "dropping cached answers on each write announcement");
    while announcements.next().await.is_some() {
        analytics.forget_event_answers();
        metrics.write_notices.inc();
    }
}
