//! The event as published to JetStream: JSON.
//!
//! A message holds one event (`POST /ads/click`, `/ads/impression`; `Nats-Msg-Id` = `event_id`)
//! or several of one kind, one JSON document per line (`POST /ads/events`; `Nats-Msg-Id` names
//! the set of event ids). Either way each document is an [`AdEvent`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audience::{Browser, DeviceType};
use crate::ivt::InvalidReason;

/// Version of the [`AdEvent`] JSON layout. Consumers reject versions they do not know. Optional
/// fields added later (`device_type`, `browser`, `country`, `request_id`, `visitor_id`,
/// `invalid_reason`) keep the version: older events lack them, and readers ignore fields they
/// do not know.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Click,
    Impression,
}

impl EventKind {
    pub const ALL: [EventKind; 2] = [EventKind::Click, EventKind::Impression];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Click => "click",
            EventKind::Impression => "impression",
        }
    }
}

/// One accepted event, as stored in the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdEvent {
    pub schema_version: u16,
    pub kind: EventKind,
    pub event_id: Uuid,
    pub ad_id: Uuid,
    /// When the ad was clicked or shown (client's clock if it sent one, else `received_at`).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// When ingest received the request.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// Clicks only: seconds of the ad watched before the click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_time_secs: Option<f64>,
    /// Clicks only: share of the ad watched before the click, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watched_percent: Option<f64>,
    /// Derived from `user_agent` by ingest. Absent in events published before it did: readers
    /// derive it from `user_agent` the same way ([`DeviceType::of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<DeviceType>,
    /// Derived from `user_agent` by ingest, like `device_type` ([`Browser::of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<Browser>,
    /// ISO 3166-1 alpha-2 country code, when the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The id of the HTTP request that brought the event (the caller's `X-Request-Id`, or one
    /// ingest made), for following it through the logs. Absent in events published before
    /// ingest recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who the visitor is, for unique counts and the invalid-traffic rules: a keyed hash of the
    /// client IP and user agent whose key changes every UTC day (ingest's `VISITOR_HASH_SECRET`),
    /// so one day's visitors cannot be linked to another's. Absent in events published before
    /// ingest computed it: readers then use [`crate::rows::unkeyed_visitor_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<u64>,
    /// Who sent the event as ingest saw it on the day it received it: the same hash as
    /// `visitor_id` under the key of `received_at`'s UTC day, so it differs from `visitor_id` only
    /// when the client's `timestamp` falls on another day. The invalid-traffic rules compare it,
    /// since a client cannot change it by choosing timestamps. Absent in events published before
    /// ingest computed it: readers then use `visitor_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<u64>,
    /// Set by ingest when the request itself shows invalid traffic ([`InvalidReason`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<InvalidReason>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a valid event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown schema version {0} (this build knows {SCHEMA_VERSION})")]
    UnknownVersion(u16),
    #[error("the message holds no event")]
    Empty,
}

impl AdEvent {
    /// An event with only what every event has, received now: the start of one built by hand
    /// (tests, the bench), e.g. `AdEvent { country: Some("FR".into()), ..AdEvent::new(kind, id, ad) }`.
    pub fn new(kind: EventKind, event_id: Uuid, ad_id: Uuid) -> Self {
        let now = OffsetDateTime::now_utc();
        AdEvent {
            schema_version: SCHEMA_VERSION,
            kind,
            event_id,
            ad_id,
            timestamp: now,
            received_at: now,
            client_ip: None,
            user_agent: None,
            playback_time_secs: None,
            watched_percent: None,
            device_type: None,
            browser: None,
            country: None,
            request_id: None,
            visitor_id: None,
            sender_id: None,
            invalid_reason: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).expect("AdEvent serializes")
    }

