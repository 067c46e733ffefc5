//! ClickHouse → analytics API.
//!
//! [`api`] is the HTTP surface (poem-openapi), [`range`] turns query parameters into aligned
//! time windows, [`repo`] holds every SQL query (user input only as bound parameters), and
//! [`cache`] keeps answers for a short TTL. **Invariant:** the query service only reads.

pub mod api;
pub mod cache;
pub mod config;
pub mod error;
pub mod metrics;
pub mod range;
pub mod repo;
pub mod service;
