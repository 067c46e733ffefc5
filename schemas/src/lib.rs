//! The ad-event contract shared by every service.
//!
//! - [`audience`]: device type and browser from the user agent, and countries, for breakdowns.
//! - [`input`]: what clients send over HTTP, parsed and validated here and nowhere else;
//!   [`batch`]: the same, many events per request.
//! - [`event`]: what travels through NATS JetStream (versioned JSON, readable with the `nats` CLI).
//! - [`ivt`]: why an event is invalid traffic (flagged, stored apart, never billed).
//! - [`stream`]: stream and subject names.
//! - [`rows`]: the ClickHouse row types the aggregator writes and the query service reads.
//!
//! Changing a wire type is a contract change: bump [`event::SCHEMA_VERSION`] and keep the
//! fixtures under `schemas/test-data/` parsing.

pub mod audience;
pub mod batch;
pub mod event;
pub mod input;
pub mod ivt;
pub mod rows;
pub mod stream;

pub use event::{AdEvent, EventKind, SCHEMA_VERSION};
pub use input::{ClickInput, ImpressionInput, InputError, InputErrorKind};