    /// Several events as one message payload: one JSON document per line.
    pub fn to_json_lines<'a>(events: impl IntoIterator<Item = &'a AdEvent>) -> Vec<u8> {
        let mut payload = Vec::new();
        for event in events {
            // Serializing plain data with string keys cannot fail.
            serde_json::to_writer(&mut payload, event).expect("AdEvent serializes");
            payload.push(b'\n');
        }
        payload
    }

    /// Decodes a stream message of one or more events. Any document that does not decode makes
    /// the whole message undecodable: a message is counted entirely or not at all.
    pub fn from_message(payload: &[u8]) -> Result<Vec<Self>, DecodeError> {
        let documents = serde_json::Deserializer::from_slice(payload).into_iter::<&serde_json::value::RawValue>();
        let events =
            documents.map(|document| Self::from_json(document?.get().as_bytes())).collect::<Result<Vec<_>, _>>()?;
        if events.is_empty() {
            return Err(DecodeError::Empty);
        }
        Ok(events)
    }

    /// Decodes one event, rejecting schema versions this build does not understand.
    pub fn from_json(payload: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u16,
        }
        let Version { schema_version } = serde_json::from_slice(payload)?;
        if schema_version != SCHEMA_VERSION {
            return Err(DecodeError::UnknownVersion(schema_version));
        }
        Ok(serde_json::from_slice(payload)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events already in a stream must keep parsing: the fixtures are real v1 payloads.
    #[test]
    fn v1_fixtures_parse() {
        let click = AdEvent::from_json(include_bytes!("../test-data/v1/click.json")).unwrap();
        assert_eq!(click.kind, EventKind::Click);
        assert_eq!(click.playback_time_secs, Some(12.5));
        assert_eq!(click.watched_percent, Some(40.0));
        assert_eq!(click.client_ip, Some("203.0.113.7".parse().unwrap()));
        let impression = AdEvent::from_json(include_bytes!("../test-data/v1/impression.json")).unwrap();
        assert_eq!(impression.kind, EventKind::Impression);
        assert_eq!(impression.playback_time_secs, None);
        assert_eq!(click.request_id, None, "events from before ingest recorded request ids");
        // Optional fields added since (audience, request id) need no new version: readers
        // that do not know them ignore them.
        let newer = AdEvent::from_json(include_bytes!("../test-data/v1/click_with_request_id.json")).unwrap();
        assert_eq!(newer.request_id.as_deref(), Some("checkout-page-42"));
        assert_eq!(
            (newer.device_type, newer.browser, newer.country.as_deref()),
            (Some(DeviceType::Mobile), Some(Browser::Safari), Some("FR"))
        );
        assert_eq!((newer.visitor_id, newer.invalid_reason), (None, None), "events from before ingest hashed visitors");
        let flagged = AdEvent::from_json(include_bytes!("../test-data/v1/click_flagged_bot.json")).unwrap();
        assert_eq!(flagged.visitor_id, Some(9_876_543_210_123_456_789));
        assert_eq!(flagged.invalid_reason, Some(InvalidReason::BotUserAgent));
    }

    #[test]
    fn round_trips() {
        let click = AdEvent::from_json(include_bytes!("../test-data/v1/click.json")).unwrap();
        assert_eq!(AdEvent::from_json(&click.to_json()).unwrap(), click);
    }

    #[test]
    fn a_message_holds_one_event_or_several() {
        let click = AdEvent::from_json(include_bytes!("../test-data/v1/click.json")).unwrap();
        let impression = AdEvent::from_json(include_bytes!("../test-data/v1/impression.json")).unwrap();
        // A pretty-printed single event (as an operator might publish it) is one message too.
        let single = AdEvent::from_message(include_bytes!("../test-data/v1/click.json")).unwrap();
        assert_eq!(single, vec![click.clone()]);
        let both = AdEvent::to_json_lines(&[click.clone(), impression.clone()]);
        assert_eq!(AdEvent::from_message(&both).unwrap(), vec![click.clone(), impression]);
        let mut broken = AdEvent::to_json_lines(&[click]);
        broken.extend_from_slice(b"{\"schema_version\": 1}");
        assert!(AdEvent::from_message(&broken).is_err(), "one bad document spoils the message");
        assert!(matches!(AdEvent::from_message(b" \n"), Err(DecodeError::Empty)));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let err = AdEvent::from_json(br#"{"schema_version": 99}"#).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownVersion(99)), "{err}");
        assert!(AdEvent::from_json(b"not json").is_err());
    }
}
