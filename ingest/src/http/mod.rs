//! The HTTP surface of ingest (poem-openapi). Handlers only translate; [`crate::service`] decides.

mod body;

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags, Union};
use schemas::EventKind;
use time::OffsetDateTime;
use uuid::Uuid;

pub use self::body::{BatchBody, BodyLimits, EventBody};
use poem::http::StatusCode;
use service_kit::Problem;

use crate::error::IngestError;
use crate::publisher::Published;
use crate::service::{Accepted, Ingest, Sender};
use crate::tracking::{pixel_ad_id, NO_CACHE, PIXEL_GIF};

/// Request bodies that reject unknown fields (400): closed objects in the spec.
pub const CLOSED_SCHEMAS: &[&str] = &["ClickRequest", "ImpressionRequest"];

/// The operations a browser reaches through a link or a pixel. They ignore query parameters
/// they do not take, where the others answer 400: ad platforms append theirs (`gclid`,
/// `fbclid`, `utm_*`) to the links they are given, and the person must still reach the ad's page.
pub const LINK_OPERATIONS: &[&str] = &["trackClick", "trackImpression"];

#[derive(Tags)]
pub enum IngestTags {
    /// Record ad events. A 202 means the event is stored durably and will be counted once.
    Events,
    /// Links and pixels for pages and players that cannot send JSON: a click-through redirect
    /// and an impression pixel, each recording its event on the same durable path.
    Tracking,
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
        self.ingest.accept(EventKind::Click, body.read(), sender(req)).await.into()
    }

    /// Record an impression (an ad was shown)
    ///
    /// Send `event_id` (any UUID you generate) to make retries safe: the same id is counted once.
    #[oai(path = "/ads/impression", method = "post", operation_id = "postImpression", tag = "IngestTags::Events")]
    async fn post_impression(&self, req: &Request, body: EventBody<ImpressionRequest>) -> PostEventResponse {
        self.ingest.accept(EventKind::Impression, body.read(), sender(req)).await.into()
    }

    /// Record many clicks and impressions at once
    ///
    /// Up to 1,000 events (and 1 MiB) per request, as a JSON array or as NDJSON (one event per
    /// line). Each event carries `"type": "click"` or `"impression"` and that kind's fields.
    /// Each event passes or fails on its own; `results` answers for each, in request order.
    /// An `accepted` or `duplicate` event is stored durably and counted once; retry the
    /// `unavailable` ones with their `event_id`, and fix the `rejected` ones.
    #[oai(path = "/ads/events", method = "post", operation_id = "postEvents", tag = "IngestTags::Events")]
    async fn post_events(&self, req: &Request, body: BatchBody<BatchEvent>) -> PostEventsResponse {
        let (body, _reserved) = body.into_parts();
        self.ingest.accept_batch(body, sender(req)).await.into()
    }

    /// Click through to an ad's page
    ///
    /// Records a click on the ad (as `POST /ads/click` would, without playback figures) and
    /// redirects (302) to the ad's registered target URL, never to one from the request, with
    /// `click_id` added to its query when given. The person is redirected even when the click
    /// could not be recorded (counted in `ingest_tracking_unrecorded_total`): a repeated visit
    /// of the link counts again. An inactive ad still redirects; its click is not counted.
    /// Other query parameters (`gclid`, `utm_source`, ... appended by ad platforms) are ignored.
    #[oai(path = "/c/:ad_id", method = "get", operation_id = "trackClick", tag = "IngestTags::Tracking")]
    async fn track_click(
        &self,
        req: &Request,
        /// The ad clicked.
        ad_id: Path<Uuid>,
        /// Passed on to the target URL as `click_id`, for the advertiser's own attribution.
        #[oai(validator(pattern = "^[A-Za-z0-9._~-]{1,128}$"))]
        click_id: Query<Option<String>>,
    ) -> TrackClickResponse {
        match self.ingest.track_click(ad_id.0, click_id.0.as_deref(), sender(req)).await {
            Ok(location) => TrackClickResponse::Found(location, NO_CACHE.to_owned()),
            Err(error) => {
                let refusal = Refusal::of(&error);
                match refusal {
                    Refusal::Unavailable => TrackClickResponse::Unavailable(refusal.problem(&error), 1),
                    _ => TrackClickResponse::NotFound(Json(Problem::new(
                        StatusCode::NOT_FOUND,
                        error.to_string(),
                        error.field(),
                    ))),
                }
            }
        }
    }

    /// Impression pixel
    ///
    /// Records an impression of the ad (as `POST /ads/impression` would) and answers a
    /// transparent 1×1 GIF that no cache keeps, whatever came of the impression: a page never
    /// shows a broken image for it. Impressions not recorded (unknown or inactive ad, JetStream
    /// down) are counted in `ingest_tracking_unrecorded_total`. Other query parameters are ignored.
    #[oai(path = "/i/:file", method = "get", operation_id = "trackImpression", tag = "IngestTags::Tracking")]
    async fn track_impression(
        &self,
        req: &Request,
        /// `<ad_id>.gif`, e.g. `a1000000-0000-4000-8000-000000000001.gif`.
        #[oai(validator(
            pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\\.gif$"
        ))]
        file: Path<String>,
    ) -> PixelResponse {
        let Some(ad_id) = pixel_ad_id(&file.0) else {
            return PixelResponse::BadRequest(Json(Problem::new(
                StatusCode::BAD_REQUEST,
                "file: must be <ad_id>.gif",
                Some("file"),
            )));
        };
        self.ingest.track_impression(ad_id, sender(req)).await;
        PixelResponse::Ok(Binary(PIXEL_GIF.to_vec()), NO_CACHE.to_owned(), "no-cache".to_owned(), "0".to_owned())
    }
}

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

