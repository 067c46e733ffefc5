//! The HTTP surface of the query service (poem-openapi). Handlers check the caller, resolve
//! parameters and map results; [`crate::service::Analytics`] computes. Each error kind maps to
//! its status once, in [`QueryError::status`]; each operation's response lists the ones it has.

mod body;
pub mod model;
mod text;

pub use self::text::Text;

use std::sync::Arc;

use poem::http::StatusCode;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use service_kit::Problem;
use time::OffsetDateTime;
use uuid::Uuid;

use self::body::{InvalidBody, JsonBody};
use self::model::{Ad, AdAnalytics, AdChanges, AdList, AnalyticsReport, Breakdown, NewAd, Series};
use crate::auth::{self, Access, Caller};
use crate::breakdown::{self, BrowserFilter, DeviceTypeFilter, Dimension, Filters};
use crate::error::QueryError;
use crate::range::{Compare, Granularity, Timeframe, Window, Zone};
use crate::ranking::{Metric, Ranking};
use crate::service::{now, Analytics, BreakdownQuery, ReportQuery, SeriesQuery};

/// Request bodies that reject unknown fields (400): closed objects in the spec.
pub const CLOSED_SCHEMAS: &[&str] = &["NewAd", "AdChanges"];

/// `spec` with what [`auth::gate`] answers before any operation runs: 429 on every operation.
pub fn add_gate_answers(spec: &str) -> Result<String, serde_json::Error> {
    let operation_ids: Vec<&str> = <QueryApi as poem_openapi::OpenApi>::meta()
        .iter()
        .flat_map(|api| &api.paths)
        .flat_map(|path| &path.operations)
        .filter_map(|op| op.operation_id)
        .collect();
    service_kit::spec::add_too_many_requests(
        spec,
        &operation_ids,
        "This caller (its API key, or its address when it sends none) made more requests than \
         `RATE_LIMIT_PER_CALLER` allows; nothing was read. Retry after `Retry-After` seconds.",
    )
}

#[derive(Tags)]
pub enum QueryTags {
    /// The ad catalog.
    Ads,
    /// Clicks, unique clicks, impressions, CTR and playback over any window.
    Analytics,
}

pub struct QueryApi {
    pub analytics: Arc<Analytics>,
    /// Who may read and who may change ads.
    pub keys: std::sync::Arc<auth::Keys>,
    /// `AUDIENCE_TTL_DAYS`: how far back breakdowns reach.
    pub audience_ttl_days: u32,
}

#[OpenApi]
impl QueryApi {
    /// List ads
    #[oai(path = "/ads", method = "get", operation_id = "listAds", tag = "QueryTags::Ads")]
    async fn list_ads(
        &self,
        caller: Caller,
        /// 1-based page number.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Ads per page.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> ListAdsResponse {
        let result = self
            .authorized(&caller, Access::Read, self.analytics.list_ads(page.0.unwrap_or(1), limit.0.unwrap_or(20)))
            .await;
        answer(result.map(|list| ListAdsResponse::Ok(Json(list))))
    }

    /// Get one ad
    #[oai(path = "/ads/:ad_id", method = "get", operation_id = "getAd", tag = "QueryTags::Ads")]
    async fn get_ad(&self, caller: Caller, ad_id: Path<Uuid>) -> GetAdResponse {
        let result = self.authorized(&caller, Access::Read, self.analytics.ad(ad_id.0)).await;
        answer(result.map(|ad| GetAdResponse::Ok(Json(ad))))
    }

    /// Create an ad
    ///
    /// Needs an admin key (`API_KEY`). Ingest accepts events for it within `CATALOG_REFRESH_SECS` (5 s by
    /// default).
    #[oai(path = "/ads", method = "post", operation_id = "createAd", tag = "QueryTags::Ads")]
    async fn create_ad(&self, caller: Caller, ad: JsonBody<NewAd>) -> CreateAdResponse {
        let result = self.authorized(&caller, Access::Write, self.analytics.create_ad(ad.0)).await;
        answer(result.map(|ad| {
            let location = format!("/ads/{}", ad.id);
            CreateAdResponse::Created(Json(ad), location)
        }))
    }

