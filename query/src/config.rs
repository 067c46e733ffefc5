//! Every setting of the query service, with its default and environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use service_kit::{ClickHouseArgs, WrittenArgs};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "query", about = "Serves ad analytics from the ClickHouse rollups.")]
pub struct Config {
    /// Listen address.
    #[arg(long, env = "QUERY_ADDR", default_value = "0.0.0.0:8081")]
    pub addr: SocketAddr,
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
    pub written: WrittenArgs,
    /// Most memory the cached answers take, all caches together (each of the five kinds of
    /// answer, and the counts of past days, gets an equal share), in MiB.
    #[arg(long, env = "CACHE_MAX_MIB", default_value_t = 64)]
    pub cache_max_mib: u64,
    /// The API key (`Authorization: Bearer <key>`). Set: every operation needs it and ads can be
    /// changed. Unset: reads are anonymous and ads cannot be changed.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.cache_ttl_ms == 0 {
            return Err("CACHE_TTL_MS must be at least 1 (caching cannot be turned off)".into());
        }
        if self.cache_past_ttl_secs == 0 {
            return Err("CACHE_PAST_TTL_SECS must be at least 1 (caching cannot be turned off)".into());
        }
        if self.cache_max_mib == 0 {
            return Err("CACHE_MAX_MIB must be at least 1".into());
        }
        if self.api_key.as_deref().is_some_and(|key| key.len() < 16) {
            return Err("API_KEY must be at least 16 characters".into());
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

    #[test]
    fn defaults_are_valid() {
        let config = Config::try_parse_from(["query"]).unwrap();
        config.validate().unwrap();
        assert_eq!(config.cache_ttl(), Duration::from_millis(250));
        let config = Config::try_parse_from(["query", "--cache-ttl-ms", "0"]).unwrap();
        assert!(config.validate().unwrap_err().contains("CACHE_TTL_MS"));
    }
}
