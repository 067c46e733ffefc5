//! Who saw or clicked an ad, for breakdowns: device type and browser derived from the user
//! agent at ingest, and the country the client reports.
//!
//! The rules are deliberately few and ordered (first match wins), so that an analyst can
//! predict them: bots first (the list invalid-traffic flagging uses, [`crate::ivt::is_bot`]), then tablets before phones (Android tablets omit "Mobile"), then
//! desktops. Browsers are told apart by their own tokens before the generic ones they also carry
//! (Edge and Opera say "Chrome", Chrome says "Safari").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    Desktop,
    Mobile,
    Tablet,
    Bot,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Browser {
    Chrome,
    Safari,
    Firefox,
    Edge,
    Opera,
    SamsungInternet,
    Other,
}

impl DeviceType {
    /// The value stored in ClickHouse and shown in breakdowns.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Bot => "bot",
            DeviceType::Other => "other",
        }
    }

    pub fn of(user_agent: &str) -> DeviceType {
        let ua = user_agent.to_ascii_lowercase();
        let has = |token: &str| ua.contains(token);
        if crate::ivt::is_bot(user_agent) {
            DeviceType::Bot
        } else if has("ipad") || has("tablet") || (has("android") && !has("mobile")) {
            DeviceType::Tablet
        } else if has("mobi") || has("iphone") || has("android") || has("windows phone") {
            DeviceType::Mobile
        } else if has("windows") || has("macintosh") || has("x11") || has("linux") || has("cros") {
            DeviceType::Desktop
        } else {
            DeviceType::Other
        }
    }
}

impl Browser {
    /// The value stored in ClickHouse and shown in breakdowns.
    pub fn as_str(self) -> &'static str {
        match self {
            Browser::Chrome => "chrome",
            Browser::Safari => "safari",
            Browser::Firefox => "firefox",
            Browser::Edge => "edge",
            Browser::Opera => "opera",
            Browser::SamsungInternet => "samsung_internet",
            Browser::Other => "other",
        }
    }

    pub fn of(user_agent: &str) -> Browser {
        let has = |token: &str| user_agent.contains(token);
        if has("Edg/") || has("EdgA/") || has("EdgiOS/") {
            Browser::Edge
        } else if has("OPR/") || has("Opera") {
            Browser::Opera
        } else if has("SamsungBrowser/") {
            Browser::SamsungInternet
        } else if has("Firefox/") || has("FxiOS/") {
            Browser::Firefox
        } else if has("Chrome/") || has("CriOS/") {
            Browser::Chrome
        } else if has("Safari/") && has("Version/") {
            Browser::Safari
        } else {
            Browser::Other
        }
    }
}

/// The spec's pattern for a country (`ClickRequest`, `ImpressionRequest`, the breakdown
/// filter), which [`country_code`] accepts exactly; `openapi.rs` holds the spec to it.
pub const COUNTRY_PATTERN: &str = "^[A-Za-z]{2}$";

/// A country as clients send it: an ISO 3166-1 alpha-2 code in any case, upper-cased (`"fr"` →
/// `"FR"`). Nothing around it: `" fr "` is refused, as the spec's pattern refuses it.
pub fn country_code(value: &str) -> Option<String> {
    (value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic())).then(|| value.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENTS: &[(&str, DeviceType, Browser)] = &[
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", DeviceType::Desktop, Browser::Chrome),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", DeviceType::Desktop, Browser::Edge),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", DeviceType::Desktop, Browser::Safari),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", DeviceType::Desktop, Browser::Firefox),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", DeviceType::Mobile, Browser::Safari),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", DeviceType::Mobile, Browser::Chrome),
        ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36", DeviceType::Mobile, Browser::SamsungInternet),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", DeviceType::Tablet, Browser::Chrome),
        ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", DeviceType::Tablet, Browser::Safari),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0", DeviceType::Desktop, Browser::Opera),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", DeviceType::Bot, Browser::Other),
        ("curl/8.5.0", DeviceType::Bot, Browser::Other),
        ("", DeviceType::Other, Browser::Other),
    ];

    #[test]
    fn common_user_agents_are_classified() {
        for (agent, device, browser) in AGENTS {
            assert_eq!((DeviceType::of(agent), Browser::of(agent)), (*device, *browser), "{agent}");
        }
    }

    #[test]
    fn countries_are_two_letter_codes() {
        assert_eq!(country_code("fr"), Some("FR".to_owned()));
        assert_eq!(country_code(" fr "), None, "as the spec's pattern");
        assert_eq!(country_code("FRA"), None);
        assert_eq!(country_code("F1"), None);
        assert_eq!(country_code("ÉÉ"), None);
    }

    #[test]
    fn the_bot_device_type_and_the_bot_flag_agree() {
        for user_agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "curl/8.5.0",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ] {
            let flagged = crate::ivt::user_agent_reason(Some(user_agent)) == Some(crate::ivt::InvalidReason::BotUserAgent);
            assert_eq!(DeviceType::of(user_agent) == DeviceType::Bot, flagged, "{user_agent}");
        }
        assert_eq!(DeviceType::of("Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 7) Mobile"), DeviceType::Mobile);
    }
}
