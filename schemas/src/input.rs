//! What clients send to `POST /ads/click` and `POST /ads/impression`, and every rule it must pass.
//!
//! Parsing is by hand over a `serde_json::Value` so that each rejection names its field, and so
//! that a wrong type (400) is told apart from a broken rule (422).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audience::{self, Browser, DeviceType};
use crate::{AdEvent, EventKind, SCHEMA_VERSION};

/// Largest `playback_time_secs` accepted: one day.
pub const MAX_PLAYBACK_TIME_SECS: f64 = 86_400.0;
/// Most `watched_percent` of a click.
pub const MAX_WATCHED_PERCENT: f64 = 100.0;
/// Every field an impression may have.
pub const IMPRESSION_FIELDS: &[&str] = &["event_id", "ad_id", "timestamp", "country"];
/// Every field a click may have.
pub const CLICK_FIELDS: &[&str] =
    &["event_id", "ad_id", "timestamp", "country", "playback_time_secs", "watched_percent"];

/// Longest user agent kept; longer ones are cut (at a character boundary), never rejected.
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// How far a client's clock may run ahead of ours.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputErrorKind {
    /// The body is not JSON, not an object, has an unknown field, or a field has the wrong type.
    Malformed,
    /// The body is well-formed but a value breaks a rule (required, range, format, age).
    Invalid,
}

/// A rejected request body; `field` names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub kind: InputErrorKind,
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    pub(crate) fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        Self { kind: InputErrorKind::Malformed, field: field.map(str::to_owned), message: message.into() }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self { kind: InputErrorKind::Invalid, field: Some(field.to_owned()), message: message.into() }
    }

    /// A rule broken by the request as a whole, not by one field.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        Self { kind: InputErrorKind::Invalid, field: None, message: message.into() }
    }
}

/// The fields shared by clicks and impressions.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpressionInput {
    pub event_id: Option<Uuid>,
    pub ad_id: Uuid,
    pub timestamp: Option<OffsetDateTime>,
    /// ISO 3166-1 alpha-2, upper-cased.
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClickInput {
    pub common: ImpressionInput,
    pub playback_time_secs: Option<f64>,
    pub watched_percent: Option<f64>,
}

/// How old an event's timestamp may be, from the stream's retention (`None`: no limit).
#[derive(Debug, Clone, Copy)]
pub struct TimestampLimits {
    pub max_age: Option<Duration>,
}

/// Connection facts ingest adds to every event.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub received_at: OffsetDateTime,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl ImpressionInput {
    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        Fields::parse(body, IMPRESSION_FIELDS)?.common()
    }

    pub(crate) fn from_map(map: Map<String, Value>) -> Result<Self, InputError> {
        Fields::from_map(map, IMPRESSION_FIELDS)?.common()
    }

    pub fn into_event(self, ctx: RequestContext, limits: TimestampLimits) -> Result<AdEvent, InputError> {
        into_event(EventKind::Impression, self, None, None, ctx, limits)
    }
}

impl ClickInput {
    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        Self::from_fields(Fields::parse(body, CLICK_FIELDS)?)
    }

    pub(crate) fn from_map(map: Map<String, Value>) -> Result<Self, InputError> {
        Self::from_fields(Fields::from_map(map, CLICK_FIELDS)?)
    }

    fn from_fields(mut fields: Fields) -> Result<Self, InputError> {
        Ok(Self {
            common: fields.common()?,
            playback_time_secs: fields.number_in("playback_time_secs", 0.0, MAX_PLAYBACK_TIME_SECS)?,
            watched_percent: fields.number_in("watched_percent", 0.0, MAX_WATCHED_PERCENT)?,
        })
    }

    pub fn into_event(self, ctx: RequestContext, limits: TimestampLimits) -> Result<AdEvent, InputError> {
        into_event(EventKind::Click, self.common, self.playback_time_secs, self.watched_percent, ctx, limits)
    }
}

fn into_event(
    kind: EventKind,
    common: ImpressionInput,
    playback_time_secs: Option<f64>,
    watched_percent: Option<f64>,
    ctx: RequestContext,
    limits: TimestampLimits,
) -> Result<AdEvent, InputError> {
    let timestamp = match common.timestamp {
        Some(ts) => check_timestamp(ts, ctx.received_at, limits)?,
        None => ctx.received_at,
    };
    Ok(AdEvent {
        schema_version: SCHEMA_VERSION,
        kind,
        event_id: common.event_id.unwrap_or_else(Uuid::now_v7),
        ad_id: common.ad_id,
        timestamp,
        received_at: ctx.received_at,
        client_ip: ctx.client_ip,
        device_type: Some(DeviceType::of(ctx.user_agent.as_deref().unwrap_or(""))),
        browser: Some(Browser::of(ctx.user_agent.as_deref().unwrap_or(""))),
        user_agent: ctx.user_agent.map(truncate_user_agent),
        playback_time_secs,
        watched_percent,
        country: common.country,
        request_id: ctx.request_id,
        // Ingest's business, after validation: see `ingest::privacy` and `ingest::ivt`.
        visitor_id: None,
        sender_id: None,
        invalid_reason: None,
    })
}

