//! Response bodies of the query API.

use poem_openapi::Object;
use schemas::ivt::InvalidReason;
use schemas::rows::AdRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::text::Text;
use crate::breakdown::Dimension;
use crate::range::Granularity;
use crate::repo::{ByReason, Counts};

/// An ad of the catalog.
#[derive(Object, Clone)]
#[oai(example)]
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

/// A new ad. Unknown fields are rejected.
#[derive(Object, Debug)]
#[oai(deny_unknown_fields, example)]
pub struct NewAd {
    /// Its id. Absent: the server assigns one (a UUIDv7).
    #[oai(nullable)]
    pub id: Option<Uuid>,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: Text,
    /// Default (also for null): empty.
    #[oai(default, nullable, validator(max_length = 2000))]
    pub description: Text,
    /// Where the creative (video or image) is served from: an http(s) URL, in ASCII
    /// (percent-encode anything else).
    #[oai(validator(pattern = "^https?://[!-~]+$", max_length = 2048))]
    pub media_url: Text,
    /// Where a click sends the person: an http(s) URL, in ASCII.
    #[oai(validator(pattern = "^https?://[!-~]+$", max_length = 2048))]
    pub target_url: Text,
    #[oai(validator(min_length = 1, max_length = 100))]
    pub campaign_id: Text,
    /// Whether ingest accepts its events. Default (also for null): true.
    #[oai(default = "active_by_default", nullable)]
    pub active: bool,
}

fn active_by_default() -> bool {
    true
}

/// Changes to an ad: the fields given replace the ad's, the others stay.
#[derive(Object, Debug, Default)]
#[oai(deny_unknown_fields, example)]
pub struct AdChanges {
    #[oai(nullable, validator(min_length = 1, max_length = 200))]
    pub title: Option<Text>,
    #[oai(nullable, validator(max_length = 2000))]
    pub description: Option<Text>,
    /// An http(s) URL.
    #[oai(nullable, validator(pattern = "^https?://[!-~]+$", max_length = 2048))]
    pub media_url: Option<Text>,
    /// An http(s) URL.
    #[oai(nullable, validator(pattern = "^https?://[!-~]+$", max_length = 2048))]
    pub target_url: Option<Text>,
    #[oai(nullable, validator(min_length = 1, max_length = 100))]
    pub campaign_id: Option<Text>,
    /// false stops ingest from accepting its events (within `CATALOG_REFRESH_SECS`).
    #[oai(nullable)]
    pub active: Option<bool>,
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
#[oai(example)]
pub struct AdList {
    pub ads: Vec<Ad>,
    pub pagination: Pagination,
}

/// The metrics of one ad (or one bucket) over a window.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct Metrics {
    pub clicks: u64,
    /// Distinct visitors who clicked within the window; a visitor is a client IP and user agent.
    /// Exact up to about 65,000 visitors, an estimate within about 1 % beyond.
    pub unique_clicks: u64,
    pub impressions: u64,
    /// Distinct visitors who were shown the ad within the window (same identity as
    /// `unique_clicks`).
    pub unique_viewers: u64,
    /// clicks / impressions; null when there were no impressions.
    #[oai(nullable)]
    pub ctr: Option<f64>,
    /// Mean playback before a click, over the clicks that reported one; null when none did.
    #[oai(nullable)]
    pub avg_playback_time_secs: Option<f64>,
    /// Median playback before a click (t-digest: exact for small sets, within about 1 %
    /// beyond); null when no click reported one.
    #[oai(nullable)]
    pub p50_playback_time_secs: Option<f64>,
    /// 95th percentile of playback before a click; null when no click reported one.
    #[oai(nullable)]
    pub p95_playback_time_secs: Option<f64>,
    /// Mean share of the ad watched before a click, in percent, over the clicks that reported
    /// one; null when none did.
    #[oai(nullable)]
    pub avg_watched_percent: Option<f64>,
    /// Clicks flagged as invalid traffic: stored, but in none of the numbers above.
    pub invalid_clicks: InvalidTraffic,
    /// Impressions flagged as invalid traffic (the two click rules never apply: always 0).
    pub invalid_impressions: InvalidTraffic,
}

/// Events flagged as invalid traffic (general invalid traffic, MRC), by reason. Each event has
/// one reason, the first that applies in this order.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct InvalidTraffic {
    pub total: u64,
    /// The user agent is on the list of known bots, crawlers and HTTP libraries.
    pub bot_user_agent: u64,
    /// The client address is in a configured data-centre range.
    pub datacenter_ip: u64,
    /// The same visitor clicked the same ad shortly before (30 s by default).
    pub duplicate_click: u64,
    /// The visitor had not been shown the ad in the preceding period (an hour by default).
    pub click_without_impression: u64,
    /// The request had no `User-Agent` header.
    pub missing_user_agent: u64,
}

