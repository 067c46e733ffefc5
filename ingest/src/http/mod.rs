//! The HTTP surface of ingest (poem-openapi). Handlers only translate; [`crate::service`] decides.

mod body;
mod examples;
mod refusal;
mod requests;
mod responses;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{OpenApi, Tags};
use schemas::EventKind;
use service_kit::Problem;
use uuid::Uuid;

pub use self::body::{BatchBody, BodyLimits, EventBody};
use self::refusal::Refusal;
pub use self::requests::{BatchEvent, ClickRequest, ImpressionRequest, CLOSED_SCHEMAS};
pub use self::responses::{PixelResponse, PostEventResponse, PostEventsResponse, TrackClickResponse};
use crate::service::{Ingest, Sender};
use crate::tracking::{pixel_ad_id, NO_CACHE, PIXEL_GIF};

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