fn truncate_user_agent(mut agent: String) -> String {
    agent.truncate(agent.floor_char_boundary(MAX_USER_AGENT_BYTES));
    agent
}

/// A client timestamp may be at most [`MAX_CLOCK_SKEW`] ahead of `now`, and no older than the
/// stream keeps events (an event the stream would not hold could never be replayed).
pub fn check_timestamp(
    ts: OffsetDateTime,
    now: OffsetDateTime,
    limits: TimestampLimits,
) -> Result<OffsetDateTime, InputError> {
    if ts > now + MAX_CLOCK_SKEW {
        return Err(InputError::invalid("timestamp", "must not be more than 5 minutes in the future"));
    }
    if ts < OffsetDateTime::UNIX_EPOCH {
        return Err(InputError::invalid("timestamp", "must not be before 1970-01-01T00:00:00Z"));
    }
    if let Some(max_age) = limits.max_age {
        if ts < now - max_age {
            return Err(InputError::invalid(
                "timestamp",
                format!("must not be older than the stream's retention ({} hours)", max_age.as_secs() / 3600),
            ));
        }
    }
    Ok(ts)
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, InputError> {
    serde_json::from_slice(body).map_err(|e| InputError::malformed(None, format!("malformed JSON: {e}")))
}

/// A JSON object whose fields are taken out one by one; what is left over is unknown.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8], allowed: &[&str]) -> Result<Self, InputError> {
        Self::from_value(parse_json(body)?, allowed)
    }

    fn from_value(value: Value, allowed: &[&str]) -> Result<Self, InputError> {
        let Value::Object(map) = value else {
            return Err(InputError::malformed(None, "body must be a JSON object"));
        };
        Self::from_map(map, allowed)
    }

    fn from_map(map: Map<String, Value>, allowed: &[&str]) -> Result<Self, InputError> {
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(InputError::malformed(
                Some(unknown),
                format!("unknown field `{unknown}`; expected one of: {}", allowed.join(", ")),
            ));
        }
        Ok(Self(map))
    }

    fn common(&mut self) -> Result<ImpressionInput, InputError> {
        let ad_id = self.uuid("ad_id")?.ok_or_else(|| InputError::invalid("ad_id", "is required"))?;
        let event_id = self.uuid("event_id")?;
        if event_id == Some(Uuid::nil()) {
            return Err(InputError::invalid("event_id", "must not be the nil UUID"));
        }
        let timestamp = match self.string("timestamp")? {
            None => None,
            Some(s) => Some(OffsetDateTime::parse(&s, &Rfc3339).map_err(|_| {
                InputError::invalid("timestamp", "must be an RFC 3339 date-time, e.g. 2026-11-22T10:15:30Z")
            })?),
        };
        let country = match self.string("country")? {
            None => None,
            Some(s) => Some(
                audience::country_code(&s)
                    .ok_or_else(|| InputError::invalid("country", "must be an ISO 3166-1 alpha-2 code, e.g. FR"))?,
            ),
        };
        Ok(ImpressionInput { event_id, ad_id, timestamp, country })
    }

    /// A present, non-null field; `null` counts as absent.
    fn take(&mut self, field: &str) -> Option<Value> {
        self.0.remove(field).filter(|v| !v.is_null())
    }

    fn string(&mut self, field: &str) -> Result<Option<String>, InputError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(field, "a string", &other)),
        }
    }

    fn uuid(&mut self, field: &str) -> Result<Option<Uuid>, InputError> {
        self.string(field)?
            .map(|s| Uuid::parse_str(&s).map_err(|_| InputError::invalid(field, "must be a UUID")))
            .transpose()
    }

    fn number_in(&mut self, field: &str, min: f64, max: f64) -> Result<Option<f64>, InputError> {
        let n = match self.take(field) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(other) => return Err(wrong_type(field, "a number", &other)),
        };
        if !(min..=max).contains(&n) {
            return Err(InputError::invalid(field, format!("must be between {min} and {max}")));
        }
        Ok(Some(n))
    }
}

