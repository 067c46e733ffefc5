//! NATS: where it is, who each service is to it, and how long a stopping service waits on it.

use std::future::Future;
use std::time::Duration;

/// How to reach NATS JetStream and which stream holds the events.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL; several (comma-separated) for a cluster.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// JetStream stream holding every accepted event.
    #[arg(long, env = "NATS_STREAM", default_value = schemas::stream::DEFAULT_STREAM)]
    pub nats_stream: String,
    /// Subject prefix: events go to `<prefix>.click` and `<prefix>.impression`.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = schemas::stream::DEFAULT_SUBJECT_PREFIX)]
    pub nats_subject_prefix: String,
    #[command(flatten)]
    pub login: NatsLogin,
}

impl NatsArgs {
    /// Connects, retrying in the background after the first success (async-nats reconnects).
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        connect_nats(&self.nats_url, &self.login).await
    }
}

/// Who a service is to NATS (deploy/nats/adtrack-users.conf).
#[derive(Debug, Clone, clap::Args)]
pub struct NatsLogin {
    /// This service's own NATS user.
    #[arg(long, env = "NATS_USER", default_value = "")]
    pub nats_user: String,
    /// Required: NATS lets in no one without credentials.
    #[arg(long, env = "NATS_PASSWORD", default_value = "", hide_env_values = true)]
    pub nats_password: String,
}

impl NatsLogin {
    pub fn validate(&self) -> Result<(), String> {
        if self.nats_user.is_empty() || self.nats_password.is_empty() {
            return Err(
                "NATS_USER and NATS_PASSWORD are required: this service's NATS user (docs/deploy.md, \"NATS users\")"
                    .into(),
            );
        }
        Ok(())
    }

    /// Where this user's replies come: its own inbox prefix, the only one its permissions let
    /// it subscribe to.
    pub fn inbox_prefix(&self) -> String {
        format!("_INBOX.{}", self.nats_user)
    }
}

/// Connects to the NATS servers of `urls` (comma-separated) as `login`, retrying in the
/// background until one answers and reconnecting after that.
pub async fn connect_nats(urls: &str, login: &NatsLogin) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers = urls
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e))?;
    async_nats::ConnectOptions::with_user_and_password(login.nats_user.clone(), login.nats_password.clone())
        .custom_inbox_prefix(login.inbox_prefix())
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
}

/// How long a stopping service waits on NATS: while the client is connected, and once it is
/// not. A connected server that is slow (a loaded machine) is waited for longer, since what is
/// waited for (the aggregator's last acks) would otherwise be redelivered after the ack wait;
/// one that is gone may never come back.
const BEFORE_EXIT_WHILE_CONNECTED: Duration = Duration::from_secs(30);
const BEFORE_EXIT_WHILE_DISCONNECTED: Duration = Duration::from_secs(5);

/// Awaits `work`, something NATS must take or answer, before the process exits: for at most 30 s
/// while the client is connected, 5 s once it is not. Bounded, because with NATS unreachable the
/// client waits for a reconnect that may never come, and the service would never finish its
/// SIGTERM. `None`, after a warning naming `what`, when it gave up.
pub async fn before_exit<T>(nats: &async_nats::Client, what: &str, work: impl Future<Output = T>) -> Option<T> {
    let started = std::time::Instant::now();
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let connected = nats.connection_state() == async_nats::connection::State::Connected;
        let limit = if connected { BEFORE_EXIT_WHILE_CONNECTED } else { BEFORE_EXIT_WHILE_DISCONNECTED };
        if started.elapsed() >= limit {
            tracing::warn!(connected, waited_secs = limit.as_secs(), "NATS gave no answer before exit: {what}");
            return None;
        }
    }
}

/// Hands NATS whatever the client still buffers before the process exits, within
/// [`before_exit`]'s bounds. Giving up loses nothing: every event answered 202 already has its
/// PubAck. (The aggregator's acks need an answer, not a flush: `aggregator::consumer::confirm_acks`.)
pub async fn flush_before_exit(nats: &async_nats::Client) {
    if let Some(Err(error)) = before_exit(nats, "flush", nats.flush()).await {
        tracing::warn!(%error, "NATS not flushed before exit");
    }
}

/// Where the aggregator announces its writes and the query service listens for them
/// (`schemas::stream::WrittenNotice`).
#[derive(Debug, Clone, clap::Args)]
pub struct WrittenArgs {
    /// Core-NATS subject announcing each write to ClickHouse; must lie outside the stream's
    /// `<NATS_SUBJECT_PREFIX>.>`.
    #[arg(long, env = "NATS_WRITTEN_SUBJECT", default_value = schemas::stream::DEFAULT_WRITTEN_SUBJECT)]
    pub nats_written_subject: String,
}
