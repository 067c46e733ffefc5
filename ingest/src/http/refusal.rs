//! The one map from [`IngestError`] to HTTP: a status, and the problem it answers with.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use service_kit::Problem;

use crate::error::IngestError;

/// How an error answers, for a single event or a whole batch.
pub(super) enum Refusal {
    BadRequest,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests {
        retry_after_secs: u32,
    },
    /// The event may or may not be stored: retry with its id.
    Unavailable,
}

impl Refusal {
    pub(super) fn of(error: &IngestError) -> Self {
        match error {
            IngestError::Input(e) if e.kind == schemas::InputErrorKind::Malformed => Self::BadRequest,
            IngestError::BodyRead(_) => Self::BadRequest,
            IngestError::BodyTimeout { .. } => Self::RequestTimeout,
            IngestError::Input(_) | IngestError::UnknownAd(_) | IngestError::InactiveAd(_) => Self::Unprocessable,
            IngestError::PayloadTooLarge { .. }
            | IngestError::TooManyEvents { .. }
            | IngestError::BatchExceedsBurst { .. } => Self::PayloadTooLarge,
            IngestError::UnsupportedMediaType { .. } => Self::UnsupportedMediaType,
            IngestError::RateLimited { retry_after_secs, .. } => {
                Self::TooManyRequests { retry_after_secs: *retry_after_secs }
            }
            IngestError::BatchesInFlight { .. } => Self::TooManyRequests { retry_after_secs: 1 },
            IngestError::CatalogNotLoaded | IngestError::StreamNotReached | IngestError::Publish { .. } => {
                Self::Unavailable
            }
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(super) fn problem(&self, error: &IngestError) -> Json<Problem> {
        Json(Problem::new(self.status(), error.to_string(), error.field()))
    }
}
