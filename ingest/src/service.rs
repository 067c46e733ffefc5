//! One event request, from body bytes to a durable stream message. No HTTP types here.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use schemas::batch::{parse_batch, BatchFormat};
use schemas::input::{RequestContext, TimestampLimits};
use schemas::{AdEvent, ClickInput, EventKind, ImpressionInput};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::client_ip::client_ip;
use crate::coalesce::Coalescer;
use crate::error::IngestError;
use crate::ivt::RequestRules;
use crate::metrics::Metrics;
use crate::privacy::Privacy;
use crate::publisher::{Published, Publisher};
use crate::spool::Spool;
use service_kit::catalog::{AdStatus, Catalog};
use service_kit::rate::{address_key, RateLimiter, RateRefusal};

/// A batch's bytes and how its items are laid out, or why they were not read.
pub type ReadBatch = Result<(Vec<u8>, BatchFormat), IngestError>;

/// What the connection tells about the sender.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    pub peer: Option<IpAddr>,
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    /// [`service_kit::request_id`]: recorded with each event.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub event_id: Uuid,
    pub kind: EventKind,
    pub published: Published,
}

pub struct Ingest {
    pub catalog: Arc<Catalog>,
    /// Events per client address (`RATE_LIMIT_PER_IP`); `None`: no limit.
    pub rate_limiter: Option<Arc<RateLimiter<IpAddr>>>,
    /// Batches.
    pub publisher: Publisher,
    /// Single events, grouped when they arrive together.
    pub singles: Coalescer,
    /// From the stream's retention, once JetStream has answered (ingest starts without it while
    /// NATS is down: its redirects and pixels spool meanwhile).
    pub limits: Arc<OnceLock<TimestampLimits>>,
    /// Where redirects and pixels keep the events JetStream does not confirm.
    pub spool: Arc<Spool>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_batch_events: usize,
    pub request_rules: RequestRules,
    pub privacy: Privacy,
    pub metrics: Metrics,
}

/// Metric label of whole-batch rejections (items are labelled with their own kind).
const BATCH: &str = "batch";

impl Ingest {
    /// Charges the client's rate limit, reads the body, validates, checks the catalog,
    /// publishes. `Ok` means JetStream holds the event.
    pub async fn accept(
        &self,
        kind: EventKind,
        body: impl Future<Output = Result<Vec<u8>, IngestError>>,
        sender: Sender,
    ) -> Result<Accepted, IngestError> {
        self.metrics.received.with_label_values(&[kind.as_str()]).inc();
        let outcome = self.validate_and_publish(kind, body, sender).await;
        match &outcome {
            Ok(accepted) => self.count_accepted(accepted),
            Err(error) => self.count_rejected(kind.as_str(), error),
        }
        outcome
    }

    async fn validate_and_publish(
        &self,
        kind: EventKind,
        body: impl Future<Output = Result<Vec<u8>, IngestError>>,
        sender: Sender,
    ) -> Result<Accepted, IngestError> {
        let limits = self.stream_limits()?;
        let event = self.validate(kind, body, sender, limits).await?;
        let (event_id, kind) = (event.event_id, event.kind);
        let published = self.singles.publish(event).await?;
        Ok(Accepted { event_id, kind, published })
    }

    /// One event request, from its body to the event to publish: rate, body, rules, catalog.
    async fn validate(
        &self,
        kind: EventKind,
        body: impl Future<Output = Result<Vec<u8>, IngestError>>,
        sender: Sender,
        limits: TimestampLimits,
    ) -> Result<AdEvent, IngestError> {
        let ip = client_ip(sender.peer, sender.forwarded_for.as_deref(), &self.trusted_proxies);
        self.check_rate(ip, 1, 1)?;
        let body = body.await?;
        let ctx = RequestContext {
            received_at: OffsetDateTime::now_utc(),
            client_ip: ip,
            user_agent: sender.user_agent,
            request_id: sender.request_id,
        };
        let event = match kind {
            EventKind::Click => ClickInput::parse(&body)?.into_event(ctx, limits)?,
            EventKind::Impression => ImpressionInput::parse(&body)?.into_event(ctx, limits)?,
        };
        self.check_ad(&event)?;
        Ok(self.screen(event))
    }

