//! The HTTP surface of ingest (poem-openapi). Handlers only translate; [`crate::service`] decides.

mod body;

use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use schemas::EventKind;
use time::OffsetDateTime;
use uuid::Uuid;

pub use self::body::{BodyLimit, EventBody};
use service_kit::ErrorBody;

use crate::error::IngestError;
use crate::publisher::Published;
use crate::service::{Accepted, Ingest, Sender};

#[derive(Tags)]
pub enum IngestTags {
    /// Record ad events. A 202 means the event is stored durably and will be counted once.
    Events,
}

pub struct IngestApi {
    pub ingest: Arc<Ingest>,
}

#[OpenApi]
impl IngestApi {
    /// Record a click on an ad
    ///
    /// Send `event_id` (any UUID you generate) to make retries safe: the same id is counted once.
    #[oai(path = "/ads/click", method = "post", operation_id = "postClick", tag = "IngestTags::Events")]
    async fn post_click(&self, req: &Request, body: EventBody<ClickRequest>) -> PostEventResponse {
        self.ingest.accept(EventKind::Click, body.into_bytes(), sender(req)).await.into()
    }

    /// Record an impression (an ad was shown)
    ///
    /// Send `event_id` (any UUID you generate) to make retries safe: the same id is counted once.
    #[oai(path = "/ads/impression", method = "post", operation_id = "postImpression", tag = "IngestTags::Events")]
    async fn post_impression(&self, req: &Request, body: EventBody<ImpressionRequest>) -> PostEventResponse {
        self.ingest.accept(EventKind::Impression, body.into_bytes(), sender(req)).await.into()
    }
}

fn sender(req: &Request) -> Sender {
    let user_agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Every X-Forwarded-For line, in order: a proxy may append its own line instead of
    // extending the client's, and only the right-most entries are trustworthy.
    let forwarded: Vec<&str> = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    Sender {
        peer: req.remote_addr().as_socket_addr().map(|a| a.ip()),
        forwarded_for: (!forwarded.is_empty()).then(|| forwarded.join(",")),
        user_agent,
    }
}

/// A click. Unknown fields are rejected (400) so that a misspelt field is not silently lost.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct ClickRequest {
    /// Idempotency key. Absent: the server assigns a UUIDv7 and returns it.
    pub event_id: Option<Uuid>,
    /// A known, active ad.
    pub ad_id: Uuid,
    /// When the click happened (RFC 3339). Absent: the time the server received it. At most
    /// 5 minutes ahead of the server's clock, and no older than the stream keeps events.
    pub timestamp: Option<OffsetDateTime>,
    /// Seconds of the ad watched before the click.
    #[oai(validator(minimum(value = "0"), maximum(value = "86400")))]
    pub playback_time_secs: Option<f64>,
    /// Share of the ad watched before the click, in percent.
    #[oai(validator(minimum(value = "0"), maximum(value = "100")))]
    pub watched_percent: Option<f64>,
}

/// An impression. Unknown fields are rejected (400).
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct ImpressionRequest {
    /// Idempotency key. Absent: the server assigns a UUIDv7 and returns it.
    pub event_id: Option<Uuid>,
    /// A known, active ad.
    pub ad_id: Uuid,
    /// When the ad was shown (RFC 3339); same rules as for clicks.
    pub timestamp: Option<OffsetDateTime>,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum AcceptStatus {
    /// Stored now.
    Accepted,
    /// This event_id was already stored; it is counted once.
    Duplicate,
}

#[derive(Object)]
pub struct AcceptedBody {
    pub event_id: Uuid,
    pub status: AcceptStatus,
}

/// The answer when the event may or may not have been stored.
#[derive(Object)]
pub struct UnavailableBody {
    /// What went wrong, for people.
    pub error: String,
    /// The event's id, also when the server assigned it: retry with it to be counted once.
    /// Absent when the event was not published at all (the catalog is not loaded yet).
    #[oai(skip_serializing_if_is_none)]
    pub event_id: Option<Uuid>,
}

#[derive(ApiResponse)]
pub enum PostEventResponse {
    /// Stored durably in the stream; it will be counted exactly once.
    #[oai(status = 202)]
    Accepted(Json<AcceptedBody>),
    /// Malformed JSON, a field of the wrong type, or an unknown field.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The body is larger than the limit (16 KiB by default).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A value breaks a rule (required, range, format, timestamp window) or the ad is unknown or
    /// inactive.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// This client IP sent more events than `RATE_LIMIT_PER_IP` allows; nothing was recorded.
    /// Retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
    /// JetStream did not confirm the event (or the catalog is not loaded yet). It may or may not
    /// have been stored: retry after `Retry-After` seconds with the same `event_id`, which is
    /// then counted exactly once.
    #[oai(status = 503)]
    Unavailable(Json<UnavailableBody>, #[oai(header = "Retry-After")] u32),
}

impl From<Result<Accepted, IngestError>> for PostEventResponse {
    fn from(outcome: Result<Accepted, IngestError>) -> Self {
        let error = match outcome {
            Ok(accepted) => {
                let status = match accepted.published {
                    Published::Stored => AcceptStatus::Accepted,
                    Published::Duplicate => AcceptStatus::Duplicate,
                };
                return Self::Accepted(Json(AcceptedBody { event_id: accepted.event_id, status }));
            }
            Err(error) => error,
        };
        let body = Json(ErrorBody::new(error.to_string(), error.field()));
        match error {
            IngestError::Input(ref e) if e.kind == schemas::InputErrorKind::Malformed => Self::BadRequest(body),
            IngestError::BodyRead(_) => Self::BadRequest(body),
            IngestError::Input(_) | IngestError::UnknownAd(_) | IngestError::InactiveAd(_) => Self::Unprocessable(body),
            IngestError::PayloadTooLarge { .. } => Self::PayloadTooLarge(body),
            IngestError::UnsupportedMediaType(_) => Self::UnsupportedMediaType(body),
            IngestError::RateLimited { retry_after_secs, .. } => Self::TooManyRequests(body, retry_after_secs),
            IngestError::CatalogNotLoaded | IngestError::Publish { .. } => {
                Self::Unavailable(Json(UnavailableBody { error: body.0.error, event_id: error.event_id() }), 1)
            }
        }
    }
}
