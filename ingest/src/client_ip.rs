//! Which address a request came from.

use std::net::IpAddr;

use ipnet::IpNet;

/// The connection's peer, unless it is a trusted proxy: then the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy (left-most entries are client-written
/// and could be forged).
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else { return Some(peer) };
    let mut last_hop = peer;
    for entry in header.rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => last_hop = ip,
            Ok(ip) => return Some(ip),
            // An unparseable entry ends what we can trust.
            Err(_) => return Some(last_hop),
        }
    }
    Some(last_hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        assert_eq!(client_ip(Some(ip("198.51.100.1")), Some("1.2.3.4"), &[]), Some(ip("198.51.100.1")));
    }

    #[test]
    fn trusted_proxies_forward_the_rightmost_untrusted_hop() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Some(ip("10.0.0.5"));
        assert_eq!(client_ip(peer, Some("6.6.6.6, 203.0.113.9, 10.1.1.1"), &trusted), Some(ip("203.0.113.9")));
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(peer, Some("garbage, 10.1.1.1"), &trusted), Some(ip("10.1.1.1")));
        assert_eq!(client_ip(peer, Some("2001:db8::1"), &trusted), Some(ip("2001:db8::1")));
    }
}
