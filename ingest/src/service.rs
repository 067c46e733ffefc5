//! One event request, from body bytes to a durable stream message. No HTTP types here.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use schemas::input::{RequestContext, TimestampLimits};
use schemas::{ClickInput, EventKind, ImpressionInput};
use time::OffsetDateTime;
use uuid::Uuid;

use service_kit::catalog::{AdStatus, Catalog};
use crate::client_ip::client_ip;
use crate::error::IngestError;
use crate::metrics::Metrics;
use crate::publisher::{Published, Publisher};

/// What the connection tells about the sender.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    pub peer: Option<IpAddr>,
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub event_id: Uuid,
    pub published: Published,
}

/// The bucket an address draws from: IPv6 clients get a /64 each (one subscriber's network), so
/// rotating addresses inside it does not escape the limit or grow the table.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
    }
}

/// Per-client-IP token buckets.
pub type RateLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

pub struct Ingest {
    pub catalog: Arc<Catalog>,
    pub rate_limiter: Option<RateLimiter>,
    pub publisher: Publisher,
    pub limits: TimestampLimits,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics: Metrics,
}

impl Ingest {
    /// Validates, checks the catalog, publishes. `Ok` means JetStream holds the event.
    pub async fn accept(&self, kind: EventKind, body: Result<Vec<u8>, IngestError>, sender: Sender) -> Result<Accepted, IngestError> {
        self.metrics.received.with_label_values(&[kind.as_str()]).inc();
        let outcome = self.validate_and_publish(kind, body, sender).await;
        match &outcome {
            Ok(accepted) => {
                let duplicate = if accepted.published == Published::Duplicate { "true" } else { "false" };
                self.metrics.accepted.with_label_values(&[kind.as_str(), duplicate]).inc();
            }
            Err(error) => {
                self.metrics.rejected.with_label_values(&[kind.as_str(), error.reason()]).inc();
                if matches!(error, IngestError::Publish { .. }) {
                    tracing::error!(%error, "event not stored");
                }
            }
        }
        outcome
    }

    async fn validate_and_publish(&self, kind: EventKind, body: Result<Vec<u8>, IngestError>, sender: Sender) -> Result<Accepted, IngestError> {
        let ip = client_ip(sender.peer, sender.forwarded_for.as_deref(), &self.trusted_proxies);
        self.check_rate(ip)?;
        let body = body?;
        let ctx = RequestContext { received_at: OffsetDateTime::now_utc(), client_ip: ip, user_agent: sender.user_agent };
        let event = match kind {
            EventKind::Click => ClickInput::parse(&body)?.into_event(ctx, self.limits)?,
            EventKind::Impression => ImpressionInput::parse(&body)?.into_event(ctx, self.limits)?,
        };
        match self.catalog.status(event.ad_id) {
            AdStatus::Active => {}
            AdStatus::Inactive => return Err(IngestError::InactiveAd(event.ad_id)),
            AdStatus::Unknown => return Err(IngestError::UnknownAd(event.ad_id)),
            AdStatus::NotLoaded => return Err(IngestError::CatalogNotLoaded),
        }
        let published = self.publisher.publish(&event).await?;
        Ok(Accepted { event_id: event.event_id, published })
    }

    fn check_rate(&self, ip: Option<IpAddr>) -> Result<(), IngestError> {
        let (Some(limiter), Some(ip)) = (&self.rate_limiter, ip) else { return Ok(()) };
        limiter.check_key(&rate_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
            IngestError::RateLimited { ip, retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u32 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(rate_key(a), rate_key(b));
        assert_ne!(rate_key(a), rate_key(other));
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(rate_key(v4), v4);
    }
}
