//! Listens for the aggregator's write announcements (`NATS_WRITTEN_SUBJECT`, see
//! `schemas::stream::WrittenNotice`) and drops the cached answers each made stale, so a new
//! event shows in the next answer rather than after the cache's TTL: every answer about
//! events, and the cached counts of past days from the earliest time the write touched on.
//! Without NATS the service still answers; its cached answers then live out their TTLs.

use std::sync::Arc;

use futures::StreamExt;
use schemas::stream::WrittenNotice;
use service_kit::NatsLogin;
use time::OffsetDateTime;

use crate::metrics::Metrics;
use crate::service::Analytics;

/// Runs until the connection is closed for good. async-nats reconnects and resubscribes on
/// its own; announcements sent meanwhile are lost, which only the TTL covers.
pub async fn forget_on_writes(
    nats_url: String,
    login: NatsLogin,
    subject: String,
    analytics: Arc<Analytics>,
    metrics: Metrics,
) {
    let nats = match service_kit::connect_nats(&nats_url, &login).await {
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
    while let Some(message) = announcements.next().await {
        analytics.forget_written(earliest_written(&message.payload));
        metrics.write_notices.inc();
    }
}

/// The earliest event time a notice says its write touched; `None` (any time) when it does
/// not say, or cannot be read.
fn earliest_written(payload: &[u8]) -> Option<OffsetDateTime> {
    serde_json::from_slice::<WrittenNotice>(payload).ok()?.earliest_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_that_does_not_say_when_it_wrote_touched_any_time() {
        let notice = br#"{"events":2,"last_stream_seq":7,"earliest_timestamp_ms":1700000000123}"#;
        assert_eq!(earliest_written(notice), Some(time::macros::datetime!(2023-11-14 22:13:20.123 UTC)));
        assert_eq!(earliest_written(br#"{"events":2,"last_stream_seq":7}"#), None);
        assert_eq!(earliest_written(b"not json"), None);
    }
}
