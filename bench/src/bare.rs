//! The HTTP ceiling: the same poem server as ingest, with handlers that read the body and
//! answer 202 and a JSON body of the size ingest sends, and do nothing else. Run as its own
//! process (`bench bare-server`), like ingest, so the load generator's numbers compare.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::{handler, post, Response, Route, Server};
use tokio::process::{Child, Command};

/// Shaped like ingest's answer, so both servers write the same bytes.
const ANSWER: &str = r#"{"event_id":"00000000-0000-0000-0000-000000000000","status":"accepted"}"#;

#[handler]
async fn accept(_body: Bytes) -> Response {
    Response::builder().status(StatusCode::ACCEPTED).content_type("application/json").body(ANSWER)
}

/// `bench bare-server`: serves until killed.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let app = Route::new().at("/ads/click", post(accept)).at("/ads/impression", post(accept));
    Server::new(TcpListener::bind(addr)).run(app).await.with_context(|| format!("serving on {addr}"))
}

/// Starts `bench bare-server` on `addr` and waits until it accepts connections. The child is
/// killed when the handle is dropped.
pub async fn start(addr: SocketAddr) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let child = Command::new(exe)
        .args(["bare-server", "--addr", &addr.to_string()])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting bench bare-server")?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "bench bare-server did not listen on {addr} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(child)
}
