//! The request bodies as the spec shows them. The handlers read raw bytes (`body`) and
//! `schemas::input` validates them; these types only describe them.

use poem_openapi::{Object, Union};
use time::OffsetDateTime;
use uuid::Uuid;

/// Request bodies that reject unknown fields (400): closed objects in the spec.
pub const CLOSED_SCHEMAS: &[&str] = &["ClickRequest", "ImpressionRequest"];

/// A click. Unknown fields are rejected (400) so that a misspelt field is not silently lost.
#[derive(Object)]
#[oai(deny_unknown_fields, example)]
pub struct ClickRequest {
    /// Idempotency key. Absent: the server assigns a UUIDv7 and returns it.
    #[oai(nullable)]
    pub event_id: Option<Uuid>,
    /// A known, active ad.
    pub ad_id: Uuid,
    /// When the click happened (RFC 3339). Absent: the time the server received it. At most
    /// 5 minutes ahead of the server's clock, and no older than the stream keeps events.
    #[oai(nullable)]
    pub timestamp: Option<OffsetDateTime>,
    /// Seconds of the ad watched before the click.
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "86400")))]
    pub playback_time_secs: Option<f64>,
    /// Share of the ad watched before the click, in percent.
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "100")))]
    pub watched_percent: Option<f64>,
    /// The viewer's country, ISO 3166-1 alpha-2 (any case), for breakdowns.
    #[oai(nullable, validator(pattern = "^[A-Za-z]{2}$"))]
    pub country: Option<String>,
}

/// An impression. Unknown fields are rejected (400).
#[derive(Object)]
#[oai(deny_unknown_fields, example)]
pub struct ImpressionRequest {
    /// Idempotency key. Absent: the server assigns a UUIDv7 and returns it.
    #[oai(nullable)]
    pub event_id: Option<Uuid>,
    /// A known, active ad.
    pub ad_id: Uuid,
    /// When the ad was shown (RFC 3339); same rules as for clicks.
    #[oai(nullable)]
    pub timestamp: Option<OffsetDateTime>,
    /// The viewer's country, ISO 3166-1 alpha-2 (any case), for breakdowns.
    #[oai(nullable, validator(pattern = "^[A-Za-z]{2}$"))]
    pub country: Option<String>,
}

/// One event of a batch: a click or an impression, told apart by `type`.
#[derive(Union)]
#[oai(discriminator_name = "type")]
pub enum BatchEvent {
    #[oai(mapping = "click")]
    Click(ClickRequest),
    #[oai(mapping = "impression")]
    Impression(ImpressionRequest),
}