fn sender(req: &Request) -> Sender {
    let user_agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Every X-Forwarded-For line, in order: a proxy may append its own line instead of
    // extending the client's, and only the right-most entries are trustworthy.
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    Sender {
        peer: req.remote_addr().as_socket_addr().map(|a| a.ip()),
        forwarded_for: (!forwarded.is_empty()).then(|| forwarded.join(",")),
        user_agent,
        request_id: req.extensions().get::<service_kit::request_id::RequestId>().map(|id| id.0.clone()),
    }
}

/// A click. Unknown fields are rejected (400) so that a misspelt field is not silently lost.
#[derive(Object)]
#[oai(deny_unknown_fields, example)]
pub struct ClickRequest {
    /// Idempotency key. Absent: the server assigns a UUIDv7 and returns it.
    #[oai(nullable)]
    pub event_id: Option<Uuid>,
    /// A known, active ad.
    pub ad_id: Uuid,
    /// When the click happened (RFC 3339). Absent: the time the server received it. At most
    /// 5 minutes ahead of the server's clock, and no older than the stream keeps events.
    #[oai(nullable)]
    pub timestamp: Option<OffsetDateTime>,
    /// Seconds of the ad watched before the click.
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "86400")))]
    pub playback_time_secs: Option<f64>,
    /// Share of the ad watched before the click, in percent.
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "100")))]
    pub watched_percent: Option<f64>,
    /// The viewer's country, ISO 3166-1 alpha-2 (any case), for breakdowns.
    #[oai(nullable, validator(pattern = "^[A-Za-z]{2}$"))]
    pub country: Option<String>,
}

/// An impression. Unknown fields are rejected (400).
#[derive(Object)]
#[oai(deny_unknown_fields, example)]
pub struct ImpressionRequest {
    /// Idempotency key. Absent: the server assigns a UUIDv7 and returns it.
    #[oai(nullable)]
    pub event_id: Option<Uuid>,
    /// A known, active ad.
    pub ad_id: Uuid,
    /// When the ad was shown (RFC 3339); same rules as for clicks.
    #[oai(nullable)]
    pub timestamp: Option<OffsetDateTime>,
    /// The viewer's country, ISO 3166-1 alpha-2 (any case), for breakdowns.
    #[oai(nullable, validator(pattern = "^[A-Za-z]{2}$"))]
    pub country: Option<String>,
}

/// One event of a batch: a click or an impression, told apart by `type`.
#[derive(Union)]
#[oai(discriminator_name = "type")]
pub enum BatchEvent {
    #[oai(mapping = "click")]
    Click(ClickRequest),
    #[oai(mapping = "impression")]
    Impression(ImpressionRequest),
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

/// The examples shown in the spec and Swagger UI.
mod examples {
    use poem_openapi::types::Example;
    use time::macros::datetime;
    use uuid::uuid;

    use super::*;

    const EVENT_ID: Uuid = uuid!("0193a5c2-7b1e-7c3d-9f00-2a6b1c4d5e6f");
    const AD_ID: Uuid = uuid!("a1000000-0000-4000-8000-000000000001");

    impl Example for ClickRequest {
        fn example() -> Self {
            ClickRequest {
                event_id: Some(EVENT_ID),
                ad_id: AD_ID,
                timestamp: Some(datetime!(2026-11-22 10:15:30 UTC)),
                playback_time_secs: Some(12.5),
                watched_percent: Some(40.0),
                country: Some("FR".to_owned()),
            }
        }
    }

    impl Example for ImpressionRequest {
        fn example() -> Self {
            ImpressionRequest {
                event_id: Some(EVENT_ID),
                ad_id: AD_ID,
                timestamp: Some(datetime!(2026-11-22 10:15:00 UTC)),
                country: None,
            }
        }
    }

    impl Example for AcceptedBody {
        fn example() -> Self {
            AcceptedBody { event_id: EVENT_ID, status: AcceptStatus::Accepted }
        }
    }

    impl Example for UnavailableProblem {
        fn example() -> Self {
            UnavailableProblem {
                problem: Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "JetStream did not confirm the event within 5000 ms",
                    None,
                ),
                event_id: Some(EVENT_ID),
            }
        }
    }

    impl Example for BatchResult {
        fn example() -> Self {
            BatchResult {
                accepted: 1,
                duplicates: 0,
                rejected: 1,
                unavailable: 0,
                results: vec![
                    ItemResult { status: ItemStatus::Accepted, event_id: Some(EVENT_ID), error: None, field: None },
                    ItemResult {
                        status: ItemStatus::Rejected,
                        event_id: None,
                        error: Some("ad a1000000-0000-4000-8000-000000000004 is inactive".to_owned()),
                        field: Some("ad_id".to_owned()),
                    },
                ],
            }
        }
    }
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

/// How an error answers, for a single event or a whole batch.
enum Refusal {
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
    fn of(error: &IngestError) -> Self {
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

    fn status(&self) -> StatusCode {
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

    fn problem(&self, error: &IngestError) -> Json<Problem> {
        Json(Problem::new(self.status(), error.to_string(), error.field()))
    }
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