    fn stream_limits(&self) -> Result<TimestampLimits, IngestError> {
        self.limits.get().copied().ok_or(IngestError::StreamNotReached)
    }

    /// A click-through: records the click on the same path as `POST /ads/click` and returns
    /// where to send the person, the ad's target URL from the catalog. The person is sent there
    /// even when the click could not be recorded (counted and logged). `Err` only when there is
    /// nowhere to send them: the ad is unknown, or the catalog never loaded.
    pub async fn track_click(
        &self,
        ad_id: Uuid,
        click_id: Option<&str>,
        sender: Sender,
    ) -> Result<String, IngestError> {
        let Some(ad) = self.catalog.ad(ad_id) else {
            let error = match self.catalog.status(ad_id) {
                AdStatus::NotLoaded => IngestError::CatalogNotLoaded,
                _ => IngestError::UnknownAd(ad_id),
            };
            self.metrics.received.with_label_values(&[EventKind::Click.as_str()]).inc();
            self.count_rejected(EventKind::Click.as_str(), &error);
            return Err(error);
        };
        self.record_tracked(EventKind::Click, ad_id, sender, "click").await;
        Ok(crate::tracking::landing_url(&ad.target_url, click_id))
    }

    /// An impression pixel: records the impression on the same path as `POST /ads/impression`;
    /// the pixel is answered whatever came of it (counted and logged).
    pub async fn track_impression(&self, ad_id: Uuid, sender: Sender) {
        self.record_tracked(EventKind::Impression, ad_id, sender, "impression").await;
    }

    /// Validates and publishes a tracked event like any other; one JetStream does not confirm
    /// goes to the spool, since the browser will not send it again.
    async fn record_tracked(&self, kind: EventKind, ad_id: Uuid, sender: Sender, endpoint: &str) {
        self.metrics.received.with_label_values(&[kind.as_str()]).inc();
        let body = serde_json::json!({ "ad_id": ad_id }).to_string().into_bytes();
        // Its timestamp is the time it is received, which no retention refuses.
        let limits = TimestampLimits { max_age: None };
        let unrecorded = |error: &IngestError, reason: &str| {
            self.count_rejected(kind.as_str(), error);
            self.metrics.tracking_unrecorded.with_label_values(&[endpoint, reason]).inc();
            tracing::warn!(%error, endpoint, "tracked event not recorded; answered anyway");
        };
        let event = match self.validate(kind, std::future::ready(Ok(body)), sender, limits).await {
            Ok(event) => event,
            Err(error) => return unrecorded(&error, error.reason()),
        };
        let (event_id, kind) = (event.event_id, event.kind);
        match self.singles.publish(event.clone()).await {
            Ok(published) => self.count_accepted(&Accepted { event_id, kind, published }),
            Err(error) => match self.spool.keep(&event).await {
                Ok(()) => {
                    self.metrics.spooled.with_label_values(&[endpoint]).inc();
                    tracing::warn!(%error, endpoint, %event_id, "tracked event spooled until JetStream answers");
                }
                Err(spool_error) => {
                    tracing::error!(error = %spool_error, %event_id, "tracked event could not be spooled");
                    unrecorded(&error, spool_error.reason());
                }
            },
        }
    }

    /// Validates each item of a batch on its own and publishes the valid ones together.
    /// `Err` refuses the whole batch; otherwise each item has its outcome, in request order,
    /// and each `Ok` item is durable. The batch is charged one event before its body is read,
    /// and the rest once its events are counted.
    pub async fn accept_batch(
        &self,
        body: impl Future<Output = ReadBatch>,
        sender: Sender,
    ) -> Result<Vec<Result<Accepted, IngestError>>, IngestError> {
        self.metrics.received.with_label_values(&[BATCH]).inc();
        let outcomes = self.validate_and_publish_batch(body, sender).await;
        match &outcomes {
            Ok(items) => {
                for item in items {
                    match item {
                        Ok(accepted) => self.count_accepted(accepted),
                        Err(error) => self.count_rejected(BATCH, error),
                    }
                }
            }
            Err(error) => self.count_rejected(BATCH, error),
        }
        outcomes
    }