    /// Change an ad
    ///
    /// Needs an admin key (`API_KEY`). Only the fields given change. Ingest sees the change within
    /// `CATALOG_REFRESH_SECS`.
    #[oai(path = "/ads/:ad_id", method = "patch", operation_id = "updateAd", tag = "QueryTags::Ads")]
    async fn update_ad(&self, caller: Caller, ad_id: Path<Uuid>, changes: JsonBody<AdChanges>) -> ChangeAdResponse {
        let result = self.authorized(&caller, Access::Write, self.analytics.update_ad(ad_id.0, changes.0)).await;
        answer(result.map(|ad| ChangeAdResponse::Ok(Json(ad))))
    }

    /// Deactivate an ad
    ///
    /// Needs an admin key (`API_KEY`). A soft delete: the ad stays in the catalog with `active: false`, its
    /// numbers stay, and ingest refuses its new events (422) within `CATALOG_REFRESH_SECS`.
    /// Deactivating it again changes nothing; `PATCH` with `active: true` reactivates it.
    #[oai(path = "/ads/:ad_id", method = "delete", operation_id = "deactivateAd", tag = "QueryTags::Ads")]
    async fn deactivate_ad(&self, caller: Caller, ad_id: Path<Uuid>) -> ChangeAdResponse {
        let result = self.authorized(&caller, Access::Write, self.analytics.deactivate_ad(ad_id.0)).await;
        answer(result.map(|ad| ChangeAdResponse::Ok(Json(ad))))
    }

    /// Metrics per ad over a window
    ///
    /// Give `from` (and optionally `to`, default now) or a `timeframe` (default `24h`). The window
    /// is `[from, to)` rounded out to whole minutes. With `sort`, only the top `limit` ads by
    /// that metric, highest first (a ranking); without, every ad with events, by ad_id.
    #[oai(path = "/ads/analytics", method = "get", operation_id = "getAdsAnalytics", tag = "QueryTags::Analytics")]
    // poem-openapi takes each query parameter as an argument, and cannot share a group of them
    // between operations (poem#432): `openapi.rs` holds the repeated window parameters equal.
    #[allow(clippy::too_many_arguments)]
    async fn ads_analytics(
        &self,
        caller: Caller,
        /// Only this ad (404 if it does not exist). Absent: every ad with events in the window.
        ad_id: Query<Option<Uuid>>,
        /// Start of the window (RFC 3339), inclusive.
        from: Query<Option<OffsetDateTime>>,
        /// End of the window (RFC 3339), exclusive. Default: now.
        to: Query<Option<OffsetDateTime>>,
        /// A preset window ending now, instead of from/to.
        timeframe: Query<Option<Timeframe>>,
        /// Rank ads by this metric, highest first (ads without a value, e.g. a CTR without
        /// impressions, last). Not with `ad_id`.
        sort: Query<Option<Metric>>,
        /// How many ads a ranking holds (default 10). Only with `sort`.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `previous`: also the same ads' metrics over the period of equal length just before.
        compare: Query<Option<Compare>>,
    ) -> AnalyticsResponse<AnalyticsReport> {
        let query = self
            .authorize(&caller, Access::Read)
            .and_then(|()| Window::resolve(from.0, to.0, timeframe.0, now()))
            .and_then(|window| {
                Ok(ReportQuery {
                    window,
                    ad: ad_id.0,
                    ranking: Ranking::resolve(sort.0, limit.0, ad_id.0.is_some())?,
                    compare: compare.0,
                })
            });
        let result = match query {
            Ok(query) => self.analytics.report(query).await,
            Err(e) => Err(e),
        };
        answer(result.map(|body| AnalyticsResponse::Ok(Json(body))))
    }

