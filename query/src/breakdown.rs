//! Breakdowns: the metrics of a window grouped by ad, campaign, device type, browser or country,
//! optionally filtered by any of them and by ad.

use schemas::audience::{Browser, DeviceType};
use uuid::Uuid;

use crate::error::QueryError;
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
            Some(code) => Some(
                schemas::audience::country_code(code)
                    .ok_or_else(|| QueryError::invalid("country", "must be an ISO 3166-1 alpha-2 code (e.g. FR) or unknown"))?,
            ),
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
        _ => Err(QueryError::invalid("sort", "breakdowns have clicks, unique_clicks, impressions, unique_viewers and ctr")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_use_the_stored_values() {
        let f = Filters::new(None, None, Some(DeviceTypeFilter::Tablet), Some(BrowserFilter::SamsungInternet), Some("de".into())).unwrap();
        assert_eq!((f.device_type, f.browser, f.country.as_deref()), (Some("tablet"), Some("samsung_internet"), Some("DE")));
        let unknown = Filters::new(None, None, Some(DeviceTypeFilter::Unknown), None, Some(UNKNOWN.into())).unwrap();
        assert_eq!((unknown.device_type, unknown.country.as_deref()), (Some(""), Some("")));
        assert!(matches!(Filters::new(None, None, None, None, Some("Germany".into())), Err(QueryError::InvalidParameter { field: "country", .. })));
        assert!(check_sort(Metric::AvgWatchedPercent).is_err());
    }
}
