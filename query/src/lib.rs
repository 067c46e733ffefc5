//! ClickHouse → analytics API.
//!
//! [`api`] is the HTTP surface (poem-openapi), [`range`] turns query parameters into aligned
//! time windows, [`ranking`] picks top-N ads by a metric, [`breakdown`] groups by campaign or
//! audience, [`repo`] holds every SQL query (user input only as bound parameters), [`counts`]
//! reads a window in pieces and keeps the past ones cached, [`cache`] keeps answers for a short
//! TTL, [`written`] drops them when the aggregator announces a write; [`catalog`] checks changes
//! to the ad catalog and [`auth`] the API key; [`dashboard`] is the live dashboard page.
//! **Invariant:** the only writes are new versions of `ads` rows.

pub mod api;
pub mod auth;
pub mod breakdown;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod counts;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod range;
pub mod ranking;
pub mod repo;
pub mod service;
pub mod written;