pub(crate) fn wrong_type(field: &str, expected: &str, got: &Value) -> InputError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    InputError::malformed(Some(field), format!("must be {expected}, got {got}"))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const AD: &str = "a1000000-0000-4000-8000-000000000001";
    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    fn ctx() -> RequestContext {
        RequestContext { received_at: NOW, client_ip: None, user_agent: None, request_id: None }
    }

    fn limits() -> TimestampLimits {
        TimestampLimits { max_age: Some(Duration::from_secs(7 * 86_400)) }
    }

    fn click(body: &str) -> Result<AdEvent, InputError> {
        ClickInput::parse(body.as_bytes())?.into_event(ctx(), limits())
    }

    fn rejected(body: &str) -> (InputErrorKind, Option<String>) {
        let err = click(body).unwrap_err();
        (err.kind, err.field)
    }

    #[test]
    fn minimal_click_gets_id_and_receive_time() {
        let event = click(&format!(r#"{{"ad_id":"{AD}"}}"#)).unwrap();
        assert_eq!(event.ad_id.to_string(), AD);
        assert_eq!(event.timestamp, NOW);
        assert_eq!(event.event_id.get_version_num(), 7);
        assert_eq!(event.kind, EventKind::Click);
    }

    #[test]
    fn full_click_keeps_every_field() {
        let body = format!(
            r#"{{"event_id":"0190f5d2-8c1e-7a3b-9f10-2b3c4d5e6f70","ad_id":"{AD}",
                "timestamp":"2026-11-22T09:59:00+01:00","playback_time_secs":86400,"watched_percent":0}}"#
        );
        let event = click(&body).unwrap();
        assert_eq!(event.event_id.to_string(), "0190f5d2-8c1e-7a3b-9f10-2b3c4d5e6f70");
        assert_eq!(event.timestamp, datetime!(2026-11-22 08:59 UTC));
        assert_eq!(event.playback_time_secs, Some(86_400.0));
        assert_eq!(event.watched_percent, Some(0.0));
    }

    #[test]
    fn malformed_bodies_are_400s() {
        use InputErrorKind::Malformed;
        assert_eq!(rejected("{"), (Malformed, None));
        assert_eq!(rejected("[]"), (Malformed, None));
        assert_eq!(rejected(&format!(r#"{{"ad_id":"{AD}","adid":1}}"#)), (Malformed, Some("adid".into())));
        assert_eq!(rejected(r#"{"ad_id":5}"#), (Malformed, Some("ad_id".into())));
        assert_eq!(
            rejected(&format!(r#"{{"ad_id":"{AD}","watched_percent":"50"}}"#)),
            (Malformed, Some("watched_percent".into()))
        );
        // Impressions have no playback.
        let err = ImpressionInput::parse(format!(r#"{{"ad_id":"{AD}","playback_time_secs":1}}"#).as_bytes());
        assert_eq!(err.unwrap_err().field.as_deref(), Some("playback_time_secs"));
    }

    #[test]
    fn rule_violations_are_422s() {
        use InputErrorKind::Invalid;
        let field = |f: &str| (Invalid, Some(f.to_owned()));
        assert_eq!(rejected("{}"), field("ad_id"));
        assert_eq!(rejected(r#"{"ad_id":"not-a-uuid"}"#), field("ad_id"));
        assert_eq!(rejected(&format!(r#"{{"ad_id":"{AD}","event_id":"x"}}"#)), field("event_id"));
        assert_eq!(
            rejected(&format!(r#"{{"ad_id":"{AD}","event_id":"00000000-0000-0000-0000-000000000000"}}"#)),
            field("event_id")
        );
        assert_eq!(rejected(&format!(r#"{{"ad_id":"{AD}","timestamp":"yesterday"}}"#)), field("timestamp"));
        assert_eq!(rejected(&format!(r#"{{"ad_id":"{AD}","playback_time_secs":-1}}"#)), field("playback_time_secs"));
        assert_eq!(
            rejected(&format!(r#"{{"ad_id":"{AD}","playback_time_secs":86400.5}}"#)),
            field("playback_time_secs")
        );
        assert_eq!(rejected(&format!(r#"{{"ad_id":"{AD}","watched_percent":100.1}}"#)), field("watched_percent"));
    }

    #[test]
    fn timestamps_must_be_within_skew_and_retention() {
        let at = |ts: &str| click(&format!(r#"{{"ad_id":"{AD}","timestamp":"{ts}"}}"#));
        assert!(at("2026-11-22T10:05:00Z").is_ok());
        assert_eq!(at("2026-11-22T10:05:01Z").unwrap_err().field.as_deref(), Some("timestamp"));
        assert!(at("2026-11-15T10:00:00Z").is_ok());
        assert_eq!(at("2026-11-15T09:59:59Z").unwrap_err().field.as_deref(), Some("timestamp"));
        let unlimited = TimestampLimits { max_age: None };
        assert!(check_timestamp(datetime!(2000-01-01 0:00 UTC), NOW, unlimited).is_ok());
        assert!(check_timestamp(datetime!(1969-12-31 23:59:59 UTC), NOW, unlimited).is_err());
    }

    #[test]
    fn long_user_agents_are_cut_at_a_character_boundary() {
        let body = format!(r#"{{"ad_id":"{AD}"}}"#);
        let agent = "é".repeat(300); // 600 bytes
        let ctx = RequestContext { user_agent: Some(agent), ..ctx() };
        let event = ClickInput::parse(body.as_bytes()).unwrap().into_event(ctx, limits()).unwrap();
        let kept = event.user_agent.unwrap();
        assert_eq!(kept.len(), MAX_USER_AGENT_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn null_means_absent() {
        let event = click(&format!(r#"{{"ad_id":"{AD}","event_id":null,"timestamp":null}}"#)).unwrap();
        assert_eq!(event.timestamp, NOW);
    }
}
