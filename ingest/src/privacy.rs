//! What ingest keeps of who sent an event (docs/api.md, "Privacy"), before it is published.
//!
//! - The client IP is truncated to its /24 (IPv4) or /48 (IPv6) unless `KEEP_RAW_IPS` is set:
//!   neither the stream nor ClickHouse then ever holds a full address.
//! - `visitor_id`, the identity behind unique counts, is HMAC-SHA256 of the full IP and user
//!   agent under a key that changes every UTC day: the day of the event's `timestamp`. The day's key is itself an
//!   HMAC of the day under `VISITOR_HASH_SECRET`, so every ingest replica derives the same one
//!   with nothing to share at runtime, and ids of different days cannot be linked without the
//!   secret. "Unique" therefore means distinct IP + user agent within one UTC day: a visitor
//!   seen on two days counts once per day in a multi-day window.
//! - `sender_id`, the identity behind the invalid-traffic click rules, is the same hash under
//!   the key of the day ingest received the event: a client cannot pass for several senders by
//!   stamping its events with several days.

use std::net::IpAddr;
use std::sync::RwLock;

use ring::hmac;
use schemas::AdEvent;
use time::Date;

pub struct Privacy {
    secret: hmac::Key,
    /// The latest day's key, derived once for all that day's events instead of once per event.
    day_key: RwLock<Option<(Date, hmac::Key)>>,
    keep_raw_ips: bool,
}

impl Privacy {
    pub fn new(secret: &str, keep_raw_ips: bool) -> Self {
        Self { secret: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), day_key: RwLock::new(None), keep_raw_ips }
    }

    /// The key of `day`'s visitor ids: an HMAC of the day under the secret.
    fn day_key(&self, day: Date) -> hmac::Key {
        // Nothing panics while holding the lock; a poisoned one still holds a whole key.
        if let Some((cached_day, key)) = &*self.day_key.read().unwrap_or_else(|e| e.into_inner()) {
            if *cached_day == day {
                return key.clone();
            }
        }
        let tag = hmac::sign(&self.secret, format!("adtrack visitor key {day}").as_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
        let mut cached = self.day_key.write().unwrap_or_else(|e| e.into_inner());
        // Only a later day replaces it: a late event, for the day before, does not evict the
        // new day's key.
        if cached.as_ref().is_none_or(|(cached_day, _)| day > *cached_day) {
            *cached = Some((day, key.clone()));
        }
        key
    }

    /// Sets the event's visitor id from its sender and the UTC day of its timestamp, and its
    /// sender id from its sender and the day it was received; then truncates its IP.
    pub fn apply(&self, event: &mut AdEvent) {
        let utc_day = |t: time::OffsetDateTime| t.to_offset(time::UtcOffset::UTC).date();
        let (day, received_day) = (utc_day(event.timestamp), utc_day(event.received_at));
        let visitor_id = self.visitor_id(day, event.client_ip, event.user_agent.as_deref());
        event.visitor_id = Some(visitor_id);
        event.sender_id = Some(if received_day == day {
            visitor_id
        } else {
            self.visitor_id(received_day, event.client_ip, event.user_agent.as_deref())
        });
        if !self.keep_raw_ips {
            event.client_ip = event.client_ip.map(truncate);
        }
    }

    pub fn visitor_id(&self, day: Date, ip: Option<IpAddr>, user_agent: Option<&str>) -> u64 {
        let mut mac = hmac::Context::with_key(&self.day_key(day));
        // Fixed-width address, then the agent: no two (ip, agent) pairs give the same input.
        let address = match ip {
            Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
            Some(IpAddr::V6(v6)) => v6.octets(),
            None => [0; 16],
        };
        mac.update(&[u8::from(ip.is_some())]);
        mac.update(&address);
        mac.update(user_agent.unwrap_or("").as_bytes());
        let tag = mac.sign();
        let mut id = [0; 8];
        id.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(id)
    }
}

