//! HTTP → JetStream.
//!
//! [`http`] parses requests (poem-openapi), [`schemas::input`] validates them,
//! [`service_kit::catalog`] checks the ad exists and is active, [`publisher`] publishes and waits for JetStream's ack
//! ([`coalesce`] groups concurrent single-event requests into few messages).
//! **Invariant:** 202 is answered only after JetStream acknowledged the message.

pub mod client_ip;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod publisher;
pub mod service;
pub mod tracking;
