//! Every setting of ingest, with its default and environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use service_kit::limits::ConnectionArgs;
use service_kit::{CatalogArgs, ClickHouseArgs, NatsArgs};

/// Default of `MAX_BODY_BYTES`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// Default of `MAX_BATCH_BODY_BYTES`.
pub const DEFAULT_MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;
/// Default of `SPOOL_MAX_BYTES`: about three million events.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default of `BODY_READ_TIMEOUT_SECS`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ingest", about = "Accepts ad clicks and impressions over HTTP into NATS JetStream.")]
pub struct Config {
    /// Listen address.
    #[arg(long, env = "INGEST_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    /// Where `/metrics` is served (with `/healthz` and `/readyz`): for Prometheus, not clients.
    #[arg(long, env = "INGEST_ADMIN_ADDR", default_value = "0.0.0.0:8090")]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', default_value = "")]
    pub trusted_proxies: Vec<String>,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// How long to wait for JetStream's ack before answering 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
    /// Single-event messages awaiting JetStream's ack at once; events arriving while all are
    /// busy are published together in one message (group commit). 1 groups the most, which
    /// measured fastest under load (BENCHMARKS.md).
    #[arg(long, env = "PUBLISH_MAX_IN_FLIGHT", default_value_t = 1)]
    pub publish_max_in_flight: usize,
    /// Largest request body accepted.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest `POST /ads/events` body accepted.
    #[arg(long, env = "MAX_BATCH_BODY_BYTES", default_value_t = DEFAULT_MAX_BATCH_BODY_BYTES)]
    pub max_batch_body_bytes: usize,
    /// Bytes of `POST /ads/events` bodies held at once, every client together; a batch that
    /// would pass it gets 429 with `Retry-After: 1`. Bounds ingest's memory under a flood of
    /// large batches.
    #[arg(long, env = "MAX_BATCH_BYTES_IN_FLIGHT", default_value_t = DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT)]
    pub max_batch_bytes_in_flight: usize,
    /// Seconds an event request's body may take to arrive, whole; a client trickling it gets
    /// 408 and the connection is closed. A 1 MiB batch at 1 Mbit/s takes 8 s.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = DEFAULT_BODY_READ_TIMEOUT.as_secs())]
    pub body_read_timeout_secs: u64,
    /// Most events in one `POST /ads/events`.
    #[arg(long, env = "MAX_BATCH_EVENTS", default_value_t = 1_000)]
    pub max_batch_events: usize,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Events per second one client IP may send (0: no limit); more gets 429. High enough for
    /// thousands of viewers behind one carrier-NAT address, low enough that one machine cannot
    /// flood the stream. `make run` turns it off: load tests come from one address.
    #[arg(long, env = "RATE_LIMIT_PER_IP", default_value_t = 1_000)]
    pub rate_limit_per_ip: u32,
    /// Events one client IP may send in a burst above its rate (default: one second's worth).
    #[arg(long, env = "RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Web origins (`https://publisher.example`, comma-separated) whose pages may send events
    /// from the browser (`fetch`, `sendBeacon`): their CORS preflights are answered. Empty: no
    /// cross-origin requests.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// The secret behind visitor ids (keyed daily hashes of IP and user agent; docs/api.md,
    /// "Privacy"): at least 16 characters, the same on every ingest replica, kept secret.
    /// Changing it makes every visitor new from then on.
    #[arg(long, env = "VISITOR_HASH_SECRET", hide_env_values = true)]
    pub visitor_hash_secret: String,
    /// The key every message ingest publishes is signed with (`Ads-Signature`), shared with
    /// the aggregator, which counts signed messages only: at least 16 characters, kept secret.
    #[arg(long, env = "EVENT_SIGNING_KEY", hide_env_values = true)]
    pub event_signing_key: String,
    /// Where redirects and pixels keep the events JetStream does not confirm, until they are
    /// replayed (a browser never sends them again). Must survive a restart of ingest, and belong
    /// to one ingest process.
    #[arg(long, env = "SPOOL_DIR", default_value = "ingest-spool")]
    pub spool_dir: std::path::PathBuf,
    /// Bytes of events the spool holds at most (about 300 bytes each); past it a redirect's or
    /// pixel's event is lost, and counted in `ingest_tracking_unrecorded_total{reason="spool_full"}`.
    #[arg(long, env = "SPOOL_MAX_BYTES", default_value_t = DEFAULT_SPOOL_MAX_BYTES)]
    pub spool_max_bytes: u64,
    /// Store client IPs whole instead of truncated to their /24 (IPv4) or /48 (IPv6).
    #[arg(long, env = "KEEP_RAW_IPS", default_value_t = false)]
    pub keep_raw_ips: bool,
    /// Data-centre address ranges (CIDRs or addresses, comma-separated): events from them are
    /// flagged `datacenter_ip` (invalid traffic, never billed).
    #[arg(long, env = "IVT_DATACENTER_RANGES", default_value = "")]
    pub ivt_datacenter_ranges: String,
    /// A file of more data-centre ranges, one CIDR per line (`#` comments), e.g. a cloud
    /// provider's published list. Read at start.
    #[arg(long, env = "IVT_DATACENTER_RANGES_FILE")]
    pub ivt_datacenter_ranges_file: Option<std::path::PathBuf>,
}

