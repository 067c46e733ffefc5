//! ClickHouse row types. Column names and order match `clickhouse/migrations/`; the crate
//! checks them against the server's schema on every insert.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audience::{Browser, DeviceType};
use crate::{AdEvent, EventKind};

/// A row of `click_events`. `visitor_id` is computed by ClickHouse (column DEFAULT).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ClickRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub ad_id: Uuid,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub received_at: OffsetDateTime,
    pub client_ip: String,
    pub user_agent: String,
    pub playback_time_secs: Option<f64>,
    pub watched_percent: Option<f64>,
    pub schema_version: u16,
    /// The JetStream sequence the event was read from: how redeliveries are recognised.
    pub stream_seq: u64,
    /// [`crate::audience`]: breakdown dimensions.
    pub device_type: String,
    pub browser: String,
    /// Empty when the client sent none.
    pub country: String,
}

/// A row of `impression_events`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ImpressionRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub ad_id: Uuid,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub received_at: OffsetDateTime,
    pub client_ip: String,
    pub user_agent: String,
    pub schema_version: u16,
    pub stream_seq: u64,
    pub device_type: String,
    pub browser: String,
    pub country: String,
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
}

impl EventRow {
    pub fn ad_id(&self) -> Uuid {
        match self {
            EventRow::Click(row) => row.ad_id,
            EventRow::Impression(row) => row.ad_id,
        }
    }

    pub fn event_id(&self) -> Uuid {
        match self {
            EventRow::Click(row) => row.event_id,
            EventRow::Impression(row) => row.event_id,
        }
    }

    pub fn from_event(event: AdEvent, stream_seq: u64) -> Self {
        let client_ip = event.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let user_agent = event.user_agent.unwrap_or_default();
        // Events published before ingest derived these get them the same way now.
        let device_type = event.device_type.unwrap_or_else(|| DeviceType::of(&user_agent)).as_str().to_owned();
        let browser = event.browser.unwrap_or_else(|| Browser::of(&user_agent)).as_str().to_owned();
        let country = event.country.unwrap_or_default();
        match event.kind {
            EventKind::Click => EventRow::Click(ClickRow {
                event_id: event.event_id,
                ad_id: event.ad_id,
                timestamp: event.timestamp,
                received_at: event.received_at,
                client_ip,
                user_agent,
                playback_time_secs: event.playback_time_secs,
                watched_percent: event.watched_percent,
                schema_version: event.schema_version,
                stream_seq,
                device_type,
                browser,
                country,
            }),
            EventKind::Impression => EventRow::Impression(ImpressionRow {
                event_id: event.event_id,
                ad_id: event.ad_id,
                timestamp: event.timestamp,
                received_at: event.received_at,
                client_ip,
                user_agent,
                schema_version: event.schema_version,
                stream_seq,
                device_type,
                browser,
                country,
            }),
        }
    }
}
