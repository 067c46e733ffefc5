//! JetStream names. Subjects are `<prefix>.click` and `<prefix>.impression` so an operator can
//! replay one kind with `nats consumer add --filter ads.events.click`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::EventKind;

/// Default name of the stream that holds every accepted event (the source of truth).
pub const DEFAULT_STREAM: &str = "AD_EVENTS";
/// Default subject prefix; the stream captures `<prefix>.>`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "ads.events";
/// Default durable consumer name of the aggregator.
pub const DEFAULT_CONSUMER: &str = "aggregator";

/// Header carrying the event's schema version, so tools can route without parsing the body.
pub const SCHEMA_VERSION_HEADER: &str = "Ads-Schema-Version";

/// Header carrying the id of the HTTP request whose events a message holds, when they all came
/// in one request (a single event, or a batch); each event also carries it as `request_id`.
pub const REQUEST_ID_HEADER: &str = "Ads-Request-Id";

/// Header carrying the signature of a message's payload: `v1=` and the hex HMAC-SHA256 of the
/// payload under `EVENT_SIGNING_KEY`, which ingest and the aggregator share. The aggregator
/// counts only signed messages, so what is counted came through ingest's rules: a message put
/// in the stream by anything else cannot choose its own visitor, sender or billable status.
pub const SIGNATURE_HEADER: &str = "Ads-Signature";

/// The shared key behind [`SIGNATURE_HEADER`].
#[derive(Clone)]
pub struct SigningKey(ring::hmac::Key);

/// Why a message's signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Ads-Signature header")]
    Missing,
    #[error("Ads-Signature is not `v1=` and 64 hex digits")]
    Malformed,
    #[error("Ads-Signature does not match the payload")]
    Mismatch,
}

impl SigningKey {
    /// The key `EVENT_SIGNING_KEY` names: at least 16 characters.
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.chars().count() < 16 {
            return Err("EVENT_SIGNING_KEY must be at least 16 characters (e.g. `openssl rand -hex 32`)".into());
        }
        Ok(Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes())))
    }

    /// The value of [`SIGNATURE_HEADER`] for `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        format!("v1={}", hex::encode(ring::hmac::sign(&self.0, payload)))
    }

    /// Whether `header` signs `payload` (compared in constant time).
    pub fn verify(&self, payload: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let tag =
            header.strip_prefix("v1=").and_then(|digits| hex::decode(digits).ok()).ok_or(SignatureError::Malformed)?;
        ring::hmac::verify(&self.0, payload, &tag).map_err(|_| SignatureError::Mismatch)
    }
}

/// Default core-NATS subject (not a stream's) on which the aggregator announces each write to
/// ClickHouse, so that the query service drops the answers it made stale. It must stay outside
/// the stream's `<prefix>.>`: it is a signal, not an event.
pub const DEFAULT_WRITTEN_SUBJECT: &str = "ads.written";

/// The body of a write announcement (JSON), also for operators watching with
/// `nats sub ads.written`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenNotice {
    /// Rows the write added to the raw tables (billable and flagged); 0 for a write of derived
    /// numbers only (the closed days' stored unique visitors).
    pub events: u64,
    /// The newest stream sequence among the messages written; 0 when none was.
    pub last_stream_seq: u64,
    /// The earliest event `timestamp` the write may have changed a count at, in unix
    /// milliseconds: counts over time before it stay as they were, so the query service keeps
    /// those cached. Absent: any time may have changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_timestamp_ms: Option<i64>,
}

impl WrittenNotice {
    /// The notice of a write of `events` rows up to stream sequence `last_stream_seq`, whose
    /// earliest event time is `earliest`.
    pub fn new(events: u64, last_stream_seq: u64, earliest: Option<OffsetDateTime>) -> Self {
        let earliest_timestamp_ms =
            earliest.map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX));
        Self { events, last_stream_seq, earliest_timestamp_ms }
    }

    /// `earliest_timestamp_ms` as a time; `None` when absent (or out of range): any time.
    pub fn earliest_timestamp(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.earliest_timestamp_ms?) * 1_000_000).ok()
    }
}

/// Whether a core-NATS `subject` would be captured by the stream of `prefix` (`<prefix>.>`).
pub fn captured_by_stream(prefix: &str, subject: &str) -> bool {
    subject.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
}

/// The subject an event of `kind` is published on.
pub fn subject(prefix: &str, kind: EventKind) -> String {
    format!("{prefix}.{}", kind.as_str())
}

/// The wildcard the stream captures.
pub fn stream_subjects(prefix: &str) -> String {
    format!("{prefix}.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_prefix() {
        assert_eq!(subject("ads.events", EventKind::Click), "ads.events.click");
        assert_eq!(subject("x", EventKind::Impression), "x.impression");
        assert_eq!(stream_subjects("ads.events"), "ads.events.>");
    }

    #[test]
    fn a_notice_without_its_earliest_timestamp_reads_as_touching_any_time() {
        let older: WrittenNotice =
            serde_json::from_str(r#"{"events":3,"last_stream_seq":9}"#).expect("an older aggregator's notice");
        assert_eq!(older, WrittenNotice { events: 3, last_stream_seq: 9, earliest_timestamp_ms: None });
        let notice = WrittenNotice { events: 1, last_stream_seq: 2, earliest_timestamp_ms: Some(1_700_000_000_000) };
        let json = serde_json::to_string(&notice).expect("encode");
        assert_eq!(json, r#"{"events":1,"last_stream_seq":2,"earliest_timestamp_ms":1700000000000}"#);
        assert_eq!(serde_json::from_str::<WrittenNotice>(&json).expect("decode"), notice);
        let at = time::macros::datetime!(2023-11-14 22:13:20.123 UTC);
        assert_eq!(WrittenNotice::new(1, 2, Some(at)).earliest_timestamp(), Some(at));
        assert_eq!(older.earliest_timestamp(), None);
    }

    #[test]
    fn a_signature_holds_for_its_payload_and_key_only() {
        let key = SigningKey::new("a signing key of some length").expect("key");
        let signature = key.sign(b"{\"kind\":\"click\"}");
        assert!(signature.starts_with("v1=") && signature.len() == 3 + 64, "{signature}");
        assert_eq!(key.verify(b"{\"kind\":\"click\"}", Some(&signature)), Ok(()));
        assert_eq!(key.verify(b"{\"kind\":\"impression\"}", Some(&signature)), Err(SignatureError::Mismatch));
        let other = SigningKey::new("another key entirely, as long").expect("key");
        assert_eq!(other.verify(b"{\"kind\":\"click\"}", Some(&signature)), Err(SignatureError::Mismatch));
        assert_eq!(key.verify(b"x", None), Err(SignatureError::Missing));
        assert_eq!(key.verify(b"x", Some("v2=00")), Err(SignatureError::Malformed));
        assert_eq!(key.verify(b"x", Some("v1=not hex")), Err(SignatureError::Malformed));
        assert!(SigningKey::new("short").is_err());
    }

    #[test]
    fn the_written_subject_is_outside_the_default_stream() {
        assert!(!captured_by_stream(DEFAULT_SUBJECT_PREFIX, DEFAULT_WRITTEN_SUBJECT));
        assert!(captured_by_stream("ads", DEFAULT_WRITTEN_SUBJECT));
        assert!(!captured_by_stream("ads.events", "ads.eventsx"));
        assert!(!captured_by_stream("ads.events", "ads.events."));
    }
}
