//! Response bodies of the query API.

use poem_openapi::Object;
use schemas::rows::AdRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::range::Granularity;
use crate::repo::Counts;

/// An ad of the catalog.
#[derive(Object, Clone)]
pub struct Ad {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    /// Where the creative (video or image) is served from.
    pub media_url: String,
    /// Where a click sends the person.
    pub target_url: String,
    pub campaign_id: String,
    /// Events for inactive ads are rejected by ingest.
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl From<AdRow> for Ad {
    fn from(row: AdRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            description: row.description,
            media_url: row.media_url,
            target_url: row.target_url,
            campaign_id: row.campaign_id,
            active: row.active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Object, Clone)]
pub struct Pagination {
    /// 1-based page number.
    pub page: u32,
    pub limit: u32,
    /// Ads in the catalog.
    pub total: u64,
    pub total_pages: u64,
}

#[derive(Object, Clone)]
pub struct AdList {
    pub ads: Vec<Ad>,
    pub pagination: Pagination,
}

/// The metrics of one ad (or one bucket) over a window.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct Metrics {
    pub clicks: u64,
    /// Distinct visitors (client IP + user agent) who clicked, within the window.
    pub unique_clicks: u64,
    pub impressions: u64,
    /// clicks / impressions; null when there were no impressions.
    pub ctr: Option<f64>,
    /// Mean playback before a click, over the clicks that reported one; null when none did.
    pub avg_playback_time_secs: Option<f64>,
}

impl From<Counts> for Metrics {
    fn from(c: Counts) -> Self {
        Self {
            clicks: c.clicks,
            unique_clicks: c.unique_clicks,
            impressions: c.impressions,
            ctr: c.ctr(),
            avg_playback_time_secs: c.avg_playback_time_secs(),
        }
    }
}

#[derive(Object, Clone)]
pub struct AdMetrics {
    pub ad_id: Uuid,
    #[oai(flatten)]
    pub metrics: Metrics,
}

/// Metrics per ad over `[from, to)`, both rounded to whole minutes.
#[derive(Object, Clone)]
pub struct AnalyticsReport {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// One entry per ad with events in the window (or exactly the ad asked for), by ad_id.
    pub ads: Vec<AdMetrics>,
}

#[derive(Object, Clone)]
pub struct Bucket {
    /// Start of the bucket (UTC); the first bucket may start before `from` and then only
    /// counts events from `from` on.
    pub start: OffsetDateTime,
    #[oai(flatten)]
    pub metrics: Metrics,
}

/// One ad's totals and time series over `[from, to)`.
#[derive(Object, Clone)]
pub struct AdAnalytics {
    pub ad_id: Uuid,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub granularity: Granularity,
    pub totals: Metrics,
    /// Every bucket of the window, oldest first; buckets without events hold zeros.
    pub series: Vec<Bucket>,
}
