//! Every setting of the aggregator, with its default and environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use service_kit::{CatalogArgs, ClickHouseArgs, NatsArgs, WrittenArgs};

use crate::closed_days::ClosedDaysArgs;
use crate::dead_letter::DeadLetterArgs;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "aggregator", about = "Consumes ad events from JetStream into ClickHouse, exactly once.")]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub dead_letters: DeadLetterArgs,
    #[command(flatten)]
    pub written: WrittenArgs,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub invalid_traffic: InvalidTrafficArgs,
    #[command(flatten)]
    pub closed_days: ClosedDaysArgs,
    /// Days the raw event tables (`click_events`, `impression_events`, `invalid_events`) keep
    /// a row, by its `timestamp`; the rollups keep their counts for good. 0 keeps rows forever.
    /// Applied by `migrate` as the tables' ClickHouse TTL; the closed-days job reads it too.
    #[arg(long, env = "RAW_EVENTS_TTL_DAYS", default_value_t = 90)]
    pub raw_events_ttl_days: u32,
    /// Days the audience rollups (`click_audience_per_hour`, `..._per_day`, and the impressions'
    /// : breakdowns by device, browser and country, with their visitor-id states) keep a row,
    /// by its hour or day. 0 keeps them forever. Applied by `migrate`; the query service reads
    /// it too, to refuse breakdowns of what is gone.
    #[arg(long, env = "AUDIENCE_TTL_DAYS", default_value_t = schemas::rows::DEFAULT_AUDIENCE_TTL_DAYS)]
    pub audience_ttl_days: u32,
    /// The key ingest signs every message with (`Ads-Signature`): the aggregator counts signed
    /// messages only. Required to consume; `migrate`, `rebuild` and `dead-letters` do without.
    #[arg(long, env = "EVENT_SIGNING_KEY", hide_env_values = true)]
    pub event_signing_key: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "AGGREGATOR_ADDR", default_value = "0.0.0.0:8082")]
    pub addr: SocketAddr,
    /// After SIGTERM, how long the batch in hand may take to be written and acked.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Consume the stream into ClickHouse (the default).
    Run,
    /// Create the stream, the consumer and the ClickHouse schema, and apply RAW_EVENTS_TTL_DAYS,
    /// then exit. Needs a ClickHouse user that may change the schema; the aggregator's own may not.
    Migrate {
        /// Also load the sample ads from clickhouse/seed.sql.
        #[arg(long)]
        seed: bool,
    },
    /// Recompute ClickHouse from the stream: drop the event tables and rollups (not the ads
    /// catalog), recreate them, and reset the consumer to the stream's start. Stop every
    /// running aggregator first; start one afterwards to re-read the stream.
    Rebuild,
    /// Inspect or re-drive the messages the aggregator could not count.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLetterCommand {
    /// Print each dead letter as a JSON line (sequence, reason, detail, headers, payload).
    List {
        /// Only this reason: bad_json, unknown_schema_version, unknown_ad.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Publish dead letters back to their original subject (after fixing the cause).
    Redrive {
        /// Only this reason: bad_json, unknown_schema_version, unknown_ad.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// How the stream is created. Changing these on an existing stream updates it.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// How long the stream keeps events (the window for replays and rebuilds).
    #[arg(long, env = "STREAM_MAX_AGE_SECS", default_value_t = 30 * 86_400)]
    pub stream_max_age_secs: u64,
    /// How long JetStream remembers an event_id to drop a second publish of it.
    #[arg(long, env = "STREAM_DUPLICATE_WINDOW_SECS", default_value_t = 600)]
    pub stream_duplicate_window_secs: u64,
    /// Copies of the stream kept by a NATS cluster (3 survives losing a node; 1 for a single
    /// server).
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// Most bytes the stream keeps (per replica). When it is full, JetStream refuses new
    /// events, which ingest answers with 503 and `Retry-After`: nothing stored is dropped to
    /// make room, since the aggregator may not have read it yet. `EventStreamFilling` alerts at
    /// 80 %. Size it for STREAM_MAX_AGE_SECS of traffic, or lower that.
    #[arg(long, env = "STREAM_MAX_BYTES", default_value_t = 10 * 1024 * 1024 * 1024)]
    pub stream_max_bytes: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Durable consumer name; aggregators sharing it share the work.
    #[arg(long, env = "NATS_CONSUMER", default_value = schemas::stream::DEFAULT_CONSUMER)]
    pub nats_consumer: String,
    /// Flush a batch to ClickHouse once it holds this many messages...
    #[arg(long, env = "BATCH_MAX_MESSAGES", default_value_t = 10_000)]
    pub batch_max_messages: usize,
    /// ...or this many bytes of messages (a batch message holds up to 1,000 events). At least
    /// the NATS server's `max_payload`, or a large message could never be pulled...
    #[arg(long, env = "BATCH_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub batch_max_bytes: usize,
    /// ...or once this long has passed since the previous batch was pulled.
    #[arg(long, env = "BATCH_MAX_WAIT_MS", default_value_t = 200)]
    pub batch_max_wait_ms: u64,
    /// How long JetStream waits for an ack before redelivering a message.
    #[arg(long, env = "ACK_WAIT_SECS", default_value_t = 60)]
    pub ack_wait_secs: u64,
}

/// The invalid-traffic rules that need the visitor's history (ingest applies the others).
#[derive(Debug, Clone, clap::Args)]
pub struct InvalidTrafficArgs {
    /// A click by the same visitor on the same ad within this many seconds of their previous
    /// click is flagged `duplicate_click`. 0 turns the rule off.
    #[arg(long, env = "IVT_DUPLICATE_CLICK_WINDOW_SECS", default_value_t = 30)]
    pub ivt_duplicate_click_window_secs: u64,
    /// A click whose visitor was not shown that ad within this many seconds before is flagged
    /// `click_without_impression`. 0 turns the rule off.
    #[arg(long, env = "IVT_CLICK_IMPRESSION_WINDOW_SECS", default_value_t = 3_600)]
    pub ivt_click_impression_window_secs: u64,
}

impl InvalidTrafficArgs {
    pub fn duplicate_click_window(&self) -> Option<Duration> {
        (self.ivt_duplicate_click_window_secs > 0).then(|| Duration::from_secs(self.ivt_duplicate_click_window_secs))
    }
    pub fn click_impression_window(&self) -> Option<Duration> {
        (self.ivt_click_impression_window_secs > 0).then(|| Duration::from_secs(self.ivt_click_impression_window_secs))
    }
}

impl StreamArgs {
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.stream_max_age_secs)
    }
    pub fn duplicate_window(&self) -> Duration {
        Duration::from_secs(self.stream_duplicate_window_secs)
    }
}

