//! HTTP → JetStream.
//!
//! [`http`] parses requests (poem-openapi), [`schemas::input`] validates them,
//! [`service_kit::catalog`] checks the ad exists and is active, [`publisher`] publishes and waits for JetStream's ack
//! ([`coalesce`] groups concurrent single-event requests into few messages). Before publishing,
//! [`ivt`] flags what a request shows of invalid traffic and [`privacy`] replaces who sent it
//! with a daily visitor id and a truncated IP. [`spool`] keeps, on disk, the redirect and pixel
//! events JetStream did not confirm, and replays them. [`demo`] is the demo ad player page.
//! **Invariant:** 202 is answered only after JetStream acknowledged the message.

pub mod client_ip;
pub mod coalesce;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod ivt;
pub mod metrics;
pub mod privacy;
pub mod publisher;
pub mod service;
pub mod spool;
pub mod tracking;
