//! One response type per operation, and how each outcome of [`crate::service`] answers.

use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object};
use service_kit::Problem;
use uuid::Uuid;

use super::refusal::Refusal;
use crate::error::IngestError;
use crate::publisher::Published;
use crate::service::Accepted;

#[derive(ApiResponse)]
#[oai(bad_request_handler = "track_click_bad_request")]
pub enum TrackClickResponse {
    /// The click is recorded (or counted as not recorded); go to the ad's page.
    #[oai(status = 302)]
    Found(#[oai(header = "Location")] String, #[oai(header = "Cache-Control")] String),
    /// `ad_id` is not a UUID, or `click_id` breaks its pattern.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No ad has this id: there is nowhere to send the person.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The catalog has not loaded yet, so the ad's page is not known; retry after `Retry-After`.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
}

fn track_click_bad_request(error: poem::Error) -> TrackClickResponse {
    TrackClickResponse::BadRequest(Json(service_kit::parameter_problem(&error, "ad_id")))
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "pixel_bad_request")]
pub enum PixelResponse {
    /// A transparent 1×1 GIF, not to be cached.
    #[oai(status = 200, content_type = "image/gif")]
    Ok(
        Binary<Vec<u8>>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Pragma")] String,
        #[oai(header = "Expires")] String,
    ),
    /// The file name is not `<ad_id>.gif`.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
}