impl ConsumerArgs {
    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }
}

impl Config {
    /// The key messages are signed with: required to consume them.
    pub fn signing_key(&self) -> Result<schemas::stream::SigningKey, String> {
        let secret = self
            .event_signing_key
            .as_deref()
            .ok_or("EVENT_SIGNING_KEY is required: the key ingest signs messages with")?;
        schemas::stream::SigningKey::new(secret)
    }

    /// Fails fast with the name of the variable that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.clickhouse.validate()?;
        self.nats.login.validate()?;
        if self.command.is_none() {
            self.signing_key()?;
        }
        if self.consumer.batch_max_messages == 0 {
            return Err("BATCH_MAX_MESSAGES must be at least 1".into());
        }
        if self.consumer.batch_max_bytes < 1024 * 1024 {
            return Err("BATCH_MAX_BYTES must be at least 1048576 (NATS's default max_payload)".into());
        }
        if self.consumer.batch_max_wait_ms == 0 {
            return Err("BATCH_MAX_WAIT_MS must be at least 1".into());
        }
        if self.stream.stream_duplicate_window_secs == 0 {
            return Err("STREAM_DUPLICATE_WINDOW_SECS must be at least 1".into());
        }
        if self.stream.stream_max_age_secs != 0
            && self.stream.stream_max_age_secs < self.stream.stream_duplicate_window_secs
        {
            return Err("STREAM_MAX_AGE_SECS must be 0 (unlimited) or at least STREAM_DUPLICATE_WINDOW_SECS".into());
        }
        if self.stream.stream_max_bytes < 1024 * 1024 {
            return Err("STREAM_MAX_BYTES must be at least 1048576 (one message of NATS's default max_payload)".into());
        }
        if self.dead_letters.dead_letter_max_age_secs < 86_400 {
            return Err("DEAD_LETTER_MAX_AGE_SECS must be at least 86400 (a day for someone to look)".into());
        }
        // Stored event ids expire with the raw rows; a message the stream or the dead letters can
        // still deliver must find its id.
        let kept_secs = u64::from(self.raw_events_ttl_days) * 86_400;
        for (name, secs) in [
            ("STREAM_MAX_AGE_SECS", self.stream.stream_max_age_secs),
            ("DEAD_LETTER_MAX_AGE_SECS", self.dead_letters.dead_letter_max_age_secs),
        ] {
            if kept_secs != 0 && secs > kept_secs {
                return Err(format!(
                    "RAW_EVENTS_TTL_DAYS ({}) must be 0 (forever) or cover {name} ({secs} s): the stored event ids expire with the \
                     raw rows, and an event delivered again after its id expired would be counted twice",
                    self.raw_events_ttl_days
                ));
            }
        }
        if !(1..=5).contains(&self.stream.stream_replicas) {
            return Err("STREAM_REPLICAS must be between 1 and 5".into());
        }
        // A day's worth of seconds or more in a lookup window would read whole days of raw
        // events per batch.
        for (name, secs) in [
            ("IVT_DUPLICATE_CLICK_WINDOW_SECS", self.invalid_traffic.ivt_duplicate_click_window_secs),
            ("IVT_CLICK_IMPRESSION_WINDOW_SECS", self.invalid_traffic.ivt_click_impression_window_secs),
        ] {
            if secs > 86_400 {
                return Err(format!("{name} must be at most 86400 (one day)"));
            }
        }
        if self.consumer.ack_wait_secs == 0 {
            return Err("ACK_WAIT_SECS must be at least 1".into());
        }
        if self.dead_letters.dead_letter_subject_prefix.starts_with(&format!("{}.", self.nats.nats_subject_prefix)) {
            return Err("DEAD_LETTER_SUBJECT_PREFIX must not fall under NATS_SUBJECT_PREFIX".into());
        }
        // Captured by the stream, each announcement would come back as an event to dead-letter.
        if schemas::stream::captured_by_stream(&self.nats.nats_subject_prefix, &self.written.nats_written_subject) {
            return Err("NATS_WRITTEN_SUBJECT must not fall under NATS_SUBJECT_PREFIX".into());
        }
        self.catalog.validate()?;
        crate::migrate::check_database_name(&self.clickhouse.clickhouse_database)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        let required = [
            "--clickhouse-password",
            "aggregator-password",
            "--nats-user",
            "adtrack_aggregator",
            "--nats-password",
            "nats-password",
        ];
        Config::try_parse_from(
            ["aggregator"].iter().chain(&required).chain(&["--event-signing-key", "0123456789abcdef"]).chain(args),
        )
        .unwrap()
    }

    #[test]
    fn consuming_needs_the_signing_key_and_the_subcommands_do_not() {
        let required = ["aggregator", "--clickhouse-password", "p", "--nats-user", "u", "--nats-password", "p"];
        let error = Config::try_parse_from(required).unwrap().validate().unwrap_err();
        assert!(error.contains("EVENT_SIGNING_KEY"), "{error}");
        Config::try_parse_from(required.iter().chain(&["migrate"])).unwrap().validate().unwrap();
        Config::try_parse_from(required.iter().chain(&["dead-letters", "list"])).unwrap().validate().unwrap();
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]);
        config.validate().unwrap();
        assert_eq!(config.consumer.batch_max_messages, 10_000);
    }

    #[test]
    fn stored_ids_must_outlive_what_the_stream_and_the_dead_letters_can_deliver_again() {
        let error = parse(&["--raw-events-ttl-days", "7"]).validate().unwrap_err();
        assert!(error.contains("RAW_EVENTS_TTL_DAYS (7) must be 0 (forever) or cover STREAM_MAX_AGE_SECS"), "{error}");
        let error = parse(&["--raw-events-ttl-days", "7", "--stream-max-age-secs", "604800"]).validate().unwrap_err();
        assert!(error.contains("DEAD_LETTER_MAX_AGE_SECS"), "{error}");
        parse(&[
            "--raw-events-ttl-days",
            "7",
            "--stream-max-age-secs",
            "604800",
            "--dead-letter-max-age-secs",
            "604800",
        ])
        .validate()
        .unwrap();
        parse(&["--raw-events-ttl-days", "0"]).validate().unwrap();
    }

    #[test]
    fn validation_names_the_variable() {
        let config = parse(&["--batch-max-messages", "0"]);
        assert!(config.validate().unwrap_err().contains("BATCH_MAX_MESSAGES"));
        let config = parse(&["--clickhouse-database", "a-b"]);
        assert!(config.validate().unwrap_err().contains("CLICKHOUSE_DATABASE"));
        let config = parse(&["--nats-written-subject", "ads.events.written"]);
        assert!(config.validate().unwrap_err().contains("NATS_WRITTEN_SUBJECT"));
    }
}
