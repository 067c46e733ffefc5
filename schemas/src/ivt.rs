//! Invalid traffic (the MRC's "general invalid traffic"): why an event is not billable.
//!
//! Invalid events are flagged, never dropped: they are stored in `invalid_events` with their
//! reason and left out of every billable number. Ingest flags what one request shows (a bot's
//! user agent, a data-centre address); the aggregator flags what needs the visitor's history
//! (a repeated click, a click with no impression before it).

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
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

    /// A reason that one request shows, set by ingest; the others need the visitor's history
    /// and are the aggregator's.
    pub fn is_request_rule(self) -> bool {
        matches!(self, InvalidReason::MissingUserAgent | InvalidReason::BotUserAgent | InvalidReason::DatacenterIp)
    }
}

/// The maintained list: one user-agent substring per line (see the file's header).
const BOT_USER_AGENTS: &str = include_str!("../data/bot-user-agents.txt");

static BOTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    let patterns = BOT_USER_AGENTS.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
    // The list is compiled in and small; building its automaton cannot fail.
    AhoCorasick::builder().ascii_case_insensitive(true).build(patterns).expect("bot user-agent list builds")
});

/// Whether `user_agent` is a known bot's, crawler's or HTTP library's (the list above): the one
/// test behind both the `bot_user_agent` flag and the `bot` device type.
pub fn is_bot(user_agent: &str) -> bool {
    BOTS.is_match(user_agent)
}

/// What a user agent alone says: none at all (browsers and players always send one; privacy
/// tools change it, they do not remove it), or a known bot's.
pub fn user_agent_reason(user_agent: Option<&str>) -> Option<InvalidReason> {
    match user_agent.map(str::trim) {
        None | Some("") => Some(InvalidReason::MissingUserAgent),
        Some(agent) if is_bot(agent) => Some(InvalidReason::BotUserAgent),
        Some(_) => None,
    }
}

/// The request reason of an event read from the stream, checked again: what its own user agent
/// shows, else the request reason it claims (a data-centre address is known only to ingest,
/// which truncates it). A message cannot make itself billable against its user agent, and a
/// history reason it claims is dropped: those are the aggregator's to find.
pub fn recheck(claimed: Option<InvalidReason>, user_agent: Option<&str>) -> Option<InvalidReason> {
    user_agent_reason(user_agent).or(claimed.filter(|reason| reason.is_request_rule()))
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

    #[test]
    fn bots_crawlers_and_http_libraries_are_recognised_in_any_case_and_people_are_not() {
        for agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "GPTBot/1.0",
        ] {
            assert_eq!(user_agent_reason(Some(agent)), Some(InvalidReason::BotUserAgent), "{agent}");
        }
        for agent in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Mobile Safari/537.36",
        ] {
            assert_eq!(user_agent_reason(Some(agent)), None, "{agent}");
        }
        assert_eq!(user_agent_reason(None), Some(InvalidReason::MissingUserAgent));
        assert_eq!(user_agent_reason(Some(" ")), Some(InvalidReason::MissingUserAgent));
    }

    #[test]
    fn a_rechecked_event_keeps_what_its_user_agent_shows_whatever_it_claims() {
        let person = Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0");
        assert_eq!(recheck(None, Some("curl/8")), Some(InvalidReason::BotUserAgent), "a bot claiming to be billable");
        assert_eq!(recheck(None, None), Some(InvalidReason::MissingUserAgent));
        assert_eq!(
            recheck(Some(InvalidReason::DatacenterIp), person),
            Some(InvalidReason::DatacenterIp),
            "ingest's address rule stays"
        );
        assert_eq!(recheck(Some(InvalidReason::DuplicateClick), person), None, "history is the aggregator's to find");
        assert_eq!(recheck(None, person), None);
        assert_eq!(
            recheck(Some(InvalidReason::DatacenterIp), Some("curl/8")),
            Some(InvalidReason::BotUserAgent),
            "as ingest orders them"
        );
    }
}