    async fn validate_and_publish_batch(
        &self,
        body: impl Future<Output = ReadBatch>,
        sender: Sender,
    ) -> Result<Vec<Result<Accepted, IngestError>>, IngestError> {
        let ip = client_ip(sender.peer, sender.forwarded_for.as_deref(), &self.trusted_proxies);
        self.check_rate(ip, 1, 1)?;
        let (body, format) = body.await?;
        let items = parse_batch(&body, format, self.max_batch_events)?;
        let limits = self.stream_limits()?;
        self.check_rate(ip, items.len().saturating_sub(1), items.len())?;
        let ctx = RequestContext {
            received_at: OffsetDateTime::now_utc(),
            client_ip: ip,
            user_agent: sender.user_agent,
            request_id: sender.request_id,
        };
        // The valid events go to the publisher; `checked` keeps each item's place.
        let mut valid = Vec::with_capacity(items.len());
        let checked: Vec<Result<(), IngestError>> = items
            .into_iter()
            .map(|item| {
                let event = item?.into_event(ctx.clone(), limits)?;
                self.check_ad(&event)?;
                valid.push(self.screen(event));
                Ok(())
            })
            .collect();
        let outcomes = self.publisher.publish_many(&valid).await;
        let mut published = valid.iter().zip(outcomes);
        Ok(checked
            .into_iter()
            .map(|item| {
                item?;
                let (event, outcome) = published.next().expect("publish_many answers once per event");
                Ok(Accepted { event_id: event.event_id, kind: event.kind, published: outcome? })
            })
            .collect())
    }

    /// Flags what the request shows of invalid traffic (on the full address), then replaces
    /// the sender with a visitor id and, unless raw IPs are kept, a truncated IP.
    fn screen(&self, mut event: AdEvent) -> AdEvent {
        event.invalid_reason = self.request_rules.reason(event.client_ip, event.user_agent.as_deref());
        self.privacy.apply(&mut event);
        event
    }

    fn check_ad(&self, event: &AdEvent) -> Result<(), IngestError> {
        match self.catalog.status(event.ad_id) {
            AdStatus::Active => Ok(()),
            AdStatus::Inactive => Err(IngestError::InactiveAd(event.ad_id)),
            AdStatus::Unknown => Err(IngestError::UnknownAd(event.ad_id)),
            AdStatus::NotLoaded => Err(IngestError::CatalogNotLoaded),
        }
    }

    fn count_accepted(&self, accepted: &Accepted) {
        let duplicate = if accepted.published == Published::Duplicate { "true" } else { "false" };
        self.metrics.accepted.with_label_values(&[accepted.kind.as_str(), duplicate]).inc();
    }

    fn count_rejected(&self, kind: &str, error: &IngestError) {
        self.metrics.rejected.with_label_values(&[kind, error.reason()]).inc();
        if matches!(error, IngestError::Publish { .. }) {
            tracing::error!(%error, "event not stored");
        }
    }

    /// Takes `cost` events from the client's bucket, all or none, for a request of `events`
    /// events: one that no burst can hold is refused as too large.
    fn check_rate(&self, ip: Option<IpAddr>, cost: usize, events: usize) -> Result<(), IngestError> {
        let (Some(limiter), Some(ip)) = (&self.rate_limiter, ip) else { return Ok(()) };
        let burst = limiter.burst();
        if events > burst as usize {
            return Err(IngestError::BatchExceedsBurst { count: events, burst });
        }
        limiter.take(&address_key(ip), cost).map_err(|refusal| match refusal {
            RateRefusal::Wait { retry_after_secs } => IngestError::RateLimited { retry_after_secs },
            RateRefusal::OverBurst { burst } => IngestError::BatchExceedsBurst { count: events, burst },
        })
    }
}
