//! Everything that can go wrong with an event request or one item of a batch. Mapped to HTTP
//! once, in `http`.

use schemas::batch::BatchRejection;
use schemas::InputError;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("content type must be {expected}, got {got}")]
    UnsupportedMediaType { got: String, expected: String },
    #[error("body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("cannot read the body: {0}")]
    BodyRead(String),
    #[error("the body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("a batch holds at most {max} events, this one {count}: split it")]
    TooManyEvents { count: usize, max: usize },
    #[error("a batch of {count} events is more than one client may send at once ({burst}): split it")]
    BatchExceedsBurst { count: usize, burst: u32 },
    /// The message names no address: it is logged, and no full client IP may be.
    #[error("too many events from this client address; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u32 },
    #[error("unknown ad {0}")]
    UnknownAd(Uuid),
    /// Every client together, not this one: the batch bodies held at once are bounded.
    #[error("ingest holds {limit} bytes of batches already (MAX_BATCH_BYTES_IN_FLIGHT); retry in 1 s")]
    BatchesInFlight { limit: usize },
    #[error("ad {0} is inactive")]
    InactiveAd(Uuid),
    #[error("the ad catalog is not loaded yet; retry shortly")]
    CatalogNotLoaded,
    /// Ingest started while NATS was down and has not reached JetStream since.
    #[error("JetStream has not been reached yet; retry shortly")]
    StreamNotReached,
    /// JetStream did not confirm; the event may still have reached the stream.
    #[error("the event was not confirmed as stored: {reason}; retry with event_id {event_id}")]
    Publish { event_id: Uuid, reason: String },
}

impl From<BatchRejection> for IngestError {
    fn from(rejection: BatchRejection) -> Self {
        match rejection {
            BatchRejection::Input(e) => IngestError::Input(e),
            BatchRejection::TooManyEvents { count, max } => IngestError::TooManyEvents { count, max },
        }
    }
}

impl IngestError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Input(e) if e.kind == schemas::InputErrorKind::Malformed => "malformed",
            IngestError::Input(_) => "invalid",
            IngestError::UnsupportedMediaType { .. } => "unsupported_media_type",
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::BodyRead(_) => "body_read",
            IngestError::BodyTimeout { .. } => "body_timeout",
            IngestError::TooManyEvents { .. } => "too_many_events",
            IngestError::BatchExceedsBurst { .. } => "batch_exceeds_burst",
            IngestError::RateLimited { .. } => "rate_limited",
            IngestError::BatchesInFlight { .. } => "batches_in_flight",
            IngestError::UnknownAd(_) => "unknown_ad",
            IngestError::InactiveAd(_) => "inactive_ad",
            IngestError::CatalogNotLoaded => "catalog_not_loaded",
            IngestError::StreamNotReached => "stream_not_reached",
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
