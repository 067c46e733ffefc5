//! The invalid-traffic rules one request shows (the aggregator applies those that need a
//! visitor's history): a known bot's user agent, an address in a data-centre range.
//! Matching events are flagged, not refused: they are stored as invalid and never billed.

use std::net::IpAddr;

use aho_corasick::AhoCorasick;
use ipnet::IpNet;
use schemas::ivt::InvalidReason;

/// The maintained list: one user-agent substring per line (see the file's header).
const BOT_USER_AGENTS: &str = include_str!("../data/bot-user-agents.txt");

pub struct RequestRules {
    bots: AhoCorasick,
    datacenter_ranges: Vec<IpNet>,
}

impl RequestRules {
    pub fn new(datacenter_ranges: Vec<IpNet>) -> Self {
        let patterns = BOT_USER_AGENTS.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
        // The list is compiled in and small; building its automaton cannot fail.
        let bots = AhoCorasick::builder().ascii_case_insensitive(true).build(patterns).expect("bot user-agent list builds");
        Self { bots, datacenter_ranges }
    }

    /// Why an event from this sender is invalid traffic, if it is (the first rule that
    /// matches). Browsers and players always send a user agent (privacy tools change it, they
    /// do not remove it), so a request without one is a script's.
    pub fn reason(&self, ip: Option<IpAddr>, user_agent: Option<&str>) -> Option<InvalidReason> {
        match user_agent.map(str::trim) {
            None | Some("") => return Some(InvalidReason::MissingUserAgent),
            Some(agent) if self.bots.is_match(agent) => return Some(InvalidReason::BotUserAgent),
            Some(_) => {}
        }
        if ip.is_some_and(|ip| self.datacenter_ranges.iter().any(|range| range.contains(&canonical(ip)))) {
            return Some(InvalidReason::DatacenterIp);
        }
        None
    }
}

/// An IPv4 client seen over IPv6 (`::ffff:a.b.c.d`) is matched against IPv4 ranges.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses data-centre ranges: CIDRs or single addresses, one per line or comma-separated,
/// `#` starting a comment. `source` names where they came from, for the error.
pub fn parse_ranges(text: &str, source: &str) -> Result<Vec<IpNet>, String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("{source}: {entry:?} is not an IP address or CIDR"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RequestRules {
        RequestRules::new(parse_ranges("203.0.113.0/24 # a cloud\n2001:db8:dc::/48, 198.51.100.7", "test").unwrap())
    }

    #[test]
    fn bots_crawlers_and_http_libraries_are_recognised_in_any_case() {
        let rules = rules();
        for agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "FACEBOOKEXTERNALHIT/1.1",
        ] {
            assert_eq!(rules.reason(None, Some(agent)), Some(InvalidReason::BotUserAgent), "{agent}");
        }
    }

    #[test]
    fn people_are_not_bots_and_a_missing_user_agent_is_flagged() {
        let rules = rules();
        for agent in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Mobile Safari/537.36",
        ] {
            assert_eq!(rules.reason(Some("192.0.2.1".parse().unwrap()), Some(agent)), None, "{agent}");
        }
        assert_eq!(rules.reason(None, None), Some(InvalidReason::MissingUserAgent));
        assert_eq!(rules.reason(None, Some(" ")), Some(InvalidReason::MissingUserAgent));
        assert_eq!(rules.reason(Some("203.0.113.1".parse().unwrap()), None), Some(InvalidReason::MissingUserAgent));
    }

    #[test]
    fn datacenter_ranges_match_v4_v6_and_mapped_addresses() {
        let rules = rules();
        let reason = |ip: &str| rules.reason(Some(ip.parse().unwrap()), Some("Mozilla/5.0"));
        assert_eq!(reason("203.0.113.200"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("::ffff:203.0.113.9"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("2001:db8:dc:1::5"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("198.51.100.7"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("198.51.100.8"), None);
        assert_eq!(reason("2001:db8:dd::1"), None);
        // A bot in a data centre is reported as the bot (the first rule).
        assert_eq!(rules.reason(Some("203.0.113.1".parse().unwrap()), Some("curl/8")), Some(InvalidReason::BotUserAgent));
    }

    #[test]
    fn bad_ranges_are_named() {
        let error = parse_ranges("10.0.0.0/8\nnot-a-range", "IVT_DATACENTER_RANGES_FILE /etc/dc.txt").unwrap_err();
        assert!(error.contains("IVT_DATACENTER_RANGES_FILE /etc/dc.txt") && error.contains("not-a-range"), "{error}");
    }
}
