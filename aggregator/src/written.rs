//! Announces each write on the core-NATS subject `NATS_WRITTEN_SUBJECT`, so that the query
//! service drops the answers the write made stale at once instead of serving them until their
//! TTL runs out.
//!
//! A signal, not a record: nothing waits for it, and a lost one (NATS down, the query service
//! reconnecting) costs only freshness, since the query caches' TTLs still bound how old an
//! answer gets (`CACHE_PAST_TTL_SECS` for the counts of past days). Correctness never depends
//! on it.

use schemas::stream::WrittenNotice;

#[derive(Clone)]
pub struct Announcer {
    nats: async_nats::Client,
    subject: async_nats::Subject,
}

impl Announcer {
    pub fn new(nats: async_nats::Client, subject: &str) -> Self {
        Self { nats, subject: subject.into() }
    }

    /// Publishes `notice` without waiting for the server (core NATS buffers and flushes it).
    pub async fn announce(&self, notice: WrittenNotice) {
        let body = match serde_json::to_vec(&notice) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "write notice not encoded");
                return;
            }
        };
        if let Err(error) = self.nats.publish(self.subject.clone(), body.into()).await {
            tracing::warn!(%error, "write notice not published; query answers stay cached until their TTL");
        }
    }
}
