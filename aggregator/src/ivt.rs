//! The invalid-traffic rules that need a visitor's history, applied to each batch before it is
//! written. Ingest applies the rules one request shows (user agents, data-centre ranges), and
//! [`recheck`] checks the user-agent ones again on every event read.
//!
//! - `duplicate_click`: the same visitor clicked the same ad within
//!   `IVT_DUPLICATE_CLICK_WINDOW_SECS` before (any stored click counts, flagged or not).
//! - `click_without_impression`: the visitor was not shown that ad within
//!   `IVT_CLICK_IMPRESSION_WINDOW_SECS` before the click, on an ad that receives impressions
//!   (one stored, billable or flagged, or in the batch). A page or player that reports clicks
//!   alone, as most click trackers do, would otherwise see every click flagged: the rule cannot
//!   tell an impression that was not reported from one that did not happen.
//!
//! "Before" and the windows go by `received_at`, the time ingest received each event, over what
//! ClickHouse holds plus the batch itself: a client chooses its events' `timestamp`, so three
//! clicks sent within a second but stamped 31 s apart are still duplicates. A visitor is its
//! `sender_id`, keyed by the day ingest received the event (not `visitor_id`, keyed by the day of
//! the client's timestamp, which a client could vary to pass for several visitors). Its key
//! changes at 00:00 UTC: a click received just after midnight cannot be linked to its impression
//! received just before, and is flagged. An impression that reaches the aggregator
//! after its click (in a later batch) does not clear the click: flags are final once written.
//! Replaying the stream (`aggregator rebuild`) reads the events in the same order and flags
//! the same ones.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use clickhouse::Client;
use futures::StreamExt;
use schemas::ivt::InvalidReason;
use schemas::rows::EventRow;
use schemas::{AdEvent, EventKind};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::InvalidTrafficArgs;

/// Clicks per lookup: each travels as a bound parameter (~80 bytes), below ClickHouse's
/// 128 KiB cap on a form field.
const LOOKUP_CHUNK: usize = 1_000;
const PARALLEL_LOOKUPS: usize = 4;

/// The rules' windows; `None` turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    pub duplicate_click_window: Option<Duration>,
    pub click_impression_window: Option<Duration>,
}

impl Rules {
    pub fn from_args(args: &InvalidTrafficArgs) -> Self {
        Self {
            duplicate_click_window: args.duplicate_click_window(),
            click_impression_window: args.click_impression_window(),
        }
    }

    fn any(&self) -> bool {
        self.duplicate_click_window.is_some() || self.click_impression_window.is_some()
    }
}

/// What ClickHouse held, before a batch, about one of its clicks: when ingest received the
/// newest click and the newest impression by the same visitor on the same ad, at or before it
/// received the click, each looked for only within its rule's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Before {
    pub click: Option<OffsetDateTime>,
    pub impression: Option<OffsetDateTime>,
}

/// What ClickHouse held before a batch, as far as the rules read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Per billable click of the batch, by event id.
    pub before: HashMap<Uuid, Before>,
    /// The batch's ads with an impression stored: the ones the click-impression rule judges.
    pub shown_ads: HashSet<Uuid>,
}

