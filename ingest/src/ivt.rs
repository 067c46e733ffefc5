//! The invalid-traffic rules one request shows (the aggregator applies those that need a
//! visitor's history): a missing or known bot's user agent ([`schemas::ivt::user_agent_reason`],
//! which the aggregator checks again), an address in a data-centre range. Matching events are
//! flagged, not refused: they are stored as invalid and never billed.

use std::net::IpAddr;

use ipnet::IpNet;
use schemas::ivt::{user_agent_reason, InvalidReason};

pub struct RequestRules {
    datacenter_ranges: Vec<IpNet>,
}

impl RequestRules {
    pub fn new(datacenter_ranges: Vec<IpNet>) -> Self {
        Self { datacenter_ranges }
    }

    /// Why an event from this sender is invalid traffic, if it is: the user agent first, then
    /// the address.
    pub fn reason(&self, ip: Option<IpAddr>, user_agent: Option<&str>) -> Option<InvalidReason> {
        let in_a_data_centre =
            ip.is_some_and(|ip| self.datacenter_ranges.iter().any(|range| range.contains(&canonical(ip))));
        user_agent_reason(user_agent).or(in_a_data_centre.then_some(InvalidReason::DatacenterIp))
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
    fn datacenter_ranges_match_v4_v6_and_mapped_addresses() {
        let rules = rules();
        let reason = |ip: &str| rules.reason(Some(ip.parse().unwrap()), Some("Mozilla/5.0"));
        assert_eq!(reason("203.0.113.200"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("::ffff:203.0.113.9"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("2001:db8:dc:1::5"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("198.51.100.7"), Some(InvalidReason::DatacenterIp));
        assert_eq!(reason("198.51.100.8"), None);
        assert_eq!(reason("2001:db8:dd::1"), None);
        // The user agent comes first: a bot, or a script without one, in a data centre is
        // reported as such.
        assert_eq!(
            rules.reason(Some("203.0.113.1".parse().unwrap()), Some("curl/8")),
            Some(InvalidReason::BotUserAgent)
        );
        assert_eq!(rules.reason(Some("203.0.113.1".parse().unwrap()), None), Some(InvalidReason::MissingUserAgent));
    }

    #[test]
    fn bad_ranges_are_named() {
        let error = parse_ranges("10.0.0.0/8\nnot-a-range", "IVT_DATACENTER_RANGES_FILE /etc/dc.txt").unwrap_err();
        assert!(error.contains("IVT_DATACENTER_RANGES_FILE /etc/dc.txt") && error.contains("not-a-range"), "{error}");
    }
}
