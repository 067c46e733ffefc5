//! Everything that can go wrong with one event request. Mapped to HTTP once, in `http`.

use schemas::InputError;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("content type must be application/json, got {0}")]
    UnsupportedMediaType(String),
    #[error("body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("cannot read the body: {0}")]
    BodyRead(String),
    #[error("too many events from {ip}; retry in {retry_after_secs} s")]
    RateLimited { ip: std::net::IpAddr, retry_after_secs: u32 },
    #[error("unknown ad {0}")]
    UnknownAd(Uuid),
    #[error("ad {0} is inactive")]
    InactiveAd(Uuid),
    #[error("the ad catalog is not loaded yet; retry shortly")]
    CatalogNotLoaded,
    /// JetStream did not confirm; the event may still have reached the stream.
    #[error("the event was not confirmed as stored: {reason}; retry with event_id {event_id}")]
    Publish { event_id: Uuid, reason: String },
}

impl IngestError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Input(e) if e.kind == schemas::InputErrorKind::Malformed => "malformed",
            IngestError::Input(_) => "invalid",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::BodyRead(_) => "body_read",
            IngestError::RateLimited { .. } => "rate_limited",
            IngestError::UnknownAd(_) => "unknown_ad",
            IngestError::InactiveAd(_) => "inactive_ad",
            IngestError::CatalogNotLoaded => "catalog_not_loaded",
            IngestError::Publish { .. } => "publish_failed",
        }
    }

    /// The event id the client must retry with, when the event may have been stored.
    pub fn event_id(&self) -> Option<Uuid> {
        match self {
            IngestError::Publish { event_id, .. } => Some(*event_id),
            _ => None,
        }
    }

    /// The request field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            IngestError::Input(e) => e.field.as_deref(),
            IngestError::UnknownAd(_) | IngestError::InactiveAd(_) => Some("ad_id"),
            _ => None,
        }
    }
}