fn pixel_bad_request(error: poem::Error) -> PixelResponse {
    PixelResponse::BadRequest(Json(service_kit::parameter_problem(&error, "file")))
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum AcceptStatus {
    /// Stored now. Under load a repeat of an earlier event may answer this too (events are then
    /// published in groups, which the stream cannot split); it is still counted once.
    Accepted,
    /// JetStream already held this event_id; it is counted once.
    Duplicate,
}

#[derive(Object)]
#[oai(example)]
pub struct AcceptedBody {
    pub event_id: Uuid,
    pub status: AcceptStatus,
}

/// The answer when the event may or may not have been stored: a problem with the event's id.
#[derive(Object)]
#[oai(example)]
pub struct UnavailableProblem {
    #[oai(flatten)]
    pub problem: Problem,
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
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The body did not arrive whole within `BODY_READ_TIMEOUT_SECS`; nothing was recorded.
    #[oai(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Json<Problem>),
    /// The body is larger than the limit (16 KiB by default).
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is neither `application/json` nor `text/plain`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// A value breaks a rule (required, range, format, timestamp window) or the ad is unknown or
    /// inactive.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// This client IP sent more events than `RATE_LIMIT_PER_IP` allows; nothing was recorded.
    /// Retry after `Retry-After` seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u32),
    /// JetStream did not confirm the event (or the catalog is not loaded yet). It may or may not
    /// have been stored: retry after `Retry-After` seconds with the same `event_id`, which is
    /// then counted exactly once.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<UnavailableProblem>, #[oai(header = "Retry-After")] u32),
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum ItemStatus {
    /// Stored now.
    Accepted,
    /// Already stored (this event_id, or this exact batch); it is counted once.
    Duplicate,
    /// Breaks a rule (see `error` and `field`); nothing was stored. Retrying it unchanged fails
    /// again.
    Rejected,
    /// JetStream did not confirm it: it may or may not be stored. Retry with its `event_id`.
    Unavailable,
}

/// What became of one event of a batch.
#[derive(Object)]
pub struct ItemResult {
    pub status: ItemStatus,
    /// Absent for rejected events.
    #[oai(skip_serializing_if_is_none)]
    pub event_id: Option<Uuid>,
    /// Why the event was rejected or is unavailable.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// The event's field at fault, if one is.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// Per-event results of a batch, in request order, and how many ended each way.
#[derive(Object)]
#[oai(example)]
pub struct BatchResult {
    pub accepted: u32,
    pub duplicates: u32,
    pub rejected: u32,
    pub unavailable: u32,
    pub results: Vec<ItemResult>,
}

#[derive(ApiResponse)]
pub enum PostEventsResponse {
    /// Every event is stored durably and will be counted exactly once.
    #[oai(status = 202)]
    Accepted(Json<BatchResult>),
    /// Some events are not stored: see each `results[i].status`. The stored ones are counted
    /// exactly once.
    #[oai(status = 207)]
    MultiStatus(Json<BatchResult>),
    /// Not a JSON array (with `application/json`), or unreadable; nothing was recorded.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The body did not arrive whole within `BODY_READ_TIMEOUT_SECS`; nothing was recorded.
    #[oai(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Json<Problem>),
    /// More than 1 MiB, more than 1,000 events, or more events than this client's rate-limit
    /// burst; nothing was recorded. Split the batch.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// Neither `application/json`, `application/x-ndjson` nor `text/plain`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// The batch holds no events.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// This client IP sent more events than `RATE_LIMIT_PER_IP` allows, or ingest holds
    /// `MAX_BATCH_BYTES_IN_FLIGHT` of batches from every client already; nothing was recorded.
    /// Retry after `Retry-After` seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u32),
}

fn item_result(outcome: Result<Accepted, IngestError>) -> ItemResult {
    match outcome {
        Ok(accepted) => {
            let status = match accepted.published {
                Published::Stored => ItemStatus::Accepted,
                Published::Duplicate => ItemStatus::Duplicate,
            };
            ItemResult { status, event_id: Some(accepted.event_id), error: None, field: None }
        }
        Err(error) => {
            let status = match Refusal::of(&error) {
                Refusal::Unavailable => ItemStatus::Unavailable,
                _ => ItemStatus::Rejected,
            };
            ItemResult {
                status,
                event_id: error.event_id(),
                field: error.field().map(str::to_owned),
                error: Some(error.to_string()),
            }
        }
    }
}

impl From<Result<Vec<Result<Accepted, IngestError>>, IngestError>> for PostEventsResponse {
    fn from(outcome: Result<Vec<Result<Accepted, IngestError>>, IngestError>) -> Self {
        let items = match outcome {
            Ok(items) => items,
            Err(error) => {
                let refusal = Refusal::of(&error);
                return match refusal {
                    Refusal::BadRequest => Self::BadRequest(refusal.problem(&error)),
                    Refusal::RequestTimeout => Self::RequestTimeout(refusal.problem(&error)),
                    Refusal::PayloadTooLarge => Self::PayloadTooLarge(refusal.problem(&error)),
                    Refusal::UnsupportedMediaType => Self::UnsupportedMediaType(refusal.problem(&error)),
                    Refusal::TooManyRequests { retry_after_secs } => {
                        Self::TooManyRequests(refusal.problem(&error), retry_after_secs)
                    }
                    // A whole batch is never refused for one event's ad or for the stream: those
                    // answer per event.
                    Refusal::Unprocessable | Refusal::Unavailable => {
                        Self::Unprocessable(Refusal::Unprocessable.problem(&error))
                    }
                };
            }
        };
        let results: Vec<ItemResult> = items.into_iter().map(item_result).collect();
        let count = |status: ItemStatus| results.iter().filter(|r| r.status == status).count() as u32;
        let result = BatchResult {
            accepted: count(ItemStatus::Accepted),
            duplicates: count(ItemStatus::Duplicate),
            rejected: count(ItemStatus::Rejected),
            unavailable: count(ItemStatus::Unavailable),
            results,
        };
        if result.rejected + result.unavailable == 0 {
            Self::Accepted(Json(result))
        } else {
            Self::MultiStatus(Json(result))
        }
    }
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
        let refusal = Refusal::of(&error);
        let problem = refusal.problem(&error);
        match refusal {
            Refusal::BadRequest => Self::BadRequest(problem),
            Refusal::RequestTimeout => Self::RequestTimeout(problem),
            Refusal::Unprocessable => Self::Unprocessable(problem),
            Refusal::PayloadTooLarge => Self::PayloadTooLarge(problem),
            Refusal::UnsupportedMediaType => Self::UnsupportedMediaType(problem),
            Refusal::TooManyRequests { retry_after_secs } => Self::TooManyRequests(problem, retry_after_secs),
            Refusal::Unavailable => {
                Self::Unavailable(Json(UnavailableProblem { problem: problem.0, event_id: error.event_id() }), 1)
            }
        }
    }
}
