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
    ("0008_events_received_watermark.sql", include_str!("../../clickhouse/migrations/0008_events_received_watermark.sql")),
    ("0009_playback_quantiles.sql", include_str!("../../clickhouse/migrations/0009_playback_quantiles.sql")),
    ("0010_audience_breakdowns.sql", include_str!("../../clickhouse/migrations/0010_audience_breakdowns.sql")),
    ("0011_invalid_traffic.sql", include_str!("../../clickhouse/migrations/0011_invalid_traffic.sql")),
    ("0012_daily_unique_visitors.sql", include_str!("../../clickhouse/migrations/0012_daily_unique_visitors.sql")),
    ("0013_time_ordered_rollups.sql", include_str!("../../clickhouse/migrations/0013_time_ordered_rollups.sql")),
    ("0014_schema_migrations.sql", include_str!("../../clickhouse/migrations/0014_schema_migrations.sql")),
    ("0015_received_at_index.sql", include_str!("../../clickhouse/migrations/0015_received_at_index.sql")),
    ("0016_sender_id.sql", include_str!("../../clickhouse/migrations/0016_sender_id.sql")),
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
pub async fn apply(server: &Client, client: &Client, database: &str, seed: bool) -> Result<(), clickhouse::error::Error> {
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
    #[error("the ClickHouse schema lacks migration {0}: run `aggregator migrate` (as a ClickHouse administrator) first")]
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
    if applied { Ok(()) } else { Err(SchemaError::Behind(newest())) }
}

/// The tables holding one row per event: what `RAW_EVENTS_TTL_DAYS` expires.
pub const RAW_EVENT_TABLES: [&str; 3] = ["click_events", "impression_events", "invalid_events"];

/// The TTL of the raw tables, as ClickHouse prints it back in `system.tables.engine_full`.
pub fn ttl_clause(days: u32) -> String {
    format!("TTL toDateTime(timestamp) + toIntervalDay({days})")
}

/// Gives each raw table the TTL `RAW_EVENTS_TTL_DAYS` asks for (none for 0). A table that
/// already has it is left alone: changing a TTL rewrites the table's parts, so it is done only
/// when the setting changed. Rollups have no TTL: their counts outlive the rows.
pub async fn apply_retention(client: &Client, days: u32) -> Result<(), clickhouse::error::Error> {
    let wanted = (days > 0).then(|| ttl_clause(days));
    for table in RAW_EVENT_TABLES {
        let engine: String = client
            .query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = ?")
            .bind(table)
            .fetch_one()
            .await?;
        let change = match &wanted {
            Some(clause) if !engine.contains(&format!(" {clause} ")) && !engine.ends_with(&format!(" {clause}")) => {
                format!("ALTER TABLE {table} MODIFY {clause}")
            }
            None if engine.contains(" TTL ") => format!("ALTER TABLE {table} REMOVE TTL"),
            _ => continue,
        };
        client.query(&change).execute().await?;
        tracing::info!(table, days, "raw event retention changed");
    }
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