    /// Metrics grouped by ad, campaign, device type, browser or country
    ///
    /// Same window rules as `getAdsAnalytics`, reaching back as far as the audience rollups are
    /// kept (`AUDIENCE_TTL_DAYS`, 400 days by default: an earlier `from` is a 422 naming the
    /// earliest start, and `timeframe=all` starts there). The filters combine with AND. Groups come
    /// highest `sort` first (default `impressions`), at most `limit` of them.
    #[oai(
        path = "/ads/analytics/breakdown",
        method = "get",
        operation_id = "getBreakdown",
        tag = "QueryTags::Analytics"
    )]
    // poem-openapi takes each query parameter as an argument, and cannot share a group of them
    // between operations (poem#432): `openapi.rs` holds the repeated window parameters equal.
    #[allow(clippy::too_many_arguments)]
    async fn breakdown(
        &self,
        caller: Caller,
        /// What to group by.
        by: Query<Dimension>,
        /// Start of the window (RFC 3339), inclusive.
        from: Query<Option<OffsetDateTime>>,
        /// End of the window (RFC 3339), exclusive. Default: now.
        to: Query<Option<OffsetDateTime>>,
        /// A preset window ending now, instead of from/to.
        timeframe: Query<Option<Timeframe>>,
        /// Only this ad's events (404 if it does not exist).
        ad_id: Query<Option<Uuid>>,
        /// Only the events of this campaign's ads.
        #[oai(validator(max_length = 100))]
        campaign_id: Query<Option<String>>,
        /// Only events from this device type.
        device_type: Query<Option<DeviceTypeFilter>>,
        /// Only events from this browser.
        browser: Query<Option<BrowserFilter>>,
        /// Only events from this country (ISO 3166-1 alpha-2), or `unknown`.
        country: Query<Option<String>>,
        /// Order groups by this metric, highest first: clicks, unique_clicks, impressions,
        /// unique_viewers or ctr. Default: impressions.
        sort: Query<Option<Metric>>,
        /// How many groups at most (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "250")))]
        limit: Query<Option<u32>>,
    ) -> AnalyticsResponse<Breakdown> {
        let query = self.authorize(&caller, Access::Read).and_then(|()| {
            Ok(BreakdownQuery {
                window: breakdown::kept_window(
                    Window::resolve(from.0, to.0, timeframe.0, now())?,
                    timeframe.0,
                    self.audience_ttl_days,
                    now(),
                )?,
                by: by.0,
                filters: Filters::new(ad_id.0, campaign_id.0, device_type.0, browser.0, country.0)?,
                ranking: Ranking {
                    metric: breakdown::check_sort(sort.0.unwrap_or(Metric::Impressions))?,
                    limit: limit.0.unwrap_or(breakdown::DEFAULT_GROUPS),
                },
            })
        });
        let result = match query {
            Ok(query) => self.analytics.breakdown(query).await,
            Err(e) => Err(e),
        };
        answer(result.map(|body| AnalyticsResponse::Ok(Json(body))))
    }

    /// One ad's totals and time series
    ///
    /// Same window rules as `getAdsAnalytics`; at most 10,000 buckets, each following `tz`.
    #[oai(
        path = "/ads/:ad_id/analytics",
        method = "get",
        operation_id = "getAdAnalytics",
        tag = "QueryTags::Analytics"
    )]
    // poem-openapi takes each query parameter as an argument, and cannot share a group of them
    // between operations (poem#432): `openapi.rs` holds the repeated window parameters equal.
    #[allow(clippy::too_many_arguments)]
    async fn ad_analytics(
        &self,
        caller: Caller,
        ad_id: Path<Uuid>,
        /// Start of the window (RFC 3339), inclusive.
        from: Query<Option<OffsetDateTime>>,
        /// End of the window (RFC 3339), exclusive. Default: now.
        to: Query<Option<OffsetDateTime>>,
        /// A preset window ending now, instead of from/to.
        timeframe: Query<Option<Timeframe>>,
        /// Bucket size of the series. Default: hour.
        granularity: Query<Option<Granularity>>,
        /// IANA time zone the buckets follow (e.g. `America/New_York`): days, weeks (from
        /// Monday) and months start at its local midnight, daylight-saving changes included.
        /// Default: `UTC`. Names are matched ignoring case; the answer's `tz` is the
        /// database's spelling.
        #[oai(validator(max_length = 64))]
        tz: Query<Option<String>>,
        /// `previous`: also the totals and series of the period of equal length just before.
        compare: Query<Option<Compare>>,
    ) -> AnalyticsResponse<AdAnalytics> {
        let query = self
            .authorize(&caller, Access::Read)
            .and_then(|()| series_query(from.0, to.0, timeframe.0, granularity.0, tz.0, compare.0));
        let result = match query {
            Ok(query) => self.analytics.ad_analytics(ad_id.0, query).await,
            Err(e) => Err(e),
        };
        answer(result.map(|body| AnalyticsResponse::Ok(Json(body))))
    }

    /// Every ad's totals and time series together
    ///
    /// The numbers of all ads as one: what `getAdAnalytics` gives for one ad, with unique
    /// clicks and viewers counted once across ads. Same parameters and rules.
    #[oai(path = "/ads/analytics/series", method = "get", operation_id = "getSeries", tag = "QueryTags::Analytics")]
    // poem-openapi takes each query parameter as an argument, and cannot share a group of them
    // between operations (poem#432): `openapi.rs` holds the repeated window parameters equal.
    #[allow(clippy::too_many_arguments)]
    async fn series(
        &self,
        caller: Caller,
        /// Start of the window (RFC 3339), inclusive.
        from: Query<Option<OffsetDateTime>>,
        /// End of the window (RFC 3339), exclusive. Default: now.
        to: Query<Option<OffsetDateTime>>,
        /// A preset window ending now, instead of from/to.
        timeframe: Query<Option<Timeframe>>,
        /// Bucket size of the series. Default: hour.
        granularity: Query<Option<Granularity>>,
        /// IANA time zone the buckets follow (e.g. `America/New_York`): days, weeks (from
        /// Monday) and months start at its local midnight, daylight-saving changes included.
        /// Default: `UTC`. Names are matched ignoring case; the answer's `tz` is the
        /// database's spelling.
        #[oai(validator(max_length = 64))]
        tz: Query<Option<String>>,
        /// `previous`: also the totals and series of the period of equal length just before.
        compare: Query<Option<Compare>>,
    ) -> SeriesResponse {
        let query = self
            .authorize(&caller, Access::Read)
            .and_then(|()| series_query(from.0, to.0, timeframe.0, granularity.0, tz.0, compare.0));
        let result = match query {
            Ok(query) => self.analytics.series(None, query).await,
            Err(e) => Err(e),
        };
        answer(result.map(|series| SeriesResponse::Ok(Json(series))))
    }
}