impl Config {
    /// Fails fast with the name of the variable that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.clickhouse.validate()?;
        self.nats.login.validate()?;
        self.trusted_proxy_nets()?;
        self.datacenter_ranges()?;
        if self.visitor_hash_secret.chars().count() < 16 {
            return Err("VISITOR_HASH_SECRET must be at least 16 characters (e.g. `openssl rand -hex 32`)".into());
        }
        self.signing_key()?;
        self.catalog.validate()?;
        if let Some(origin) = self
            .cors_allowed_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
        {
            return Err(format!("CORS_ALLOWED_ORIGINS: {origin:?} is not an origin (scheme://host[:port], no path)"));
        }
        if self.publish_timeout_ms == 0 {
            return Err("PUBLISH_TIMEOUT_MS must be at least 1".into());
        }
        if self.max_body_bytes == 0 {
            return Err("MAX_BODY_BYTES must be at least 1".into());
        }
        if self.publish_max_in_flight == 0 {
            return Err("PUBLISH_MAX_IN_FLIGHT must be at least 1".into());
        }
        if self.max_batch_bytes_in_flight < self.max_batch_body_bytes {
            return Err("MAX_BATCH_BYTES_IN_FLIGHT must be at least MAX_BATCH_BODY_BYTES".into());
        }
        if self.max_batch_body_bytes == 0 {
            return Err("MAX_BATCH_BODY_BYTES must be at least 1".into());
        }
        if self.max_batch_events == 0 {
            return Err("MAX_BATCH_EVENTS must be at least 1".into());
        }
        if self.body_read_timeout_secs == 0 {
            return Err("BODY_READ_TIMEOUT_SECS must be at least 1".into());
        }
        self.connections.validate()?;
        if self.rate_limit_burst == Some(0) {
            return Err("RATE_LIMIT_BURST must be at least 1".into());
        }
        Ok(())
    }

    pub fn trusted_proxy_nets(&self) -> Result<Vec<IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("TRUSTED_PROXIES: {s:?} is not an IP address or CIDR"))
            })
            .collect()
    }

    /// `IVT_DATACENTER_RANGES` and the ranges in `IVT_DATACENTER_RANGES_FILE`.
    pub fn datacenter_ranges(&self) -> Result<Vec<IpNet>, String> {
        let mut ranges = crate::ivt::parse_ranges(&self.ivt_datacenter_ranges, "IVT_DATACENTER_RANGES")?;
        if let Some(path) = &self.ivt_datacenter_ranges_file {
            let source = format!("IVT_DATACENTER_RANGES_FILE {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| format!("{source}: {e}"))?;
            ranges.extend(crate::ivt::parse_ranges(&text, &source)?);
        }
        Ok(ranges)
    }

    pub fn signing_key(&self) -> Result<schemas::stream::SigningKey, String> {
        schemas::stream::SigningKey::new(&self.event_signing_key)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const REQUIRED: [&str; 10] = [
        "--visitor-hash-secret",
        "0123456789abcdef",
        "--event-signing-key",
        "fedcba9876543210",
        "--clickhouse-password",
        "ingest-password",
        "--nats-user",
        "adtrack_ingest",
        "--nats-password",
        "nats-password",
    ];

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(["ingest"].iter().chain(&REQUIRED).chain(args)).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]);
        config.validate().unwrap();
        assert_eq!(config.max_body_bytes, 16 * 1024);
        assert!(config.trusted_proxy_nets().unwrap().is_empty());
        assert!(config.datacenter_ranges().unwrap().is_empty());
        assert!(!config.keep_raw_ips);
        assert_eq!(config.rate_limit_per_ip, 1_000, "deployments are rate-limited unless they say otherwise");
    }

    #[test]
    fn trusted_proxies_take_ips_and_cidrs() {
        let config = parse(&["--trusted-proxies", "10.0.0.0/8, 127.0.0.1"]);
        assert_eq!(config.trusted_proxy_nets().unwrap().len(), 2);
        let config = parse(&["--trusted-proxies", "nope"]);
        assert!(config.validate().unwrap_err().contains("TRUSTED_PROXIES"));
    }

    #[test]
    fn the_secrets_are_required_and_not_short() {
        let error = Config::try_parse_from(["ingest"]).unwrap_err().to_string();
        assert!(error.contains("VISITOR_HASH_SECRET") || error.contains("--visitor-hash-secret"), "{error}");
        let logins = ["ingest", "--clickhouse-password", "x", "--nats-user", "u", "--nats-password", "p"];
        let with = |secrets: [&str; 4]| Config::try_parse_from(logins.iter().chain(&secrets)).unwrap().validate();
        let error = with(["--visitor-hash-secret", "short", "--event-signing-key", "0123456789abcdef"]).unwrap_err();
        assert!(error.contains("VISITOR_HASH_SECRET"), "{error}");
        let error = with(["--visitor-hash-secret", "0123456789abcdef", "--event-signing-key", "short"]).unwrap_err();
        assert!(error.contains("EVENT_SIGNING_KEY"), "{error}");
        with(["--visitor-hash-secret", "0123456789abcdef", "--event-signing-key", "0123456789abcdef"]).unwrap();
    }

    #[test]
    fn clickhouse_and_nats_credentials_are_required() {
        let secrets = ["--visitor-hash-secret", "0123456789abcdef", "--event-signing-key", "0123456789abcdef"];
        let config = Config::try_parse_from(["ingest"].iter().chain(&secrets).chain(&[
            "--nats-user",
            "u",
            "--nats-password",
            "p",
        ]))
        .unwrap();
        assert!(config.validate().unwrap_err().contains("CLICKHOUSE_PASSWORD"));
        let config =
            Config::try_parse_from(["ingest"].iter().chain(&secrets).chain(&["--clickhouse-password", "x"])).unwrap();
        assert!(config.validate().unwrap_err().contains("NATS_PASSWORD"));
    }

    #[test]
    fn datacenter_ranges_come_from_the_setting_and_the_file() {
        let file = std::env::temp_dir().join(format!("dc-ranges-{}.txt", std::process::id()));
        std::fs::write(&file, "# a provider\n192.0.2.0/24\n2001:db8::/32\n").unwrap();
        let config = parse(&[
            "--ivt-datacenter-ranges",
            "198.51.100.0/24",
            "--ivt-datacenter-ranges-file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(config.datacenter_ranges().unwrap().len(), 3);
        std::fs::write(&file, "192.0.2.0/33\n").unwrap();
        assert!(config.validate().unwrap_err().contains("IVT_DATACENTER_RANGES_FILE"));
        std::fs::remove_file(&file).unwrap();
        let missing = parse(&["--ivt-datacenter-ranges-file", "/nonexistent/ranges.txt"]);
        assert!(missing.validate().unwrap_err().contains("/nonexistent/ranges.txt"));
    }
}