impl From<ByReason> for InvalidTraffic {
    fn from(counts: ByReason) -> Self {
        Self {
            total: counts.total(),
            bot_user_agent: counts.get(InvalidReason::BotUserAgent),
            datacenter_ip: counts.get(InvalidReason::DatacenterIp),
            duplicate_click: counts.get(InvalidReason::DuplicateClick),
            click_without_impression: counts.get(InvalidReason::ClickWithoutImpression),
            missing_user_agent: counts.get(InvalidReason::MissingUserAgent),
        }
    }
}

impl From<Counts> for Metrics {
    fn from(c: Counts) -> Self {
        Self {
            clicks: c.clicks,
            unique_clicks: c.unique_clicks,
            impressions: c.impressions,
            unique_viewers: c.unique_viewers,
            ctr: c.ctr(),
            avg_playback_time_secs: c.avg_playback_time_secs(),
            p50_playback_time_secs: c.playback_p50_secs,
            p95_playback_time_secs: c.playback_p95_secs,
            avg_watched_percent: c.avg_watched_percent(),
            invalid_clicks: c.invalid_clicks.into(),
            invalid_impressions: c.invalid_impressions.into(),
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
#[oai(example)]
pub struct AnalyticsReport {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// When ingest received the newest event stored so far (any ad). The numbers hold every
    /// stored event; events still on their way from ingest to ClickHouse (normally under a
    /// second; longer while the aggregator works off a backlog) are not in them yet, even if
    /// received earlier. Null before the first event.
    #[oai(nullable)]
    pub newest_event_received_at: Option<OffsetDateTime>,
    /// Every ad of the window together (with `ad_id`: that ad). Unique clicks and viewers count
    /// a visitor once across ads, so they are not the sums of the ads'.
    pub total: Metrics,
    /// Without `sort`: one entry per ad with events in the window (or exactly the ad asked for),
    /// by ad_id. With `sort`: the top `limit` ads, highest first.
    pub ads: Vec<AdMetrics>,
    /// With `compare=previous`: the same ads over the period of equal length just before.
    #[oai(skip_serializing_if_is_none)]
    pub previous: Option<PreviousReport>,
}

/// The same ads as the report, over `[from, to)` of the previous period.
#[derive(Object, Clone)]
pub struct PreviousReport {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// Every ad of the previous period together (with `ad_id`: that ad), as the report's
    /// `total`.
    pub total: Metrics,
    /// In the order of the report's `ads`; zeros for an ad without events then.
    pub ads: Vec<AdMetrics>,
}

#[derive(Object, Clone)]
pub struct Bucket {
    /// Start of the bucket, with the offset of `tz` at that instant. The first bucket may start
    /// before `from` and then only counts events from `from` on.
    pub start: OffsetDateTime,
    #[oai(flatten)]
    pub metrics: Metrics,
}

/// Totals and series over a window.
#[derive(Object, Clone)]
pub struct Period {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub totals: Metrics,
    /// Every bucket of the window, oldest first; buckets without events hold zeros.
    pub series: Vec<Bucket>,
}

/// Totals and time series over `[from, to)`: of every ad together (`getSeries`), and the body
/// of one ad's (`AdAnalytics`).
#[derive(Object, Clone)]
#[oai(example)]
pub struct Series {
    pub granularity: Granularity,
    /// The time zone buckets follow.
    pub tz: String,
    /// When ingest received the newest event stored so far (any ad). The numbers hold every
    /// stored event; events still on their way from ingest to ClickHouse (normally under a
    /// second; longer while the aggregator works off a backlog) are not in them yet, even if
    /// received earlier. Null before the first event.
    #[oai(nullable)]
    pub newest_event_received_at: Option<OffsetDateTime>,
    #[oai(flatten)]
    pub current: Period,
    /// With `compare=previous`: the period of equal length just before, bucketed alike.
    #[oai(skip_serializing_if_is_none)]
    pub previous: Option<Period>,
}

/// One ad's totals and time series over `[from, to)`.
#[derive(Object, Clone)]
#[oai(example)]
pub struct AdAnalytics {
    pub ad_id: Uuid,
    #[oai(flatten)]
    pub series: Series,
}

/// The metrics of one group of a breakdown.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct BreakdownGroup {
    /// The campaign id, device type, browser or country; `unknown` for events stored without it.
    pub value: String,
    pub clicks: u64,
    pub unique_clicks: u64,
    pub impressions: u64,
    pub unique_viewers: u64,
    /// clicks / impressions; null when there were no impressions.
    #[oai(nullable)]
    pub ctr: Option<f64>,
}

impl BreakdownGroup {
    pub fn new(value: String, c: Counts) -> Self {
        Self {
            value,
            clicks: c.clicks,
            unique_clicks: c.unique_clicks,
            impressions: c.impressions,
            unique_viewers: c.unique_viewers,
            ctr: c.ctr(),
        }
    }
}

/// The window's metrics grouped by one dimension, highest `sort` first.
#[derive(Object, Clone)]
#[oai(example)]
pub struct Breakdown {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub by: Dimension,
    /// When ingest received the newest event stored so far (any ad).
    #[oai(nullable)]
    pub newest_event_received_at: Option<OffsetDateTime>,
    pub groups: Vec<BreakdownGroup>,
}

/// The examples shown in the spec and Swagger UI.
mod examples {
    use poem_openapi::types::Example;
    use time::macros::datetime;
    use uuid::uuid;

    use super::*;

    const AD_ID: Uuid = uuid!("a1000000-0000-4000-8000-000000000001");

    fn metrics(clicks: u64, impressions: u64) -> Metrics {
        Metrics {
            clicks,
            unique_clicks: clicks * 9 / 10,
            impressions,
            unique_viewers: impressions * 8 / 10,
            ctr: Some(clicks as f64 / impressions as f64),
            avg_playback_time_secs: Some(11.2),
            p50_playback_time_secs: Some(9.0),
            p95_playback_time_secs: Some(28.5),
            avg_watched_percent: Some(46.0),
            invalid_clicks: ByReason([clicks / 50, 0, clicks / 40, clicks / 25, clicks / 200]).into(),
            invalid_impressions: ByReason([impressions / 30, impressions / 100, 0, 0, impressions / 200]).into(),
        }
    }

    impl Example for Ad {
        fn example() -> Self {
            Ad {
                id: AD_ID,
                title: "Trail Runner 3".to_owned(),
                description: "15 s pre-roll for the new running shoe".to_owned(),
                media_url: "https://cdn.example.com/ads/trail-runner-3.mp4".to_owned(),
                target_url: "https://shop.example.com/trail-runner-3".to_owned(),
                campaign_id: "spring-launch".to_owned(),
                active: true,
                created_at: datetime!(2026-01-01 0:00 UTC),
                updated_at: datetime!(2026-03-02 9:30 UTC),
            }
        }
    }

    impl Example for NewAd {
        fn example() -> Self {
            NewAd {
                id: None,
                title: Text("Winter boots".to_owned()),
                description: Text("20 s pre-roll".to_owned()),
                media_url: Text("https://cdn.example.com/ads/boots.mp4".to_owned()),
                target_url: Text("https://shop.example.com/boots".to_owned()),
                campaign_id: Text("winter".to_owned()),
                active: true,
            }
        }
    }

    impl Example for AdChanges {
        fn example() -> Self {
            AdChanges { title: Some(Text("Snow boots".to_owned())), active: Some(true), ..AdChanges::default() }
        }
    }

    impl Example for AdList {
        fn example() -> Self {
            AdList { ads: vec![Ad::example()], pagination: Pagination { page: 1, limit: 20, total: 1, total_pages: 1 } }
        }
    }

    impl Example for AnalyticsReport {
        fn example() -> Self {
            AnalyticsReport {
                from: datetime!(2026-11-21 10:15 UTC),
                to: datetime!(2026-11-22 10:16 UTC),
                newest_event_received_at: Some(datetime!(2026-11-22 10:15:59.412 UTC)),
                total: metrics(120, 4_000),
                ads: vec![AdMetrics { ad_id: AD_ID, metrics: metrics(120, 4_000) }],
                previous: None,
            }
        }
    }

    impl Example for Series {
        fn example() -> Self {
            let bucket = |start, clicks, impressions| Bucket { start, metrics: metrics(clicks, impressions) };
            Series {
                granularity: Granularity::Day,
                tz: "Europe/Paris".to_owned(),
                newest_event_received_at: Some(datetime!(2026-11-22 10:15:59.412 UTC)),
                current: Period {
                    from: datetime!(2026-11-20 23:00 UTC),
                    to: datetime!(2026-11-22 10:16 UTC),
                    totals: metrics(120, 4_000),
                    series: vec![
                        bucket(datetime!(2026-11-21 0:00 +01:00), 70, 2_500),
                        bucket(datetime!(2026-11-22 0:00 +01:00), 50, 1_500),
                    ],
                },
                previous: None,
            }
        }
    }

    impl Example for AdAnalytics {
        fn example() -> Self {
            AdAnalytics { ad_id: AD_ID, series: Series::example() }
        }
    }

    impl Example for Breakdown {
        fn example() -> Self {
            let group = |value: &str, clicks: u64, impressions: u64| BreakdownGroup {
                value: value.to_owned(),
                clicks,
                unique_clicks: clicks * 9 / 10,
                impressions,
                unique_viewers: impressions * 8 / 10,
                ctr: Some(clicks as f64 / impressions as f64),
            };
            Breakdown {
                from: datetime!(2026-11-15 10:16 UTC),
                to: datetime!(2026-11-22 10:16 UTC),
                by: Dimension::DeviceType,
                newest_event_received_at: Some(datetime!(2026-11-22 10:15:59.412 UTC)),
                groups: vec![group("mobile", 300, 9_000), group("desktop", 180, 4_500), group("tablet", 20, 800)],
            }
        }
    }
}
