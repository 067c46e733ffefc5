//! Applies `clickhouse/migrations/*.sql` in order (`aggregator migrate`, as an administrator).
//! Every statement is idempotent, so each run re-applies them all; the files are compiled in, so
//! the binary needs no checkout. The aggregator itself only checks, at start, that the newest
//! migration it knows has been applied ([`check_applied`]): its ClickHouse user cannot change the
//! schema.

use clickhouse::Client;

/// Every migration, oldest first. A test checks this matches the folder.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_ads.sql", include_str!("../../clickhouse/migrations/0001_ads.sql")),
    ("0002_raw_events.sql", include_str!("../../clickhouse/migrations/0002_raw_events.sql")),
    ("0003_minute_rollups.sql", include_str!("../../clickhouse/migrations/0003_minute_rollups.sql")),
    ("0004_stored_event_ids.sql", include_str!("../../clickhouse/migrations/0004_stored_event_ids.sql")),
    ("0005_hourly_daily_rollups.sql", include_str!("../../clickhouse/migrations/0005_hourly_daily_rollups.sql")),
    ("0006_stored_event_ids_kv.sql", include_str!("../../clickhouse/migrations/0006_stored_event_ids_kv.sql")),
    ("0007_analyst_views.sql", include_str!("../../clickhouse/migrations/0007_analyst_views.sql")),
    (
        "0008_events_received_watermark.sql",
        include_str!("../../clickhouse/migrations/0008_events_received_watermark.sql"),
    ),
    ("0009_playback_quantiles.sql", include_str!("../../clickhouse/migrations/0009_playback_quantiles.sql")),
    ("0010_audience_breakdowns.sql", include_str!("../../clickhouse/migrations/0010_audience_breakdowns.sql")),
    ("0011_invalid_traffic.sql", include_str!("../../clickhouse/migrations/0011_invalid_traffic.sql")),
    ("0012_daily_unique_visitors.sql", include_str!("../../clickhouse/migrations/0012_daily_unique_visitors.sql")),
    ("0013_time_ordered_rollups.sql", include_str!("../../clickhouse/migrations/0013_time_ordered_rollups.sql")),
    ("0014_schema_migrations.sql", include_str!("../../clickhouse/migrations/0014_schema_migrations.sql")),
    ("0015_received_at_index.sql", include_str!("../../clickhouse/migrations/0015_received_at_index.sql")),
    ("0016_sender_id.sql", include_str!("../../clickhouse/migrations/0016_sender_id.sql")),
    ("0017_event_signing.sql", include_str!("../../clickhouse/migrations/0017_event_signing.sql")),
];

/// The newest migration this binary knows.
pub fn newest() -> &'static str {
    MIGRATIONS[MIGRATIONS.len() - 1].0
}

/// Sample ads for a new installation.
pub const SEED: &str = include_str!("../../clickhouse/seed.sql");

/// The database name is spliced into `CREATE DATABASE`, so it must be a plain identifier.
pub fn check_database_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(format!("CLICKHOUSE_DATABASE must be letters, digits and `_`, got {name:?}"))
    }
}

/// A statement's condition: the SQL after `-- only if: ` on one of its comment lines, a count
/// that must not be 0 for the statement to run. How a migration that cannot be written as
/// `IF NOT EXISTS` (a table rebuilt with another sort key) stays safe to re-apply.
pub fn only_if(statement: &str) -> Option<&str> {
    statement.lines().find_map(|line| line.trim().strip_prefix("-- only if: ")).map(str::trim)
}

/// Splits a file into statements: each ends with `;` at the end of a line.
pub fn statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim_end();
        current.push_str(trimmed);
        current.push('\n');
        if trimmed.ends_with(';') {
            statements.push(std::mem::take(&mut current));
        }
    }
    statements.push(current);
    statements.retain(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")));
    statements
}

/// Creates the database and applies every migration (and the seed when asked).
pub async fn apply(
    server: &Client,
    client: &Client,
    database: &str,
    seed: bool,
) -> Result<(), clickhouse::error::Error> {
    server.query(&format!("CREATE DATABASE IF NOT EXISTS `{database}`")).execute().await?;
    for (name, sql) in MIGRATIONS {
        for statement in statements(sql) {
            if let Some(condition) = only_if(&statement) {
                if client.query(condition).fetch_one::<u64>().await? == 0 {
                    continue;
                }
            }
            client.query(&statement).execute().await?;
        }
        tracing::info!(migration = name, "migration applied");
    }
    let mut applied = client.insert::<AppliedMigration>("schema_migrations").await?;
    for (name, _) in MIGRATIONS {
        applied.write(&AppliedMigration { name }).await?;
    }
    applied.end().await?;
    if seed {
        for statement in statements(SEED) {
            client.query(&statement).execute().await?;
        }
        tracing::info!("sample ads loaded");
    }
    Ok(())
}

