//! One keep-alive HTTP/1.1 connection on hyper's connection API. The load generator shares the
//! two cores with the servers it measures, so it does no more than write a request and read
//! the answer: no pool, no redirects, no decompression.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longer than ingest's own publish timeout (5 s), so a slow answer is the server's 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the bench calls itself: every generated event's user agent starts with it.
pub const BENCH_USER_AGENT: &str = "adtrack-bench/1";

pub struct Connection {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, host: addr.to_string(), sender: None }
    }

    /// POSTs `body` and reads the whole answer, connecting first if needed. After an error the
    /// connection is dropped and the next call opens a new one.
    pub async fn post(&mut self, path: &'static str, content_type: &'static str, user_agent: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path, content_type, user_agent, body)).await;
        let result = outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, path: &'static str, content_type: &'static str, user_agent: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(connect(self.addr).await?),
        };
        sender.ready().await.context("connection closed")?;
        let request = Request::post(path)
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, content_type)
            .header(USER_AGENT, user_agent)
            .body(Full::new(body))
            .context("building the request")?;
        let response = sender.send_request(request).await.context("sending the request")?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.context("reading the answer")?.to_bytes();
        Ok((status, body))
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.context("HTTP handshake")?;
    // The connection's own errors reach the caller through `send_request`.
    tokio::spawn(connection);
    Ok(sender)
}
