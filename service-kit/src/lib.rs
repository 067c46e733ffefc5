//! What the three services share, so each `main.rs` reads as its data path: connection settings
//! ([`nats`], [`database`]), a service's life ([`run`]: configuration, JSON logging, the
//! shutdown signal), the `/healthz`, `/readyz` and `/metrics` endpoints ([`health`]), and
//! [`Problem`], the one error shape.

pub mod catalog;
pub mod database;
pub mod health;
pub mod http_metrics;
pub mod limits;
pub mod nats;
pub mod operations;
pub mod problem;
pub mod rate;
pub mod request_id;
pub mod run;
pub mod spec;
pub mod web;

pub use self::catalog::CatalogArgs;
pub use self::database::ClickHouseArgs;
pub use self::health::{
    clickhouse_check, nats_check, readiness_check, serve_admin, spec_endpoint, with_health_routes, with_ops_routes,
    ReadinessCheck,
};
pub use self::nats::{before_exit, connect_nats, flush_before_exit, NatsArgs, NatsLogin, WrittenArgs};
pub use self::problem::{parameter_problem, problem_for_error, Problem, PROBLEM_JSON};
pub use self::run::{init_logging, run_service, shutdown_signal};