#[derive(clickhouse::Row, serde::Serialize)]
struct AppliedMigration {
    name: &'static str,
}

/// Why the aggregator cannot run on this database yet.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the ClickHouse schema lacks migration {0}: run `aggregator migrate` (as a ClickHouse administrator) first"
    )]
    Behind(&'static str),
    #[error("reading schema_migrations: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

/// Whether `aggregator migrate` has applied every migration this binary knows to `database`
/// (asked of the server: the database may not exist yet).
pub async fn check_applied(server: &Client, database: &str) -> Result<(), SchemaError> {
    let tables: u64 = server
        .query("SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
        .bind(database)
        .fetch_one()
        .await?;
    let applied = tables > 0
        && server
            .query(&format!("SELECT count() FROM `{database}`.schema_migrations WHERE name = ?"))
            .bind(newest())
            .fetch_one::<u64>()
            .await?
            > 0;
    if applied {
        Ok(())
    } else {
        Err(SchemaError::Behind(newest()))
    }
}

/// The tables holding one row per event: what `RAW_EVENTS_TTL_DAYS` expires.
pub const RAW_EVENT_TABLES: [&str; 3] = ["click_events", "impression_events", "invalid_events"];

/// The audience rollups, with the column of each row's time: what `AUDIENCE_TTL_DAYS` expires.
pub const AUDIENCE_TABLES: [(&str, &str); 4] = [
    ("click_audience_per_hour", "hour"),
    ("click_audience_per_day", "day"),
    ("impression_audience_per_hour", "hour"),
    ("impression_audience_per_day", "day"),
];

/// The TTL of rows timed by `time`, as ClickHouse prints it back in `system.tables.engine_full`.
fn ttl_clause(time: &str, days: u32) -> String {
    format!("TTL {time} + toIntervalDay({days})")
}

/// What each retention setting expires: the raw tables by `RAW_EVENTS_TTL_DAYS`, the audience
/// rollups by `AUDIENCE_TTL_DAYS` (0: forever).
fn table_ttls(raw_events_days: u32, audience_days: u32) -> Vec<(&'static str, Option<String>)> {
    let ttl = |time: &str, days: u32| (days > 0).then(|| ttl_clause(time, days));
    let raw = RAW_EVENT_TABLES.into_iter().map(|table| (table, ttl("toDateTime(timestamp)", raw_events_days)));
    let audience = AUDIENCE_TABLES.into_iter().map(|(table, time)| (table, ttl(time, audience_days)));
    raw.chain(audience).collect()
}

/// The key-value table of stored event ids: they expire with the raw rows.
pub const STORED_IDS_TABLE: &str = "stored_event_ids_kv";

/// The engine `stored_event_ids_kv` needs for a retention of `days` (0: forever), as
/// ClickHouse prints it back: RocksDB drops an id `days` after it was written (at compaction,
/// so possibly later), never before its row, which expires `days` after the event's time.
pub fn stored_ids_engine(days: u32) -> String {
    match days {
        0 => "EmbeddedRocksDB".to_owned(),
        days => format!("EmbeddedRocksDB({})", u64::from(days) * 86_400),
    }
}

/// Gives each raw table the TTL `RAW_EVENTS_TTL_DAYS` asks for (none for 0), the stored event
/// ids the same retention, and the audience rollups the TTL `AUDIENCE_TTL_DAYS` asks for. A table that already
/// has its TTL is left alone: changing a TTL rewrites the table's parts, so it is done only when
/// the setting changed. The other rollups have no TTL: their counts outlive the rows.
pub async fn apply_retention(
    client: &Client,
    raw_events_days: u32,
    audience_days: u32,
) -> Result<(), clickhouse::error::Error> {
    apply_stored_ids_retention(client, raw_events_days).await?;
    for (table, wanted) in table_ttls(raw_events_days, audience_days) {
        let engine = engine_full(client, table).await?;
        let change = match &wanted {
            Some(clause) if !engine.contains(&format!(" {clause} ")) && !engine.ends_with(&format!(" {clause}")) => {
                format!("ALTER TABLE {table} MODIFY {clause}")
            }
            None if engine.contains(" TTL ") => format!("ALTER TABLE {table} REMOVE TTL"),
            _ => continue,
        };
        client.query(&change).execute().await?;
        tracing::info!(table, ttl = wanted.as_deref().unwrap_or("none"), "retention changed");
    }
    Ok(())
}

/// Records, once, the first stream sequence that must be signed: the one after `last_sequence`,
/// the stream's last when signatures began (migration `0017`).
pub async fn record_signing_start(client: &Client, last_sequence: u64) -> Result<(), clickhouse::error::Error> {
    client
        .query(
            "INSERT INTO event_signing (signed_from_stream_seq) SELECT ? WHERE (SELECT count() FROM event_signing) = 0",
        )
        .bind(last_sequence + 1)
        .execute()
        .await
}

/// The first stream sequence that must be signed; 0 (every message) when none was recorded.
pub async fn signed_from_stream_seq(client: &Client) -> Result<u64, clickhouse::error::Error> {
    client.query("SELECT min(signed_from_stream_seq) FROM event_signing").fetch_one().await
}

/// A table's engine and its settings, as ClickHouse prints them (TTL included).
async fn engine_full(client: &Client, table: &str) -> Result<String, clickhouse::error::Error> {
    client
        .query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table)
        .fetch_one()
        .await
}

/// Rebuilds `stored_event_ids_kv` with the engine `days` asks for, unless it has it. A
/// RocksDB table's TTL is fixed at creation, so the ids move to a new table that then takes the
/// old one's name; ids an insert wrote into the old table meanwhile are copied after every
/// insert begun before the swap has ended, so that none is lost to a running aggregator.
async fn apply_stored_ids_retention(client: &Client, days: u32) -> Result<(), clickhouse::error::Error> {
    let engine = engine_full(client, STORED_IDS_TABLE).await?;
    let wanted = stored_ids_engine(days);
    if engine.starts_with(&format!("{wanted} ")) {
        return Ok(());
    }
    let next = format!("{STORED_IDS_TABLE}_next");
    let statements = [
        format!("DROP TABLE IF EXISTS {next}"),
        format!("CREATE TABLE {next} AS {STORED_IDS_TABLE} ENGINE = {wanted} PRIMARY KEY event_id"),
        format!("INSERT INTO {next} SELECT * FROM {STORED_IDS_TABLE}"),
        format!("EXCHANGE TABLES {STORED_IDS_TABLE} AND {next}"),
    ];
    for statement in &statements {
        client.query(statement).execute().await?;
    }
    crate::sink::await_inserts_begun_before(client, std::time::Instant::now()).await;
    client.query(&format!("INSERT INTO {STORED_IDS_TABLE} SELECT * FROM {next}")).execute().await?;
    client.query(&format!("DROP TABLE {next}")).execute().await?;
    tracing::info!(table = STORED_IDS_TABLE, days, "stored event id retention changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../clickhouse/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(files, listed);
        let newest = include_str!("../../clickhouse/max_migration.txt").trim();
        assert_eq!(listed.last().copied(), Some(newest));
    }

    #[test]
    fn each_setting_expires_its_own_tables() {
        let ttls = table_ttls(90, 0);
        assert_eq!(ttls.len(), RAW_EVENT_TABLES.len() + AUDIENCE_TABLES.len());
        assert!(ttls.contains(&("impression_events", Some("TTL toDateTime(timestamp) + toIntervalDay(90)".to_owned()))));
        assert!(ttls.contains(&("click_audience_per_day", None)), "0 keeps them forever");
        assert!(table_ttls(0, 400)
            .contains(&("impression_audience_per_hour", Some("TTL hour + toIntervalDay(400)".to_owned()))));
        assert_eq!(stored_ids_engine(90), "EmbeddedRocksDB(7776000)");
        assert_eq!(stored_ids_engine(0), "EmbeddedRocksDB");
    }

    #[test]
    fn splits_statements_and_drops_comment_only_ones() {
        let sql = "-- header\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n-- tail comment\nSELECT 1;\n-- end\n";
        let parts = statements(sql);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].contains("CREATE TABLE a"));
        assert!(parts[1].contains("SELECT 1;"));
        assert_eq!(statements(MIGRATIONS[2].1).len(), 4);
    }

    #[test]
    fn a_statement_may_run_only_if_a_count_is_not_zero() {
        let sql = "-- only if: SELECT count() FROM system.tables WHERE name = 'a'\nDROP TABLE a;\nSELECT 1;\n";
        let parts = statements(sql);
        assert_eq!(only_if(&parts[0]), Some("SELECT count() FROM system.tables WHERE name = 'a'"));
        assert_eq!(only_if(&parts[1]), None);
    }

    #[test]
    fn database_names_are_identifiers() {
        assert!(check_database_name("adtrack_test_1").is_ok());
        assert!(check_database_name("").is_err());
        assert!(check_database_name("x`; DROP").is_err());
    }
}
