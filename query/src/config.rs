//! Every setting of the query service, with its default and environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use service_kit::limits::ConnectionArgs;
use service_kit::{ClickHouseArgs, NatsLogin, WrittenArgs};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "query", about = "Serves ad analytics from the ClickHouse rollups.")]
pub struct Config {
    /// Listen address.
    #[arg(long, env = "QUERY_ADDR", default_value = "0.0.0.0:8081")]
    pub addr: SocketAddr,
    /// Where `/metrics` is served (with `/healthz` and `/readyz`): for Prometheus, not clients.
    #[arg(long, env = "QUERY_ADMIN_ADDR", default_value = "0.0.0.0:8091")]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// How long an answer is reused at most. Answers are also dropped whenever the aggregator
    /// announces a write (`NATS_WRITTEN_SUBJECT`); the TTL bounds their age when announcements
    /// do not arrive.
    #[arg(long, env = "CACHE_TTL_MS", default_value_t = 250)]
    pub cache_ttl_ms: u64,
    /// How long the counts of time before the current UTC day are reused at most. Only a late
    /// event changes them, and the announcement of its write drops them at once; this TTL bounds
    /// their age when an announcement does not arrive.
    #[arg(long, env = "CACHE_PAST_TTL_SECS", default_value_t = 60)]
    pub cache_past_ttl_secs: u64,
    /// NATS server URL (comma-separated for a cluster), only to hear the aggregator's write
    /// announcements: answers are served without it, and it is retried in the background.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    #[command(flatten)]
    pub nats_login: NatsLogin,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub written: WrittenArgs,
    /// Most memory the cached answers take, all caches together (each of the five kinds of
    /// answer, and the counts of past days, gets an equal share), in MiB.
    #[arg(long, env = "CACHE_MAX_MIB", default_value_t = 64)]
    pub cache_max_mib: u64,
    /// Admin API keys (`Authorization: Bearer <key>`), comma-separated: each reads and changes
    /// ads. Several let a new key be given out before the old one is removed. None: ads cannot be
    /// changed.
    #[arg(long = "api-key", env = "API_KEY", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Read-only API keys, comma-separated: each reads analytics and the catalog.
    #[arg(long, env = "READ_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub read_api_keys: Vec<String>,
    /// Serve reads to anyone who reaches the service, without a key. Off, the service refuses to
    /// start without a key; `make run` turns it on, as it listens on loopback only.
    #[arg(long, env = "ANONYMOUS_READS", default_value_t = false)]
    pub anonymous_reads: bool,
    /// Requests per second one caller may make (0: no limit); more gets 429 before anything of
    /// the request is read. A caller is its API key, or its address for anonymous reads. A
    /// dashboard refresh is about six requests. `make run` turns it off: load tests share one
    /// address.
    #[arg(long, env = "RATE_LIMIT_PER_CALLER", default_value_t = 50)]
    pub rate_limit_per_caller: u32,
    /// Requests one caller may make at once above its rate (default: one second's worth).
    #[arg(long, env = "RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Days the audience rollups keep a row (the aggregator's `migrate` applies it; give both the
    /// same value): breakdowns reach no further back, and `timeframe=all` starts there.
    #[arg(long, env = "AUDIENCE_TTL_DAYS", default_value_t = schemas::rows::DEFAULT_AUDIENCE_TTL_DAYS)]
    pub audience_ttl_days: u32,
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        self.clickhouse.validate()?;
        self.nats_login.validate()?;
        self.connections.validate()?;
        if self.cache_ttl_ms == 0 {
            return Err("CACHE_TTL_MS must be at least 1 (caching cannot be turned off)".into());
        }
        if self.cache_past_ttl_secs == 0 {
            return Err("CACHE_PAST_TTL_SECS must be at least 1 (caching cannot be turned off)".into());
        }
        if self.cache_max_mib == 0 {
            return Err("CACHE_MAX_MIB must be at least 1".into());
        }
        if self.rate_limit_burst == Some(0) {
            return Err("RATE_LIMIT_BURST must be at least 1".into());
        }
        if self.api_keys.iter().any(|key| key.len() < 16) {
            return Err("API_KEY: each key must have at least 16 characters".into());
        }
        if self.read_api_keys.iter().any(|key| key.len() < 16) {
            return Err("READ_API_KEYS: each key must have at least 16 characters".into());
        }
        if self.api_keys.is_empty() && self.read_api_keys.is_empty() && !self.anonymous_reads {
            return Err("no API key: set API_KEY (admin keys) or READ_API_KEYS, or ANONYMOUS_READS=true to serve \
                        analytics to anyone who can reach the service"
                .into());
        }
        Ok(())
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }

    pub fn cache_past_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_past_ttl_secs)
    }

    /// The whole cache budget in bytes.
    pub fn cache_max_bytes(&self) -> u64 {
        self.cache_max_mib.saturating_mul(1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(
            [
                "query",
                "--clickhouse-password",
                "query-password",
                "--nats-user",
                "adtrack_query",
                "--nats-password",
                "nats-password",
            ]
            .iter()
            .chain(args),
        )
        .unwrap()
    }

    #[test]
    fn defaults_are_valid_once_a_key_or_anonymous_reads_is_given() {
        let config = parse(&["--anonymous-reads"]);
        config.validate().unwrap();
        assert_eq!(config.cache_ttl(), Duration::from_millis(250));
        let config = parse(&["--anonymous-reads", "--cache-ttl-ms", "0"]);
        assert!(config.validate().unwrap_err().contains("CACHE_TTL_MS"));
    }

    #[test]
    fn without_a_key_the_service_refuses_to_start_unless_reads_are_open() {
        let config = parse(&[]);
        assert!(config.validate().unwrap_err().contains("ANONYMOUS_READS=true"));
        let config = parse(&["--read-api-keys", "reader-key-0123456789"]);
        config.validate().unwrap();
        let config = parse(&["--api-key", "admin-key-old-0123456,admin-key-new-0123456"]);
        assert_eq!(config.api_keys.len(), 2);
        config.validate().unwrap();
        let config = parse(&["--api-key", "admin-key-old-0123456,short"]);
        assert!(config.validate().unwrap_err().contains("16 characters"));
    }
}
