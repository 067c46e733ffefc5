//! ClickHouse: where it is and who each service is to it.

/// How to reach ClickHouse over HTTP.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP interface URL.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    /// Database holding the ads catalog, raw events and rollups.
    #[arg(long, env = "CLICKHOUSE_DATABASE", default_value = "adtrack")]
    pub clickhouse_database: String,
    /// This service's own ClickHouse user (deploy/clickhouse/users.d/adtrack.xml).
    #[arg(long, env = "CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    /// Required: a ClickHouse user without a password is open to anything that reaches the port.
    #[arg(long, env = "CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    pub clickhouse_password: String,
}

impl ClickHouseArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.clickhouse_password.is_empty() {
            return Err(format!(
                "CLICKHOUSE_PASSWORD is empty: give ClickHouse user {:?} a password (docs/deploy.md, \"ClickHouse users\")",
                self.clickhouse_user
            ));
        }
        Ok(())
    }

    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_database(&self.clickhouse_database)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
    }

    /// A client for the server itself, before the database exists.
    pub fn server_client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
    }
}
