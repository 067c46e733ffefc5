//! JetStream → ClickHouse.
//!
//! [`consumer`] pulls batches from the durable consumer, [`sink`] writes them to the raw tables
//! (whose materialized views feed the rollups) and only then are the messages acked; [`ivt`]
//! flags the clicks that need a visitor's history to be recognised as invalid traffic.
//! [`dead_letter`] keeps what can never become a row ([`error`] says what that is and what is
//! retried), [`setup`] creates the stream and consumer, [`migrate`] the ClickHouse schema,
//! [`lag`] samples how far the consumer is behind, [`written`] tells the query service after
//! each write that its cached answers are stale, [`closed_days`] stores the unique visitors of
//! each closed UTC day for the query service.

pub mod backoff;
pub mod closed_days;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod error;
pub mod ivt;
pub mod lag;
pub mod metrics;
pub mod migrate;
pub mod rebuild;
pub mod setup;
pub mod sink;
pub mod written;
