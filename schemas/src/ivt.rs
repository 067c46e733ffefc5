//! Invalid traffic (the MRC's "general invalid traffic"): why an event is not billable.
//!
//! Invalid events are flagged, never dropped: they are stored in `invalid_events` with their
//! reason and left out of every billable number. Ingest flags what one request shows (a bot's
//! user agent, a data-centre address); the aggregator flags what needs the visitor's history
//! (a repeated click, a click with no impression before it).

use serde::{Deserialize, Serialize};

/// One reason per event: the first that applies. Ingest checks the user agent (missing, then
/// a bot's) before the address; the aggregator's history rules come after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// The user agent is on the list of known bots, crawlers and HTTP libraries.
    BotUserAgent,
    /// The client address is in a configured data-centre range.
    DatacenterIp,
    /// The same visitor clicked the same ad moments before.
    DuplicateClick,
    /// The visitor clicked an ad without having been shown it in the preceding period.
    ClickWithoutImpression,
    /// The request had no `User-Agent` header (or an empty one): browsers and players always
    /// send one, scripts often do not.
    MissingUserAgent,
}

impl InvalidReason {
    /// Every reason, in the order the API lists them; [`InvalidReason::index`] is a position here.
    pub const ALL: [InvalidReason; 5] = [
        InvalidReason::BotUserAgent,
        InvalidReason::DatacenterIp,
        InvalidReason::DuplicateClick,
        InvalidReason::ClickWithoutImpression,
        InvalidReason::MissingUserAgent,
    ];

    /// The name stored in `invalid_events.invalid_reason` and used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::BotUserAgent => "bot_user_agent",
            InvalidReason::DatacenterIp => "datacenter_ip",
            InvalidReason::DuplicateClick => "duplicate_click",
            InvalidReason::ClickWithoutImpression => "click_without_impression",
            InvalidReason::MissingUserAgent => "missing_user_agent",
        }
    }

    /// The reason's position in [`InvalidReason::ALL`], for per-reason arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for reason in InvalidReason::ALL {
            assert_eq!(InvalidReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert_eq!(InvalidReason::parse("robot"), None);
        for (i, reason) in InvalidReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