/// Flags the batch's billable clicks that break a rule, given what ClickHouse held. Events are
/// taken in the order ingest received them, so a batch's earlier events count as history for its later ones; the
/// rows come back in their original order.
pub fn flag(rows: Vec<EventRow>, rules: Rules, stored: &Stored) -> Vec<EventRow> {
    if !rules.any() {
        return rows;
    }
    let facts: Vec<Option<Facts>> = rows.iter().map(facts_of).collect();
    let mut shown_ads = stored.shown_ads.clone();
    shown_ads.extend(facts.iter().flatten().filter(|f| f.kind == EventKind::Impression).map(|f| f.ad_id));
    let mut order: Vec<usize> = (0..rows.len()).filter(|&i| facts[i].is_some()).collect();
    order.sort_by_key(|&i| facts[i].as_ref().map(|f| (f.received_at, f.stream_seq)));
    let mut newest: HashMap<(u64, Uuid, EventKind), OffsetDateTime> = HashMap::new();
    let mut reasons: Vec<Option<InvalidReason>> = vec![None; rows.len()];
    for i in order {
        let Some(f) = &facts[i] else { continue };
        if f.billable_click {
            let before = stored.before.get(&f.event_id).copied().unwrap_or_default();
            let newest_of =
                |kind, stored: Option<OffsetDateTime>| newest.get(&(f.sender_id, f.ad_id, kind)).copied().max(stored);
            let within =
                |at: Option<OffsetDateTime>, window: Duration| at.is_some_and(|at| f.received_at - at <= window);
            let click = newest_of(EventKind::Click, before.click);
            let impression = newest_of(EventKind::Impression, before.impression);
            reasons[i] = if rules.duplicate_click_window.is_some_and(|w| within(click, w)) {
                Some(InvalidReason::DuplicateClick)
            } else if rules
                .click_impression_window
                .is_some_and(|w| shown_ads.contains(&f.ad_id) && !within(impression, w))
            {
                Some(InvalidReason::ClickWithoutImpression)
            } else {
                None
            };
        }
        newest.insert((f.sender_id, f.ad_id, f.kind), f.received_at);
    }
    rows.into_iter()
        .zip(reasons)
        .map(|(row, reason)| match reason {
            Some(reason) => row.flagged(reason),
            None => row,
        })
        .collect()
}

/// What the rules read of a row.
struct Facts {
    event_id: Uuid,
    ad_id: Uuid,
    sender_id: u64,
    kind: EventKind,
    received_at: OffsetDateTime,
    stream_seq: u64,
    /// A click not flagged yet: the only rows the rules judge.
    billable_click: bool,
}

fn facts_of(row: &EventRow) -> Option<Facts> {
    Some(match row {
        EventRow::Click(r) => Facts {
            event_id: r.event_id,
            ad_id: r.ad_id,
            sender_id: r.sender_id,
            kind: EventKind::Click,
            received_at: r.received_at,
            stream_seq: r.stream_seq,
            billable_click: true,
        },
        EventRow::Impression(r) => Facts {
            event_id: r.event_id,
            ad_id: r.ad_id,
            sender_id: r.sender_id,
            kind: EventKind::Impression,
            received_at: r.received_at,
            stream_seq: r.stream_seq,
            billable_click: false,
        },
        EventRow::Invalid(r) => Facts {
            event_id: r.event_id,
            ad_id: r.ad_id,
            sender_id: r.sender_id,
            // A flagged event of a kind this build does not know is no one's history.
            kind: match r.kind.as_str() {
                "click" => EventKind::Click,
                "impression" => EventKind::Impression,
                _ => return None,
            },
            received_at: r.received_at,
            stream_seq: r.stream_seq,
            billable_click: false,
        },
    })
}

/// The event with its request reason checked again ([`schemas::ivt::recheck`]): only ingest may
/// publish events, and this holds even if something else did. A message cannot make itself
/// billable against its own user agent, nor claim the history rules' reasons.
pub fn recheck(mut event: AdEvent) -> AdEvent {
    event.invalid_reason = schemas::ivt::recheck(event.invalid_reason, event.user_agent.as_deref());
    event
}

/// Reads [`Before`] for the batch's billable clicks from ClickHouse.
#[derive(Clone)]
pub struct History {
    client: Client,
    rules: Rules,
}

#[derive(clickhouse::Row, Deserialize)]
struct Found {
    #[serde(with = "clickhouse::serde::uuid")]
    event_id: Uuid,
    /// 0 when there is none (an unmatched ASOF join gives the epoch).
    click_ms: i64,
    impression_ms: i64,
}

