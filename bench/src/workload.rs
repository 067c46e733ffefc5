//! What the load generators send: events over the bench ads with a skewed popularity, mostly
//! impressions, some clicks with playback figures, and some repeats (a client re-sending an
//! event it already got a 202 for, which must answer "duplicate" and be counted once).
//!
//! Events come from many visitors (a user agent each), and a click is mostly by a visitor who
//! was just shown that ad, as on a real page: the invalid-traffic click rules then look up
//! real histories, flag some clicks (a visitor clicking the same ad twice within 30 s, a click
//! whose impression went to another connection) and pass most.

use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use schemas::EventKind;
use uuid::Uuid;

use crate::http::BENCH_USER_AGENT;

/// Ad ids of the bench: the index in the last 12 digits, so SQL can build the same ids.
pub fn bench_ad(index: usize) -> Uuid {
    Uuid::parse_str(&format!("b0000000-0000-4000-8000-{index:012}")).expect("12 decimal digits form a UUID")
}

/// The SQL expression for the same id, from an index expression.
pub fn bench_ad_sql(index: &str) -> String {
    format!("toUUID(concat('b0000000-0000-4000-8000-', leftPad(toString({index}), 12, '0')))")
}

/// The ad the freshness probe clicks on: outside the bench ads, so only probes count for it.
pub const PROBE_AD: Uuid = Uuid::from_u128(0xb0000000_0000_4000_9000_000000000000);

/// An ad index with Zipf-like popularity, P(i) ∝ 1/(i+1): log-uniform over 1..=n, from `u` in
/// [0, 1). [`skewed_index_sql`] is the same formula for generated rows.
pub fn skewed_index(u: f64, n: usize) -> usize {
    let x = ((n as f64 + 1.0).ln() * u).exp() as usize;
    x.saturating_sub(1).min(n - 1)
}

/// [`skewed_index`] in ClickHouse SQL, `seed` telling apart the `rand` calls of one row.
pub fn skewed_index_sql(n: usize, seed: u32) -> String {
    format!("least(toUInt64(exp(log({n} + 1) * (rand({seed}) / 4294967296.0))) - 1, {last})", last = n - 1)
}

/// How many visitors the generators draw from.
const VISITORS: u32 = 1_000_000;

/// One event as a generator sends it.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub id: Uuid,
    pub ad: Uuid,
    /// Who sends it: the request's user agent names the visitor (see [`Event::user_agent`]).
    pub visitor: u32,
    /// Clicks only: (playback_time_secs, watched_percent).
    pub playback: Option<(f64, f64)>,
}

