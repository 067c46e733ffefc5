//! A whole stack for one test: NATS, a database, and the three services.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::{
    browser_like_client, eventually, nats_admin, nats_login_env, read_answer, run_sql, scratch_dir, ClickHouse,
    ClickHouseLogin, Nats, Service, TEST_EVENT_SIGNING_KEY, TEST_VISITOR_HASH_SECRET,
};

/// What differs between tests' stacks.
#[derive(Default)]
pub struct StackOptions {
    /// Leave the aggregator stopped (start it with `stack.aggregator.start()`).
    pub aggregator_stopped: bool,
    /// Run the aggregator with its own defaults, not the tests' shortcuts (short batch and ack
    /// waits, 1 s catalog refresh): the bench measures it as deployed.
    pub aggregator_defaults: bool,
    /// Extra environment for the aggregator.
    pub aggregator_env: Vec<(&'static str, &'static str)>,
    /// Extra environment for ingest.
    pub ingest_env: Vec<(&'static str, &'static str)>,
    /// Extra environment for the query service.
    pub query_env: Vec<(&'static str, &'static str)>,
    /// Use this ClickHouse instead of the shared one.
    pub clickhouse: Option<ClickHouseLogin>,
    /// The database `adtrack`, and each service logged in as its own ClickHouse user, as
    /// deployed (the migrations still run as the administrator). Only on a server started here
    /// for this test: the database is not a fresh one.
    pub service_users: bool,
    /// A 3-node NATS cluster and a stream with 3 replicas, instead of one server.
    pub nats_cluster: bool,
}

fn admin_command(aggregator: &Service, clickhouse: &ClickHouseLogin) -> Command {
    let mut command = aggregator.command();
    command.envs(clickhouse.env()).envs(nats_login_env("admin"));
    command
}