impl History {
    pub fn new(client: Client, rules: Rules) -> Self {
        Self { client, rules }
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// One lookup per chunk of clicks: for each, the newest earlier click and impression of
    /// its visitor and ad (ASOF joins), read from the raw tables within the rules' windows; and
    /// which of their ads have been shown.
    pub async fn before(&self, rows: &[EventRow]) -> Result<Stored, clickhouse::error::Error> {
        let clicks: Vec<(Uuid, u64, Uuid, i64)> = rows
            .iter()
            .filter_map(|row| match row {
                EventRow::Click(c) => {
                    Some((c.event_id, c.sender_id, c.ad_id, (c.received_at.unix_timestamp_nanos() / 1_000_000) as i64))
                }
                _ => None,
            })
            .collect();
        if clicks.is_empty() || !self.rules.any() {
            return Ok(Stored::default());
        }
        // Each side looks back only as far as its own rule needs: the duplicate-click window
        // (30 s by default) for clicks, the click-impression window (an hour) for impressions.
        // A rule that is off reads only the batch's own time span.
        let ms = |window: Option<Duration>| window.map_or(0, |w| w.as_millis() as i64);
        let windows_ms = (ms(self.rules.duplicate_click_window), ms(self.rules.click_impression_window));
        let lookups: Vec<_> = clicks.chunks(LOOKUP_CHUNK).map(|chunk| self.lookup(chunk, windows_ms)).collect();
        let looked_up = async {
            let mut found = futures::stream::iter(lookups).buffer_unordered(PARALLEL_LOOKUPS);
            let mut before = HashMap::with_capacity(clicks.len());
            let at = |ms: i64| (ms > 0).then(|| OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms));
            while let Some(rows) = found.next().await {
                for row in rows? {
                    before.insert(row.event_id, Before { click: at(row.click_ms), impression: at(row.impression_ms) });
                }
            }
            Ok(before)
        };
        let shown_ads = async {
            match self.rules.click_impression_window {
                Some(_) => self.shown_ads(clicks.iter().map(|c| c.2)).await,
                None => Ok(HashSet::new()),
            }
        };
        let (before, shown_ads) = tokio::try_join!(looked_up, shown_ads)?;
        Ok(Stored { before, shown_ads })
    }