impl Event {
    pub fn path(&self) -> &'static str {
        match self.kind {
            EventKind::Click => "/ads/click",
            EventKind::Impression => "/ads/impression",
        }
    }

    /// The user agent of the request carrying the event: one per visitor (all the bench's
    /// requests come from 127.0.0.1, so the user agent is what tells visitors apart).
    pub fn user_agent(&self) -> String {
        format!("{BENCH_USER_AGENT} (visitor {})", self.visitor)
    }

    /// The body of `POST /ads/click` or `/ads/impression`.
    pub fn body(&self) -> Bytes {
        let mut json = format!(r#"{{"event_id":"{}","ad_id":"{}""#, self.id, self.ad);
        self.push_playback(&mut json);
        json.push('}');
        json.into()
    }

    /// One item of a `POST /ads/events` batch, as an NDJSON line.
    pub fn push_batch_line(&self, out: &mut String) {
        out.push_str(&format!(r#"{{"type":"{}","event_id":"{}","ad_id":"{}""#, self.kind.as_str(), self.id, self.ad));
        self.push_playback(out);
        out.push_str("}\n");
    }

    fn push_playback(&self, json: &mut String) {
        if let Some((secs, percent)) = self.playback {
            json.push_str(&format!(r#","playback_time_secs":{secs},"watched_percent":{percent}"#));
        }
    }
}

/// The shape of a load, shared by every connection of a phase.
#[derive(Clone)]
pub struct Mix {
    pub ads: Arc<Vec<Uuid>>,
    /// Probability that a new event is a click.
    pub click_share: f64,
    /// Probability that an event repeats one already answered 202.
    pub repeat_share: f64,
}

/// How many accepted events a source keeps as candidates for repeats, and how many of its
/// impressions as the ones a click may follow.
const REMEMBERED: usize = 1024;

/// One connection's stream of events.
pub struct Source {
    mix: Mix,
    rng: SmallRng,
    accepted: Ring<Event>,
    /// (visitor, ad) of the impressions sent lately.
    shown: Ring<(u32, Uuid)>,
}

/// The last [`REMEMBERED`] items pushed.
struct Ring<T> {
    items: Vec<T>,
    next_slot: usize,
}

impl<T: Clone> Ring<T> {
    fn new() -> Self {
        Self { items: Vec::new(), next_slot: 0 }
    }

    fn push(&mut self, item: T) {
        if self.items.len() < REMEMBERED {
            self.items.push(item);
        } else {
            self.items[self.next_slot] = item;
            self.next_slot = (self.next_slot + 1) % REMEMBERED;
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> Option<T> {
        (!self.items.is_empty()).then(|| self.items[rng.random_range(0..self.items.len())].clone())
    }
}

impl Source {
    pub fn new(mix: Mix) -> Self {
        // Seeded from the OS: fixed seeds would give two phases' connections the same event ids.
        Self { mix, rng: SmallRng::from_os_rng(), accepted: Ring::new(), shown: Ring::new() }
    }

    /// The next event, and whether it repeats an earlier one.
    pub fn next_event(&mut self) -> (Event, bool) {
        if self.rng.random_bool(self.mix.repeat_share) {
            if let Some(earlier) = self.accepted.pick(&mut self.rng) {
                return (earlier, true);
            }
        }
        let id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        if self.rng.random_bool(self.mix.click_share) {
            let tenths = |rng: &mut SmallRng, max: f64| (rng.random_range(0.0..max) * 10.0).round() / 10.0;
            let playback = Some((tenths(&mut self.rng, 60.0), tenths(&mut self.rng, 100.0)));
            let (visitor, ad) =
                self.shown.pick(&mut self.rng).unwrap_or_else(|| (self.random_visitor(), self.random_ad()));
            return (Event { kind: EventKind::Click, id, ad, visitor, playback }, false);
        }
        let (visitor, ad) = (self.random_visitor(), self.random_ad());
        self.shown.push((visitor, ad));
        (Event { kind: EventKind::Impression, id, ad, visitor, playback: None }, false)
    }

    fn random_visitor(&mut self) -> u32 {
        self.rng.random_range(0..VISITORS)
    }

    fn random_ad(&mut self) -> Uuid {
        self.mix.ads[skewed_index(self.rng.random(), self.mix.ads.len())]
    }

    /// Remembers an event that got a 202, as a candidate for a later repeat.
    pub fn accepted(&mut self, event: &Event) {
        self.accepted.push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_is_skewed_and_in_range() {
        let n = 1000;
        assert_eq!(skewed_index(0.0, n), 0);
        assert_eq!(skewed_index(0.999_999_999, n), n - 1);
        let mut rng = SmallRng::seed_from_u64(7);
        let draws: Vec<usize> = (0..100_000).map(|_| skewed_index(rng.random(), n)).collect();
        let top_ten = draws.iter().filter(|&&i| i < 10).count();
        // P(i < 10) = ln(11) / ln(1001), about 35%.
        assert!((30_000..40_000).contains(&top_ten), "{top_ten}");
    }

    #[test]
    fn bodies_are_the_api_json() {
        let event = Event {
            kind: EventKind::Click,
            id: Uuid::nil(),
            ad: bench_ad(42),
            visitor: 7,
            playback: Some((1.5, 20.0)),
        };
        assert_eq!(event.user_agent(), "adtrack-bench/1 (visitor 7)");
        let body: serde_json::Value = serde_json::from_slice(&event.body()).unwrap();
        assert_eq!(body["ad_id"], "b0000000-0000-4000-8000-000000000042");
        assert_eq!(body["watched_percent"], 20.0);
        let mut line = String::new();
        event.push_batch_line(&mut line);
        let item: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(item["type"], "click");
        assert!(line.ends_with('\n'));
    }
}