/// The network an address belongs to: its /24 for IPv4, its /48 for IPv6 (a site's prefix).
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => truncate(IpAddr::V4(v4)),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn addresses_are_cut_to_their_network() {
        assert_eq!(truncate("203.0.113.77".parse().unwrap()), "203.0.113.0".parse::<IpAddr>().unwrap());
        assert_eq!(truncate("2001:db8:1234:5678::9".parse().unwrap()), "2001:db8:1234::".parse::<IpAddr>().unwrap());
        assert_eq!(truncate("::ffff:198.51.100.9".parse().unwrap()), "198.51.100.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_visitor_is_the_same_within_a_day_and_unlinkable_across_days() {
        let privacy = Privacy::new("a secret of some length", false);
        let day = date!(2026 - 12 - 01);
        let id = privacy.visitor_id(day, ip("203.0.113.7"), Some("Mozilla/5.0"));
        assert_eq!(id, privacy.visitor_id(day, ip("203.0.113.7"), Some("Mozilla/5.0")));
        assert_ne!(
            id,
            privacy.visitor_id(day.next_day().unwrap(), ip("203.0.113.7"), Some("Mozilla/5.0")),
            "the key rotates daily"
        );
        // The full address counts, not its truncation: neighbours are different visitors.
        assert_ne!(id, privacy.visitor_id(day, ip("203.0.113.8"), Some("Mozilla/5.0")));
        assert_ne!(id, privacy.visitor_id(day, ip("203.0.113.7"), Some("Mozilla/5.1")));
        assert_ne!(
            id,
            Privacy::new("another secret entirely", false).visitor_id(day, ip("203.0.113.7"), Some("Mozilla/5.0"))
        );
        assert_ne!(privacy.visitor_id(day, None, None), privacy.visitor_id(day, ip("::"), None));
        // The cached day key gives what a fresh derivation gives, whichever day came last.
        let fresh = || Privacy::new("a secret of some length", false);
        assert_eq!(id, fresh().visitor_id(day, ip("203.0.113.7"), Some("Mozilla/5.0")));
        assert_eq!(id, privacy.visitor_id(day, ip("203.0.113.7"), Some("Mozilla/5.0")), "after the next day's key");
    }

    #[test]
    fn events_keep_a_truncated_ip_unless_raw_ips_are_kept() {
        let mut event = AdEvent::from_json(include_bytes!("../../schemas/test-data/v1/click.json")).unwrap();
        let raw = event.client_ip;
        let mut kept = event.clone();
        Privacy::new("a secret of some length", false).apply(&mut event);
        assert_eq!(event.client_ip, ip("203.0.113.0"));
        Privacy::new("a secret of some length", true).apply(&mut kept);
        assert_eq!(kept.client_ip, raw);
        assert!(event.visitor_id.is_some());
        assert_eq!(event.visitor_id, kept.visitor_id, "the visitor is the full address either way");
    }

    #[test]
    fn the_visitor_id_follows_the_day_of_the_event_and_the_sender_id_the_day_it_arrived() {
        let privacy = Privacy::new("a secret of some length", false);
        let mut before_midnight = AdEvent::from_json(include_bytes!("../../schemas/test-data/v1/click.json")).unwrap();
        before_midnight.timestamp = datetime!(2026-12-01 23:59:59.900 UTC);
        before_midnight.received_at = datetime!(2026-12-02 00:00:00.100 UTC);
        let mut after_midnight = before_midnight.clone();
        after_midnight.timestamp = datetime!(2026-12-02 00:00:00.050 UTC);
        // A timestamp with an offset is placed in its UTC day.
        let mut with_offset = after_midnight.clone();
        with_offset.timestamp = datetime!(2026-12-02 01:00:00 +02:00);
        let sender = (before_midnight.client_ip, before_midnight.user_agent.clone());
        for event in [&mut before_midnight, &mut after_midnight, &mut with_offset] {
            privacy.apply(event);
        }
        let on = |day| privacy.visitor_id(day, sender.0, sender.1.as_deref());
        assert_eq!(
            before_midnight.visitor_id,
            Some(on(date!(2026 - 12 - 01))),
            "received on the 2nd, it happened on the 1st"
        );
        assert_eq!(after_midnight.visitor_id, Some(on(date!(2026 - 12 - 02))));
        assert_eq!(with_offset.visitor_id, Some(on(date!(2026 - 12 - 01))));
        // Whatever day a client stamps its events with, the rules see one sender per day received.
        for event in [&before_midnight, &after_midnight, &with_offset] {
            assert_eq!(event.sender_id, Some(on(date!(2026 - 12 - 02))));
        }
    }
}