    /// Which of `ads` anyone has been shown, billable or flagged: read from the day rollups, a
    /// few rows per ad, where the raw tables would give every impression.
    async fn shown_ads(&self, ads: impl Iterator<Item = Uuid>) -> Result<HashSet<Uuid>, clickhouse::error::Error> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Shown {
            #[serde(with = "clickhouse::serde::uuid")]
            ad_id: Uuid,
        }
        let mut ads: Vec<String> = ads.map(|ad| ad.to_string()).collect();
        ads.sort_unstable();
        ads.dedup();
        let shown = self
            .client
            .query(
                "SELECT DISTINCT ad_id FROM impression_events_per_day WHERE ad_id IN {ads:Array(UUID)} \
                 UNION DISTINCT SELECT DISTINCT ad_id FROM invalid_events_per_day WHERE kind = 'impression' AND ad_id IN {ads:Array(UUID)}",
            )
            .param("ads", ads)
            .fetch_all::<Shown>()
            .await?;
        Ok(shown.into_iter().map(|s| s.ad_id).collect())
    }

    /// `windows_ms`: how far back to read clicks and impressions.
    async fn lookup(
        &self,
        clicks: &[(Uuid, u64, Uuid, i64)],
        windows_ms: (i64, i64),
    ) -> Result<Vec<Found>, clickhouse::error::Error> {
        let earliest = clicks.iter().map(|c| c.3).min().unwrap_or(0);
        let to = clicks.iter().map(|c| c.3).max().unwrap_or(0);
        let mut senders: Vec<u64> = clicks.iter().map(|c| c.1).collect();
        senders.sort_unstable();
        senders.dedup();
        let mut ads: Vec<String> = clicks.iter().map(|c| c.2.to_string()).collect();
        ads.sort_unstable();
        ads.dedup();
        let tuples: Vec<(String, u64, String, i64)> =
            clicks.iter().map(|c| (c.0.to_string(), c.1, c.2.to_string(), c.3)).collect();
        // Each side reads only the batch's ads and senders (primary key and bloom-filter
        // index) within its window; flagged events count as history too.
        let history = |table: &str, kind: &str| {
            let batch = format!(
                "ad_id IN {{ads:Array(UUID)}} AND sender_id IN {{senders:Array(UInt64)}} \
                 AND received_at >= fromUnixTimestamp64Milli({{{kind}_from:Int64}}, 'UTC') AND received_at <= fromUnixTimestamp64Milli({{to:Int64}}, 'UTC')"
            );
            format!(
                "SELECT sender_id, ad_id, received_at FROM {table} WHERE {batch} \
                 UNION ALL SELECT sender_id, ad_id, received_at FROM invalid_events WHERE kind = '{kind}' AND {batch}"
            )
        };
        let sql = format!(
            "SELECT c.event_id AS event_id, toUnixTimestamp64Milli(k.received_at) AS click_ms, toUnixTimestamp64Milli(i.received_at) AS impression_ms \
             FROM (SELECT tupleElement(t, 1) AS event_id, tupleElement(t, 2) AS sender_id, tupleElement(t, 3) AS ad_id, \
                   fromUnixTimestamp64Milli(tupleElement(t, 4), 'UTC') AS received_at \
                   FROM (SELECT arrayJoin({{clicks:Array(Tuple(UUID, UInt64, UUID, Int64))}}) AS t)) AS c \
             ASOF LEFT JOIN ({}) AS k ON c.sender_id = k.sender_id AND c.ad_id = k.ad_id AND c.received_at >= k.received_at \
             ASOF LEFT JOIN ({}) AS i ON c.sender_id = i.sender_id AND c.ad_id = i.ad_id AND c.received_at >= i.received_at",
            history("click_events", "click"),
            history("impression_events", "impression"),
        );
        self.client
            .query(&sql)
            .param("clicks", tuples)
            .param("ads", ads)
            .param("senders", senders)
            .param("click_from", earliest - windows_ms.0)
            .param("impression_from", earliest - windows_ms.1)
            .param("to", to)
            .fetch_all::<Found>()
            .await
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    const AD: Uuid = Uuid::from_u128(0xa1);
    const SECONDS_30: Duration = Duration::from_secs(30);
    const HOUR: Duration = Duration::from_secs(3_600);
    const RULES: Rules = Rules { duplicate_click_window: Some(SECONDS_30), click_impression_window: Some(HOUR) };

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn event(kind: EventKind, id: u128, visitor: u64, secs: i64) -> EventRow {
        let event = AdEvent {
            timestamp: at(secs),
            received_at: at(secs),
            visitor_id: Some(visitor),
            sender_id: Some(visitor),
            ..AdEvent::new(kind, Uuid::from_u128(id), AD)
        };
        EventRow::from_event(event, id as u64)
    }

    fn click(id: u128, visitor: u64, secs: i64) -> EventRow {
        event(EventKind::Click, id, visitor, secs)
    }

    fn impression(id: u128, visitor: u64, secs: i64) -> EventRow {
        event(EventKind::Impression, id, visitor, secs)
    }

    /// What ClickHouse held: the clicks' history, and every ad of these tests shown already.
    fn stored(before: impl IntoIterator<Item = (Uuid, Before)>) -> Stored {
        Stored { before: before.into_iter().collect(), shown_ads: HashSet::from([AD]) }
    }

    fn reasons(rows: &[EventRow]) -> Vec<Option<&str>> {
        rows.iter()
            .map(|row| match row {
                EventRow::Invalid(r) => Some(r.invalid_reason.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_click_needs_an_earlier_impression_of_the_same_ad_by_the_same_visitor() {
        // Out of order on purpose: the rules go by time, not by position.
        let rows =
            vec![click(3, 1, 100), impression(1, 1, 10), impression(2, 2, 10), click(4, 3, 100), click(5, 2, 5_000)];
        let flagged = flag(rows, RULES, &Stored::default());
        assert_eq!(
            reasons(&flagged),
            [None, None, None, Some("click_without_impression"), Some("click_without_impression")]
        );
        let EventRow::Click(first) = &flagged[0] else { panic!("kept as a click") };
        assert_eq!(first.event_id, Uuid::from_u128(3), "rows keep their order");
    }

    #[test]
    fn a_second_click_within_the_window_is_a_duplicate_and_one_after_it_is_not() {
        let rows = vec![impression(1, 1, 0), click(2, 1, 10), click(3, 1, 39), click(4, 1, 70), click(5, 1, 70)];
        // 39 is 29 s after 10; 70 is 31 s after 39 (a flagged click is history too); the second
        // click at 70 repeats the first.
        assert_eq!(
            reasons(&flag(rows, RULES, &Stored::default())),
            [None, None, Some("duplicate_click"), None, Some("duplicate_click")]
        );
    }

    #[test]
    fn the_rules_go_by_when_ingest_received_a_click_not_by_its_timestamp() {
        // Received within a second, stamped 31 s apart by the client: duplicates.
        let stamped_apart = |id: u128, ms: i64, stamped_secs: i64| match click(id, 1, 0) {
            EventRow::Click(mut c) => {
                c.received_at = at(0) + time::Duration::milliseconds(ms);
                c.timestamp = at(stamped_secs);
                EventRow::Click(c)
            }
            _ => unreachable!(),
        };
        let rows =
            vec![impression(1, 1, 0), stamped_apart(2, 100, 0), stamped_apart(3, 400, 31), stamped_apart(4, 900, 62)];
        assert_eq!(
            reasons(&flag(rows, RULES, &Stored::default())),
            [None, None, Some("duplicate_click"), Some("duplicate_click")]
        );
        // Received 40 s apart but stamped as one moment: not a duplicate.
        let mut later = click(6, 1, 40);
        if let EventRow::Click(c) = &mut later {
            c.timestamp = at(0);
        }
        assert_eq!(
            reasons(&flag(vec![impression(1, 1, 0), click(5, 1, 0), later], RULES, &Stored::default())),
            [None, None, None]
        );
    }

    #[test]
    fn what_clickhouse_held_counts_like_the_batch() {
        let stored = stored([
            (Uuid::from_u128(1), Before { click: None, impression: Some(at(-60)) }),
            (Uuid::from_u128(2), Before { click: Some(at(-10)), impression: Some(at(-60)) }),
            (Uuid::from_u128(3), Before { click: None, impression: Some(at(-3_601)) }),
        ]);
        let rows = vec![click(1, 1, 0), click(2, 2, 0), click(3, 3, 0)];
        assert_eq!(
            reasons(&flag(rows, RULES, &stored)),
            [None, Some("duplicate_click"), Some("click_without_impression")]
        );
    }

    #[test]
    fn clicks_on_an_ad_nobody_was_shown_are_billable_unless_repeated() {
        // A click tracker's traffic: clicks only, from distinct visitors, then one repeat.
        let clicks_only = vec![click(1, 1, 0), click(2, 2, 5), click(3, 3, 9), click(4, 3, 20)];
        assert_eq!(
            reasons(&flag(clicks_only.clone(), RULES, &Stored::default())),
            [None, None, None, Some("duplicate_click")]
        );
        // Once the ad is shown to anyone (stored, or in the batch at any time, flagged or not),
        // a click needs its visitor's own impression.
        assert_eq!(
            reasons(&flag(clicks_only.clone(), RULES, &stored([]))),
            [
                Some("click_without_impression"),
                Some("click_without_impression"),
                Some("click_without_impression"),
                Some("duplicate_click")
            ]
        );
        let mut with_a_bots_impression = clicks_only;
        with_a_bots_impression.push(impression(5, 9, 60).flagged(InvalidReason::BotUserAgent));
        with_a_bots_impression.push(impression(6, 2, 1));
        assert_eq!(
            reasons(&flag(with_a_bots_impression, RULES, &Stored::default())),
            [
                Some("click_without_impression"),
                None,
                Some("click_without_impression"),
                Some("duplicate_click"),
                Some("bot_user_agent"),
                None
            ]
        );
    }

    #[test]
    fn rules_can_be_turned_off_and_ingest_flags_stay() {
        let rows = vec![click(1, 1, 0), click(2, 1, 1), click(3, 2, 0).flagged(InvalidReason::BotUserAgent)];
        let only_duplicates = Rules { click_impression_window: None, ..RULES };
        assert_eq!(
            reasons(&flag(rows.clone(), only_duplicates, &Stored::default())),
            [None, Some("duplicate_click"), Some("bot_user_agent")]
        );
        assert_eq!(reasons(&flag(rows, Rules::default(), &Stored::default())), [None, None, Some("bot_user_agent")]);
    }
}