/// The series parameters, resolved and checked (the bucket limit is checked with the buckets).
fn series_query(
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    timeframe: Option<Timeframe>,
    granularity: Option<Granularity>,
    tz: Option<String>,
    compare: Option<Compare>,
) -> Result<SeriesQuery, QueryError> {
    let window = Window::resolve(from, to, timeframe, now())?;
    let zone = tz.as_deref().map_or(Ok(Zone::utc()), Zone::parse)?;
    Ok(SeriesQuery { window, granularity: granularity.unwrap_or(Granularity::Hour), zone, compare })
}

impl QueryApi {
    fn authorize(&self, caller: &Caller, access: Access) -> Result<(), QueryError> {
        self.keys.authorize(caller, access)
    }

    /// `answer`, if the caller may have it (it is not started otherwise).
    async fn authorized<T>(
        &self,
        caller: &Caller,
        access: Access,
        answer: impl std::future::Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        self.authorize(caller, access)?;
        answer.await
    }
}

/// The `WWW-Authenticate` header of a 401 (RFC 6750).
const BEARER: &str = "Bearer";

/// An operation's response to an error. [`QueryError::status`] is the one map from errors to
/// statuses; each response type only says which of those statuses it has (its variants, which
/// openapi.yaml lists). An error whose status the operation lacks is a bug in the operation: it
/// is logged and answered 503, telling the caller nothing of it.
trait ErrorAnswers: Sized {
    /// The answer of `status`, if the operation has it.
    fn with_status(status: StatusCode, problem: Json<Problem>) -> Option<Self>;
}

/// The response to `result`: its success, or the error's answer.
fn answer<R: ErrorAnswers>(result: Result<R, QueryError>) -> R {
    let error = match result {
        Ok(response) => return response,
        Err(error) => error,
    };
    let status = error.status();
    R::with_status(status, problem(&error)).unwrap_or_else(|| {
        tracing::error!(%error, %status, "the operation has no answer of this status; answering 503");
        let unavailable =
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the service could not answer; retry shortly", None);
        R::with_status(StatusCode::SERVICE_UNAVAILABLE, Json(unavailable)).expect("every operation answers 503")
    })
}

impl ErrorAnswers for ListAdsResponse {
    fn with_status(status: StatusCode, problem: Json<Problem>) -> Option<Self> {
        Some(match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem, BEARER.to_owned()),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem),
            _ => return None,
        })
    }
}

