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
    #[error("unknown ad {0}")]
    UnknownAd(Uuid),
    #[error("ad {0} is inactive")]
    InactiveAd(Uuid),
    #[error("the ad catalog is not loaded yet; retry shortly")]
    CatalogNotLoaded,
    #[error("the event could not be stored durably: {0}")]
    Publish(String),
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
            IngestError::UnknownAd(_) => "unknown_ad",
            IngestError::InactiveAd(_) => "inactive_ad",
            IngestError::CatalogNotLoaded => "catalog_not_loaded",
            IngestError::Publish(_) => "publish_failed",
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
