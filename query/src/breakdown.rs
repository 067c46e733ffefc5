//! Breakdowns: the metrics of a window grouped by ad, campaign, device type, browser or country,
//! optionally filtered by any of them and by ad.

use schemas::audience::{Browser, DeviceType};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::QueryError;
use crate::range::{utc_day, Timeframe, Window};
use crate::ranking::Metric;

/// What a breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum Dimension {
    /// The ad (its id): with filters, e.g. every ad's numbers on mobile devices in France.
    Ad,
    /// The ad's `campaign_id` in the catalog.
    Campaign,
    /// Derived from the user agent by ingest: desktop, mobile, tablet, bot or other.
    DeviceType,
    /// Derived from the user agent by ingest.
    Browser,
    /// As sent by the client (ISO 3166-1 alpha-2).
    Country,
}

/// Groups in a breakdown when `limit` is not given.
pub const DEFAULT_GROUPS: u32 = 50;

/// The value shown for events stored without a dimension (before ingest derived it, or a
/// country the client did not send).
pub const UNKNOWN: &str = "unknown";

/// A device type to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeviceTypeFilter {
    Desktop,
    Mobile,
    Tablet,
    Bot,
    Other,
    Unknown,
}

/// A browser to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum BrowserFilter {
    Chrome,
    Safari,
    Firefox,
    Edge,
    Opera,
    SamsungInternet,
    Other,
    Unknown,
}

impl DeviceTypeFilter {
    /// The stored value: the same names as `schemas::audience`, `""` for unknown.
    fn stored(self) -> &'static str {
        match self {
            Self::Desktop => DeviceType::Desktop.as_str(),
            Self::Mobile => DeviceType::Mobile.as_str(),
            Self::Tablet => DeviceType::Tablet.as_str(),
            Self::Bot => DeviceType::Bot.as_str(),
            Self::Other => DeviceType::Other.as_str(),
            Self::Unknown => "",
        }
    }
}

impl BrowserFilter {
    fn stored(self) -> &'static str {
        match self {
            Self::Chrome => Browser::Chrome.as_str(),
            Self::Safari => Browser::Safari.as_str(),
            Self::Firefox => Browser::Firefox.as_str(),
            Self::Edge => Browser::Edge.as_str(),
            Self::Opera => Browser::Opera.as_str(),
            Self::SamsungInternet => Browser::SamsungInternet.as_str(),
            Self::Other => Browser::Other.as_str(),
            Self::Unknown => "",
        }
    }
}

/// Conditions on the events counted, combined with AND; values as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filters {
    pub ad_id: Option<Uuid>,
    pub campaign_id: Option<String>,
    pub device_type: Option<&'static str>,
    pub browser: Option<&'static str>,
    pub country: Option<String>,
}

impl Filters {
    pub fn new(
        ad_id: Option<Uuid>,
        campaign_id: Option<String>,
        device_type: Option<DeviceTypeFilter>,
        browser: Option<BrowserFilter>,
        country: Option<String>,
    ) -> Result<Filters, QueryError> {
        let country = match country.as_deref() {
            None => None,
            Some(UNKNOWN) => Some(String::new()),
            Some(code) => Some(schemas::audience::country_code(code).ok_or_else(|| {
                QueryError::invalid("country", "must be an ISO 3166-1 alpha-2 code (e.g. FR) or unknown")
            })?),
        };
        Ok(Filters {
            ad_id,
            campaign_id,
            device_type: device_type.map(DeviceTypeFilter::stored),
            browser: browser.map(BrowserFilter::stored),
            country,
        })
    }
}

/// How a breakdown's groups are ordered and cut: the metrics a breakdown has.
pub fn check_sort(metric: Metric) -> Result<Metric, QueryError> {
    match metric {
        Metric::Clicks | Metric::UniqueClicks | Metric::Impressions | Metric::UniqueViewers | Metric::Ctr => Ok(metric),
        _ => Err(QueryError::invalid(
            "sort",
            "breakdowns have clicks, unique_clicks, impressions, unique_viewers and ctr",
        )),
    }
}

/// The part of `window` the audience rollups still hold, which keep a row `kept_days`
/// (`AUDIENCE_TTL_DAYS`; 0: forever) after its day. `timeframe=all` starts at the oldest day
/// kept, which the answer echoes; a window asked to start earlier is refused, naming the
/// earliest start.
pub fn kept_window(
    window: Window,
    timeframe: Option<Timeframe>,
    kept_days: u32,
    now: OffsetDateTime,
) -> Result<Window, QueryError> {
    if kept_days == 0 {
        return Ok(window);
    }
    // Day D's rows go once D + kept_days has passed: the oldest day whole is the next one.
    let oldest = utc_day(now - Duration::days(i64::from(kept_days))) + Duration::DAY;
    match timeframe {
        _ if window.from >= oldest => Ok(window),
        Some(Timeframe::All) if oldest < window.to => Ok(Window { from: oldest, to: window.to }),
        _ => Err(QueryError::invalid(
            "from",
            format!(
                "breakdowns are kept for {kept_days} days (AUDIENCE_TTL_DAYS): start the window at {} or later",
                oldest.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breakdown_reaches_back_as_far_as_the_audience_rollups_keep() {
        let now = time::macros::datetime!(2026-12-05 10:30 UTC);
        let oldest = time::macros::datetime!(2026-11-04 0:00 UTC);
        let window = |from| Window { from, to: now };
        assert_eq!(kept_window(window(oldest), None, 32, now).ok(), Some(window(oldest)));
        let error = kept_window(window(oldest - Duration::MINUTE), None, 32, now).expect_err("older than kept");
        assert!(
            error
                .to_string()
                .contains("kept for 32 days (AUDIENCE_TTL_DAYS): start the window at 2026-11-04T00:00:00Z"),
            "{error}"
        );
        assert_eq!(
            kept_window(window(OffsetDateTime::UNIX_EPOCH), Some(Timeframe::All), 32, now).ok(),
            Some(window(oldest))
        );
        assert!(kept_window(window(OffsetDateTime::UNIX_EPOCH), Some(Timeframe::Last90Days), 32, now).is_err());
        assert_eq!(
            kept_window(window(OffsetDateTime::UNIX_EPOCH), None, 0, now).ok(),
            Some(window(OffsetDateTime::UNIX_EPOCH)),
            "0: forever"
        );
        let long_ago = Window { from: OffsetDateTime::UNIX_EPOCH, to: oldest - Duration::DAY };
        assert!(kept_window(long_ago, Some(Timeframe::All), 32, now).is_err(), "nothing of it is kept");
    }

    #[test]
    fn filters_use_the_stored_values() {
        let f = Filters::new(
            None,
            None,
            Some(DeviceTypeFilter::Tablet),
            Some(BrowserFilter::SamsungInternet),
            Some("de".into()),
        )
        .unwrap();
        assert_eq!(
            (f.device_type, f.browser, f.country.as_deref()),
            (Some("tablet"), Some("samsung_internet"), Some("DE"))
        );
        let unknown = Filters::new(None, None, Some(DeviceTypeFilter::Unknown), None, Some(UNKNOWN.into())).unwrap();
        assert_eq!((unknown.device_type, unknown.country.as_deref()), (Some(""), Some("")));
        assert!(matches!(
            Filters::new(None, None, None, None, Some("Germany".into())),
            Err(QueryError::InvalidParameter { field: "country", .. })
        ));
        assert!(check_sort(Metric::AvgWatchedPercent).is_err());
    }
}