impl ErrorAnswers for GetAdResponse {
    fn with_status(status: StatusCode, problem: Json<Problem>) -> Option<Self> {
        Some(match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem, BEARER.to_owned()),
            StatusCode::NOT_FOUND => Self::NotFound(problem),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem),
            _ => return None,
        })
    }
}

impl ErrorAnswers for CreateAdResponse {
    fn with_status(status: StatusCode, problem: Json<Problem>) -> Option<Self> {
        Some(match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem, BEARER.to_owned()),
            StatusCode::FORBIDDEN => Self::Forbidden(problem),
            StatusCode::CONFLICT => Self::Conflict(problem),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(problem),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem),
            _ => return None,
        })
    }
}

impl ErrorAnswers for ChangeAdResponse {
    fn with_status(status: StatusCode, problem: Json<Problem>) -> Option<Self> {
        Some(match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem, BEARER.to_owned()),
            StatusCode::FORBIDDEN => Self::Forbidden(problem),
            StatusCode::NOT_FOUND => Self::NotFound(problem),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(problem),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem),
            _ => return None,
        })
    }
}

impl ErrorAnswers for SeriesResponse {
    fn with_status(status: StatusCode, problem: Json<Problem>) -> Option<Self> {
        Some(match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem, BEARER.to_owned()),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(problem),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem),
            _ => return None,
        })
    }
}

impl<T: poem_openapi::types::ToJSON> ErrorAnswers for AnalyticsResponse<T> {
    fn with_status(status: StatusCode, problem: Json<Problem>) -> Option<Self> {
        Some(match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(problem, BEARER.to_owned()),
            StatusCode::NOT_FOUND => Self::NotFound(problem),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(problem),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(problem),
            _ => return None,
        })
    }
}

fn problem(error: &QueryError) -> Json<Problem> {
    if let QueryError::ClickHouse(cause) = error {
        tracing::error!(%cause, "answering 503: ClickHouse did not answer");
    }
    Json(Problem::new(error.status(), error.public_message(), error.field()))
}

/// A parameter or body poem-openapi could not parse or validate, with the parameter's or
/// property's name. Every path of this API has one parameter, `ad_id`.
fn bad_parameter(error: poem::Error) -> Json<Problem> {
    if let Some(e) = error.downcast_ref::<InvalidBody>() {
        return Json(Problem::new(StatusCode::BAD_REQUEST, e.detail.clone(), e.field.as_deref()));
    }
    Json(service_kit::parameter_problem(&error, "ad_id"))
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "list_ads_bad_request")]
pub enum ListAdsResponse {
    /// A page of the catalog, oldest ads first.
    #[oai(status = 200)]
    Ok(Json<AdList>),
    /// `page` or `limit` is not a number in range.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request has no API key, or one the service does not know (reads need none when the
    /// service runs with `ANONYMOUS_READS`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// ClickHouse did not answer.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn list_ads_bad_request(error: poem::Error) -> ListAdsResponse {
    ListAdsResponse::BadRequest(bad_parameter(error))
}

/// `getAd`.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "get_ad_bad_request")]
pub enum GetAdResponse {
    /// The ad.
    #[oai(status = 200)]
    Ok(Json<Ad>),
    /// `ad_id` is not a UUID.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request has no API key, or one the service does not know (reads need none when the
    /// service runs with `ANONYMOUS_READS`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// No ad has this id.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// ClickHouse did not answer.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn get_ad_bad_request(error: poem::Error) -> GetAdResponse {
    GetAdResponse::BadRequest(bad_parameter(error))
}