/// NATS, a fresh ClickHouse database with the schema and sample ads, and the three services.
pub struct Stack {
    pub dir: PathBuf,
    pub database: String,
    /// The administrator's login.
    pub clickhouse: ClickHouseLogin,
    /// The NATS server (the first node, with a cluster).
    pub nats: Nats,
    /// The other nodes of a cluster.
    pub nats_peers: Vec<Nats>,
    /// Every node's URL, comma-separated (what the services get as NATS_URL).
    pub nats_url: String,
    pub ingest: Service,
    pub aggregator: Service,
    pub query: Service,
    pub http: reqwest::Client,
    /// The test provokes NATS permission violations itself; otherwise, any one fails it.
    pub permission_violations_expected: bool,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> Stack {
        let dir = scratch_dir("stack");
        let clickhouse = match options.clickhouse {
            Some(login) => login,
            None => ClickHouse::shared().await.login.clone(),
        };
        let (nats, nats_peers) = if options.nats_cluster {
            let mut nodes = Nats::start_cluster(&dir).await.into_iter();
            let first = nodes.next().expect("three nodes");
            (first, nodes.collect())
        } else {
            (Nats::start(&dir).await, Vec::new())
        };
        let nats_url = std::iter::once(&nats).chain(&nats_peers).map(|n| n.url.clone()).collect::<Vec<_>>().join(",");
        let database =
            if options.service_users { "adtrack".to_owned() } else { format!("e2e_{}", uuid::Uuid::new_v4().simple()) };
        let common =
            vec![("NATS_URL".to_owned(), nats_url.clone()), ("CLICKHOUSE_DATABASE".to_owned(), database.clone())];
        let with = |service: &str, extra: &[(&str, &str)]| {
            let mut env = common.clone();
            let login = if options.service_users { clickhouse.as_test_user(service) } else { clickhouse.clone() };
            env.extend(login.env());
            env.extend(nats_login_env(service));
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            env
        };
        let mut aggregator_env = if options.aggregator_defaults {
            Vec::new()
        } else {
            // The click rules of invalid traffic off: most tests send clicks from one address
            // with no impression first (invalid_traffic.rs turns them on).
            vec![
                ("BATCH_MAX_WAIT_MS", "100"),
                ("ACK_WAIT_SECS", "3"),
                ("CATALOG_REFRESH_SECS", "1"),
                ("IVT_DUPLICATE_CLICK_WINDOW_SECS", "0"),
                ("IVT_CLICK_IMPRESSION_WINDOW_SECS", "0"),
                ("CLOSED_DAYS_INTERVAL_SECS", "1"),
            ]
        };
        aggregator_env.push(("EVENT_SIGNING_KEY", TEST_EVENT_SIGNING_KEY));
        if options.nats_cluster {
            aggregator_env.push(("STREAM_REPLICAS", "3"));
        }
        aggregator_env.extend(options.aggregator_env);
        let aggregator = Service::new("aggregator", "AGGREGATOR_ADDR", None, &dir, with("aggregator", &aggregator_env));
        // As `make run` does: no rate limits (here and on query), since every test client is 127.0.0.1.
        let spool_dir = dir.join("ingest-spool").display().to_string();
        let mut ingest_env = vec![
            ("CATALOG_REFRESH_SECS", "1"),
            ("SPOOL_DIR", spool_dir.as_str()),
            ("VISITOR_HASH_SECRET", TEST_VISITOR_HASH_SECRET),
            ("EVENT_SIGNING_KEY", TEST_EVENT_SIGNING_KEY),
            ("RATE_LIMIT_PER_IP", "0"),
        ];
        ingest_env.extend(options.ingest_env);
        let ingest =
            Service::new("ingest", "INGEST_ADDR", Some("INGEST_ADMIN_ADDR"), &dir, with("ingest", &ingest_env));
        let mut query_env = vec![("CACHE_TTL_MS", "200"), ("RATE_LIMIT_PER_CALLER", "0")];
        // As `make run` does: reads open on loopback, unless the test gives keys.
        if !options.query_env.iter().any(|(name, _)| *name == "API_KEY" || *name == "READ_API_KEYS") {
            query_env.push(("ANONYMOUS_READS", "true"));
        }
        query_env.extend(options.query_env);
        let query = Service::new("query", "QUERY_ADDR", Some("QUERY_ADMIN_ADDR"), &dir, with("query", &query_env));

        // A fresh cluster takes a moment to elect its JetStream leader: retry until then.
        eventually("aggregator migrate", || async {
            let migrate = admin_command(&aggregator, &clickhouse)
                .args(["migrate", "--seed"])
                .output()
                .expect("run aggregator migrate");
            if migrate.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&migrate.stderr).into_owned())
            }
        })
        .await;

        let mut stack = Stack {
            dir,
            database,
            clickhouse,
            nats,
            nats_peers,
            nats_url,
            ingest,
            aggregator,
            query,
            http: browser_like_client().build().expect("http client"),
            permission_violations_expected: false,
        };
        if !options.aggregator_stopped {
            stack.aggregator.start().await;
        }
        stack.ingest.start().await;
        stack.query.start().await;
        stack
    }

    /// The aggregator's binary as an operator runs its subcommands (`migrate`, `rebuild`,
    /// `dead-letters`): as the administrator of ClickHouse and of NATS.
    pub fn admin_command(&self) -> Command {
        admin_command(&self.aggregator, &self.clickhouse)
    }

    /// Runs `aggregator <args>` as [`Stack::admin_command`] does, to its end.
    pub fn run_admin(&self, args: &[&str]) -> std::process::Output {
        self.admin_command().args(args).output().unwrap_or_else(|e| panic!("run aggregator {args:?}: {e}"))
    }

    /// A NATS client of this stack, as the administrator.
    pub async fn nats_admin(&self) -> async_nats::Client {
        nats_admin(&self.nats_url).await
    }

    /// Runs SQL against this stack's database.
    pub async fn sql(&self, sql: &str) -> Result<String, String> {
        run_sql(&self.clickhouse, &self.database, sql).await
    }

    /// Waits until `sql` (a count) returns `expected`.
    pub async fn wait_for_count(&self, sql: &str, expected: u64) {
        eventually(&format!("{sql} = {expected}"), || async {
            match self.count(sql).await {
                n if n == expected => Ok(()),
                n => Err(format!("{n}")),
            }
        })
        .await
    }

    /// A single number from SQL.
    pub async fn count(&self, sql: &str) -> u64 {
        let text = self.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        text.parse().unwrap_or_else(|_| panic!("{sql}: not a number: {text:?}"))
    }

    /// POSTs a JSON body to ingest; returns the status and the JSON answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, "application/json", body.to_string().into_bytes(), &[]).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.http.post(self.ingest.url(path)).header("content-type", content_type).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read_answer(&format!("POST {path}"), response).await
    }

    /// GETs from the query service; returns the status and the JSON answer.
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.query.url(path_and_query))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e:?}"));
        read_answer(&format!("GET {path_and_query}"), response).await
    }

    /// A service's Prometheus text.
    pub async fn metrics(&self, service: &Service) -> String {
        let url = format!("http://{}/metrics", service.metrics_addr);
        self.http.get(url).send().await.expect("GET /metrics").text().await.expect("metrics text")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for service in [&self.ingest, &self.aggregator, &self.query] {
                eprintln!("----- {} log (last 30 lines) -----\n{}", service.name, service.log_tail(30));
            }
            eprintln!("----- test data kept in {} -----", self.dir.display());
        } else if !self.permission_violations_expected {
            // A service asked NATS for something its user may not do: some path of it fails
            // (often quietly, as a warning) wherever deploy/nats/adtrack-users.conf is used.
            let violations: Vec<String> =
                std::iter::once(&self.nats).chain(&self.nats_peers).flat_map(Nats::permission_violations).collect();
            assert!(violations.is_empty(), "NATS refused a service:\n{}", violations.join("\n"));
        }
    }
}
