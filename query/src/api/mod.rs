//! The HTTP surface of the query service (poem-openapi). Handlers resolve parameters and map
//! results; [`crate::service::Analytics`] computes.

pub mod model;

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use poem::http::StatusCode;
use service_kit::Problem;
use time::OffsetDateTime;
use uuid::Uuid;

use self::model::{Ad, AdAnalytics, AdList, AnalyticsReport};
use crate::error::QueryError;
use crate::range::{Granularity, Timeframe, Window};
use crate::service::{now, Analytics};

#[derive(Tags)]
pub enum QueryTags {
    /// The ad catalog.
    Ads,
    /// Clicks, unique clicks, impressions, CTR and playback over any window.
    Analytics,
}

pub struct QueryApi {
    pub analytics: Arc<Analytics>,
}

#[OpenApi]
impl QueryApi {
    /// List ads
    #[oai(path = "/ads", method = "get", operation_id = "listAds", tag = "QueryTags::Ads")]
    async fn list_ads(
        &self,
        /// 1-based page number.
        #[oai(validator(minimum(value = "1")))]
        page: Query<Option<u32>>,
        /// Ads per page.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> ListAdsResponse {
        match self.analytics.list_ads(page.0.unwrap_or(1), limit.0.unwrap_or(20)).await {
            Ok(list) => ListAdsResponse::Ok(Json(list)),
            Err(e) => ListAdsResponse::Unavailable(problem(&e)),
        }
    }

    /// Get one ad
    #[oai(path = "/ads/:ad_id", method = "get", operation_id = "getAd", tag = "QueryTags::Ads")]
    async fn get_ad(&self, ad_id: Path<Uuid>) -> GetAdResponse {
        match self.analytics.ad(ad_id.0).await {
            Ok(ad) => GetAdResponse::Ok(Json(ad)),
            Err(e @ QueryError::AdNotFound(_)) => GetAdResponse::NotFound(problem(&e)),
            Err(e) => GetAdResponse::Unavailable(problem(&e)),
        }
    }

    /// Metrics per ad over a window
    ///
    /// Give `from` (and optionally `to`, default now) or a `timeframe` (default `24h`). The window
    /// is `[from, to)` rounded out to whole minutes.
    #[oai(path = "/ads/analytics", method = "get", operation_id = "getAdsAnalytics", tag = "QueryTags::Analytics")]
    async fn ads_analytics(
        &self,
        /// Only this ad (404 if it does not exist). Absent: every ad with events in the window.
        ad_id: Query<Option<Uuid>>,
        /// Start of the window (RFC 3339), inclusive.
        from: Query<Option<OffsetDateTime>>,
        /// End of the window (RFC 3339), exclusive. Default: now.
        to: Query<Option<OffsetDateTime>>,
        /// A preset window ending now, instead of from/to.
        timeframe: Query<Option<Timeframe>>,
    ) -> AnalyticsResponse<AnalyticsReport> {
        let result = match Window::resolve(from.0, to.0, timeframe.0, now()) {
            Ok(window) => self.analytics.report(window, ad_id.0).await,
            Err(e) => Err(e),
        };
        result.into()
    }

    /// One ad's totals and time series
    ///
    /// Same window rules as `getAdsAnalytics`; at most 10,000 buckets.
    #[oai(path = "/ads/:ad_id/analytics", method = "get", operation_id = "getAdAnalytics", tag = "QueryTags::Analytics")]
    async fn ad_analytics(
        &self,
        ad_id: Path<Uuid>,
        /// Start of the window (RFC 3339), inclusive.
        from: Query<Option<OffsetDateTime>>,
        /// End of the window (RFC 3339), exclusive. Default: now.
        to: Query<Option<OffsetDateTime>>,
        /// A preset window ending now, instead of from/to.
        timeframe: Query<Option<Timeframe>>,
        /// Bucket size of the series. Default: hour.
        granularity: Query<Option<Granularity>>,
    ) -> AnalyticsResponse<AdAnalytics> {
        let granularity = granularity.0.unwrap_or(Granularity::Hour);
        let result = match Window::resolve(from.0, to.0, timeframe.0, now()) {
            Ok(window) => self.analytics.ad_analytics(ad_id.0, window, granularity).await,
            Err(e) => Err(e),
        };
        result.into()
    }
}

fn problem(error: &QueryError) -> Json<Problem> {
    Json(Problem::new(error.status(), error.to_string(), error.field()))
}

/// A parameter poem-openapi could not parse or validate, with the parameter's name. Every path
/// of this API has one parameter, `ad_id`.
fn bad_parameter(error: poem::Error) -> Json<Problem> {
    if let Some(e) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        return Json(Problem::new(StatusCode::BAD_REQUEST, format!("ad_id: must be a UUID ({})", e.reason), Some("ad_id")));
    }
    let field = error.downcast_ref::<poem_openapi::error::ParseParamError>().map(|e| e.name);
    Json(Problem::new(StatusCode::BAD_REQUEST, error.to_string(), field))
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
    /// ClickHouse did not answer.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn list_ads_bad_request(error: poem::Error) -> ListAdsResponse {
    ListAdsResponse::BadRequest(bad_parameter(error))
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "get_ad_bad_request")]
pub enum GetAdResponse {
    /// The ad.
    #[oai(status = 200)]
    Ok(Json<Ad>),
    /// `ad_id` is not a UUID.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
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

#[derive(ApiResponse)]
#[oai(bad_request_handler = "analytics_bad_request")]
pub enum AnalyticsResponse<T: poem_openapi::types::ToJSON> {
    /// The metrics.
    #[oai(status = 200)]
    Ok(Json<T>),
    /// A parameter is not of its type (not a UUID, not RFC 3339, unknown enum value).
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The ad does not exist.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// Parameters contradict each other (timeframe with from/to, from after to, too many buckets).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// ClickHouse did not answer.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn analytics_bad_request<T: poem_openapi::types::ToJSON>(error: poem::Error) -> AnalyticsResponse<T> {
    AnalyticsResponse::BadRequest(bad_parameter(error))
}

impl<T: poem_openapi::types::ToJSON> From<Result<T, QueryError>> for AnalyticsResponse<T> {
    fn from(result: Result<T, QueryError>) -> Self {
        match result {
            Ok(body) => Self::Ok(Json(body)),
            Err(e @ QueryError::InvalidParameter { .. }) => Self::Unprocessable(problem(&e)),
            Err(e @ QueryError::AdNotFound(_)) => Self::NotFound(problem(&e)),
            Err(e @ QueryError::ClickHouse(_)) => Self::Unavailable(problem(&e)),
        }
    }
}