/// `updateAd` and `deactivateAd`.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "change_ad_bad_request")]
pub enum ChangeAdResponse {
    /// The ad after the change.
    #[oai(status = 200)]
    Ok(Json<Ad>),
    /// `ad_id` is not a UUID, or the body is not JSON of the documented shape (unknown fields
    /// included).
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request has no API key, or one the service does not know.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The key only reads (`READ_API_KEYS`), or the service has no admin key (`API_KEY`), so
    /// ads cannot be changed.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No ad has this id.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// A value breaks a rule (blank title or campaign, a URL that is not http(s)).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// ClickHouse did not answer; the change may or may not be stored (repeat it).
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn change_ad_bad_request(error: poem::Error) -> ChangeAdResponse {
    ChangeAdResponse::BadRequest(bad_parameter(error))
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "create_ad_bad_request")]
pub enum CreateAdResponse {
    /// Created; `Location` is its address.
    #[oai(status = 201)]
    Created(Json<Ad>, #[oai(header = "Location")] String),
    /// The body is not JSON of the documented shape (a missing or unknown field, a value of the
    /// wrong type, a string too long, a URL that does not parse).
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request has no API key, or one the service does not know (reads need none when the
    /// service runs with `ANONYMOUS_READS`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The key only reads (`READ_API_KEYS`), or the service has no admin key (`API_KEY`), so ads
    /// cannot be changed.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// An ad with this `id` exists already.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// A value breaks a rule (blank title or campaign, a URL that is not http(s)).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// ClickHouse did not answer; the ad may or may not be stored (repeat with its `id`).
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn create_ad_bad_request(error: poem::Error) -> CreateAdResponse {
    CreateAdResponse::BadRequest(bad_parameter(error))
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "analytics_bad_request")]
pub enum AnalyticsResponse<T: poem_openapi::types::ToJSON> {
    /// The metrics.
    #[oai(status = 200)]
    Ok(Json<T>),
    /// A parameter is not of its type (not a UUID, not RFC 3339, unknown enum value).
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request has no API key, or one the service does not know (reads need none when the
    /// service runs with `ANONYMOUS_READS`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The ad does not exist.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// Parameters contradict each other (timeframe with from/to, from after to, too many buckets,
    /// sort with ad_id, limit without sort, a previous period before 1970), name an unknown
    /// time zone, or sort a breakdown by a metric it does not have.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// ClickHouse did not answer.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn analytics_bad_request<T: poem_openapi::types::ToJSON>(error: poem::Error) -> AnalyticsResponse<T> {
    AnalyticsResponse::BadRequest(bad_parameter(error))
}

/// `getSeries`: like [`AnalyticsResponse`], without an ad to miss.
#[derive(ApiResponse)]
#[allow(clippy::large_enum_variant)] // one per request, moved once into the response
#[oai(bad_request_handler = "series_bad_request")]
pub enum SeriesResponse {
    /// Every ad's totals and series.
    #[oai(status = 200)]
    Ok(Json<Series>),
    /// A parameter is not of its type (not RFC 3339, unknown enum value).
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The request has no API key, or one the service does not know (reads need none when the
    /// service runs with `ANONYMOUS_READS`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// Parameters contradict each other (timeframe with from/to, from after to, too many
    /// buckets, a previous period before 1970) or name an unknown time zone.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// ClickHouse did not answer.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn series_bad_request(error: poem::Error) -> SeriesResponse {
    SeriesResponse::BadRequest(bad_parameter(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_answered_by_its_status_or_else_as_unavailable() {
        let id = Uuid::nil();
        assert!(matches!(answer::<GetAdResponse>(Err(QueryError::AdNotFound(id))), GetAdResponse::NotFound(_)));
        assert!(matches!(
            answer::<GetAdResponse>(Err(QueryError::Unauthorized("no key"))),
            GetAdResponse::Unauthorized(_, _)
        ));
        assert!(matches!(
            answer::<ChangeAdResponse>(Err(QueryError::Forbidden("reads only"))),
            ChangeAdResponse::Forbidden(_)
        ));
        assert!(matches!(answer::<CreateAdResponse>(Err(QueryError::AdExists(id))), CreateAdResponse::Conflict(_)));
        // A status the operation does not have is a bug: 503, saying nothing of it.
        match answer::<GetAdResponse>(Err(QueryError::AdExists(id))) {
            GetAdResponse::Unavailable(problem) => {
                assert_eq!(problem.0.detail, "the service could not answer; retry shortly")
            }
            _ => panic!("not 503"),
        }
        match answer::<SeriesResponse>(Err(QueryError::ClickHouse(
            "Code: 210. Connection refused (clickhouse-0:9000)".into(),
        ))) {
            SeriesResponse::Unavailable(problem) => {
                assert!(!problem.0.detail.contains("clickhouse-0"), "{}", problem.0.detail)
            }
            _ => panic!("not 503"),
        }
    }
}
