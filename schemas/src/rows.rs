//! ClickHouse row types. Column names and order match `clickhouse/migrations/`; the crate
//! checks them against the server's schema on every insert.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audience::{Browser, DeviceType};
use crate::ivt::InvalidReason;
use crate::{AdEvent, EventKind};

/// Default of `AUDIENCE_TTL_DAYS`: how long the audience rollups (the breakdowns by device,
/// browser and country, with their unique-visitor states) keep a row. The aggregator's `migrate`
/// applies it; the query service refuses breakdowns of what is gone.
pub const DEFAULT_AUDIENCE_TTL_DAYS: u32 = 400;

/// Defines a raw-table row: the columns every raw event table has (one list, here), then the
/// table's own. The crate inserts by column name, so their order is free.
macro_rules! raw_event_row {
    ($(#[$meta:meta])* $name:ident { $($(#[$column_meta:meta])* $column:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
        pub struct $name {
            #[serde(with = "clickhouse::serde::uuid")]
            pub event_id: Uuid,
            #[serde(with = "clickhouse::serde::uuid")]
            pub ad_id: Uuid,
            #[serde(with = "clickhouse::serde::time::datetime64::millis")]
            pub timestamp: OffsetDateTime,
            #[serde(with = "clickhouse::serde::time::datetime64::millis")]
            pub received_at: OffsetDateTime,
            /// As ingest stored it: truncated to its /24 or /48 unless ingest keeps raw IPs.
            pub client_ip: String,
            pub user_agent: String,
            /// [`AdEvent::visitor_id`].
            pub visitor_id: u64,
            pub schema_version: u16,
            /// The JetStream sequence the event was read from: how redeliveries are recognised.
            pub stream_seq: u64,
            /// [`crate::audience`]: breakdown dimensions.
            pub device_type: String,
            pub browser: String,
            /// Empty when the client sent none.
            pub country: String,
            /// [`AdEvent::sender_id`]: what the invalid-traffic rules compare.
            pub sender_id: u64,
            $($(#[$column_meta])* pub $column: $ty,)*
        }
    };
}

/// A row of another raw table with the shared columns of `$row` (an identifier, moved from) and
/// the table's own columns given.
macro_rules! with_shared_columns {
    ($row:ident => $target:ident { $($column:ident $(: $value:expr)?),* $(,)? }) => {
        $target {
            event_id: $row.event_id,
            ad_id: $row.ad_id,
            timestamp: $row.timestamp,
            received_at: $row.received_at,
            client_ip: $row.client_ip,
            user_agent: $row.user_agent,
            visitor_id: $row.visitor_id,
            schema_version: $row.schema_version,
            stream_seq: $row.stream_seq,
            device_type: $row.device_type,
            browser: $row.browser,
            country: $row.country,
            sender_id: $row.sender_id,
            $($column $(: $value)?,)*
        }
    };
}

raw_event_row! {
    /// A row of `click_events`: a billable click.
    ClickRow {
        playback_time_secs: Option<f64>,
        watched_percent: Option<f64>,
    }
}

raw_event_row! {
    /// A row of `impression_events`: a billable impression.
    ImpressionRow {}
}

raw_event_row! {
    /// A row of `invalid_events`: a click or impression flagged as invalid traffic, kept with its
    /// reason and counted apart from the billable events.
    InvalidEventRow {
        /// `click` or `impression`.
        kind: String,
        /// [`InvalidReason::as_str`].
        invalid_reason: String,
        playback_time_secs: Option<f64>,
        watched_percent: Option<f64>,
    }
}

/// The visitor of an event published before ingest computed [`AdEvent::visitor_id`]: FNV-1a
/// of the stored client IP and user agent. Stable across builds, and unkeyed (those events
/// carry their raw IP anyway).
pub fn unkeyed_visitor_id(client_ip: &str, user_agent: &str) -> u64 {
    fnv1a64(client_ip.bytes().chain([0]).chain(user_agent.bytes()))
}

/// 64-bit FNV-1a: a hash that stays the same across builds and platforms, unlike std's.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The ad catalog (`ads` table, a ReplacingMergeTree on `updated_at`: read it with `FINAL`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AdRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub media_url: String,
    pub target_url: String,
    pub campaign_id: String,
    pub active: bool,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub created_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub updated_at: OffsetDateTime,
}

/// A stream event split by destination table.
#[derive(Debug, Clone, PartialEq)]
pub enum EventRow {
    Click(ClickRow),
    Impression(ImpressionRow),
    Invalid(InvalidEventRow),
}

impl EventRow {
    pub fn ad_id(&self) -> Uuid {
        match self {
            EventRow::Click(row) => row.ad_id,
            EventRow::Impression(row) => row.ad_id,
            EventRow::Invalid(row) => row.ad_id,
        }
    }

    pub fn event_id(&self) -> Uuid {
        match self {
            EventRow::Click(row) => row.event_id,
            EventRow::Impression(row) => row.event_id,
            EventRow::Invalid(row) => row.event_id,
        }
    }

    /// When the event happened (the client's time): the time its counts are kept under.
    pub fn timestamp(&self) -> OffsetDateTime {
        match self {
            EventRow::Click(row) => row.timestamp,
            EventRow::Impression(row) => row.timestamp,
            EventRow::Invalid(row) => row.timestamp,
        }
    }

    /// The same event as invalid traffic (an event already flagged keeps its first reason).
    pub fn flagged(self, reason: InvalidReason) -> Self {
        let invalid_reason = reason.as_str().to_owned();
        EventRow::Invalid(match self {
            EventRow::Click(click) => with_shared_columns!(click => InvalidEventRow {
                kind: EventKind::Click.as_str().to_owned(),
                invalid_reason,
                playback_time_secs: click.playback_time_secs,
                watched_percent: click.watched_percent,
            }),
            EventRow::Impression(impression) => with_shared_columns!(impression => InvalidEventRow {
                kind: EventKind::Impression.as_str().to_owned(),
                invalid_reason,
                playback_time_secs: None,
                watched_percent: None,
            }),
            EventRow::Invalid(invalid) => invalid,
        })
    }

    pub fn from_event(event: AdEvent, stream_seq: u64) -> Self {
        let client_ip = event.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let user_agent = event.user_agent.unwrap_or_default();
        // Events published before ingest derived these get them the same way now.
        let device_type = event.device_type.unwrap_or_else(|| DeviceType::of(&user_agent)).as_str().to_owned();
        let browser = event.browser.unwrap_or_else(|| Browser::of(&user_agent)).as_str().to_owned();
        let visitor_id = event.visitor_id.unwrap_or_else(|| unkeyed_visitor_id(&client_ip, &user_agent));
        // Every column, as `invalid_events` has them; the billable tables take their share.
        let row = InvalidEventRow {
            event_id: event.event_id,
            ad_id: event.ad_id,
            timestamp: event.timestamp,
            received_at: event.received_at,
            client_ip,
            user_agent,
            visitor_id,
            schema_version: event.schema_version,
            stream_seq,
            device_type,
            browser,
            country: event.country.unwrap_or_default(),
            sender_id: event.sender_id.unwrap_or(visitor_id),
            kind: event.kind.as_str().to_owned(),
            invalid_reason: event.invalid_reason.map(|reason| reason.as_str().to_owned()).unwrap_or_default(),
            playback_time_secs: event.playback_time_secs,
            watched_percent: event.watched_percent,
        };
        match (event.invalid_reason, event.kind) {
            (Some(_), _) => EventRow::Invalid(row),
            (None, EventKind::Click) => EventRow::Click(with_shared_columns!(row => ClickRow {
                playback_time_secs: row.playback_time_secs,
                watched_percent: row.watched_percent,
            })),
            (None, EventKind::Impression) => EventRow::Impression(with_shared_columns!(row => ImpressionRow {})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> AdEvent {
        let path = format!("{}/test-data/v1/{name}", env!("CARGO_MANIFEST_DIR"));
        AdEvent::from_json(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn flagged_events_become_invalid_rows_with_their_reason() {
        let EventRow::Invalid(row) = EventRow::from_event(event("click_flagged_bot.json"), 7) else {
            panic!("not flagged")
        };
        assert_eq!((row.kind.as_str(), row.invalid_reason.as_str()), ("click", "bot_user_agent"));
        assert_eq!(
            (row.visitor_id, row.stream_seq, row.client_ip.as_str()),
            (9_876_543_210_123_456_789, 7, "203.0.113.0")
        );
        assert_eq!(row.sender_id, row.visitor_id, "an event published without a sender id is its visitor");

        let click = EventRow::from_event(event("click.json"), 8);
        let EventRow::Click(billable) = click.clone() else { panic!("a click") };
        let EventRow::Invalid(row) = click.flagged(InvalidReason::DuplicateClick) else { panic!("not flagged") };
        assert_eq!((row.kind.as_str(), row.invalid_reason.as_str()), ("click", "duplicate_click"));
        assert_eq!(
            (row.playback_time_secs, row.watched_percent),
            (billable.playback_time_secs, billable.watched_percent)
        );
        let again = EventRow::Invalid(row.clone()).flagged(InvalidReason::ClickWithoutImpression);
        assert_eq!(again, EventRow::Invalid(row), "the first reason stays");
    }

    #[test]
    fn events_without_a_visitor_id_get_a_stable_unkeyed_one() {
        let EventRow::Click(row) = EventRow::from_event(event("click.json"), 1) else { panic!("a click") };
        assert_eq!(row.visitor_id, unkeyed_visitor_id(&row.client_ip, &row.user_agent));
        assert_eq!(row.sender_id, row.visitor_id, "and the same sender id");
        assert_eq!(
            unkeyed_visitor_id("203.0.113.7", "a"),
            0x868e_9d24_06e3_bc73,
            "FNV-1a (checked against a Python FNV-1a), fixed across builds"
        );
        assert_ne!(unkeyed_visitor_id("203.0.113.7", "a"), unkeyed_visitor_id("203.0.113.7a", ""));
    }
}
