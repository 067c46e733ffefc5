//! A service's life: configuration checked at start, JSON logs, and the shutdown signal.

use std::future::Future;
use std::process::ExitCode;

/// The body of every service's `main`: JSON logging, configuration parsed from flags and
/// environment and validated (exit code 2 naming the variable), then `run` (exit code 1 on error).
pub async fn run_service<C, F, Fut>(name: &str, validate: fn(&C) -> Result<(), String>, run: F) -> ExitCode
where
    C: clap::Parser,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    init_logging();
    let config = C::parse();
    if let Err(message) = validate(&config) {
        tracing::error!(%message, "invalid configuration");
        return ExitCode::from(2);
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(service = name, error = format!("{error:#}"), "stopped on error");
            ExitCode::FAILURE
        }
    }
}

/// poem's server names the client's full address and port when it closes an idle connection
/// (at INFO), and no full client IP may reach the logs: its lines below WARN are dropped,
/// whatever `RUST_LOG` says.
const QUIET_POEM_SERVER: &str = "poem::server=warn";

/// JSON logs on stderr (stdout stays free for command output); the level comes from
/// `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(QUIET_POEM_SERVER.parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        // The `request` span (request_id) on every line written while a request is handled.
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). On Unix, the handlers are installed by this call,
/// not when the future is first polled: a signal that arrives in between is kept, where it would
/// otherwise kill the process on the spot. The aggregator relies on this, since its consumer
/// starts writing (and must finish its batch) before the server first polls the future.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::error!(%error, "cannot listen for {name}");
                None
            }
        };
        (listen(SignalKind::terminate(), "SIGTERM"), listen(SignalKind::interrupt(), "SIGINT"))
    };
    async move {
        #[cfg(unix)]
        {
            async fn received(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (term, interrupt) = signals;
            tokio::select! {
                () = received(term) => {},
                () = received(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested");
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    /// A SIGTERM between the call and the first poll is kept. Were the handler installed only
    /// at the first poll, the signal would end this test process.
    #[tokio::test]
    async fn a_sigterm_before_the_first_poll_is_kept() {
        let shutdown = super::shutdown_signal();
        let kill = std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status();
        assert!(kill.is_ok_and(|status| status.success()), "kill -TERM ran");
        tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("the SIGTERM ends the wait");
    }
}
