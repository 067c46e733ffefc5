//! One keep-alive HTTP/1.1 connection on hyper's connection API. The load generator shares the
//! two cores with the servers it measures, so it does no more than write a request and read
//! the answer: no pool, no redirects, no decompression.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
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
    /// For a whole request: connecting (when needed), sending, and reading the answer.
    timeout: Duration,
}

impl Connection {
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_timeout(addr, REQUEST_TIMEOUT)
    }

    pub fn with_timeout(addr: SocketAddr, timeout: Duration) -> Self {
        Self { addr, host: addr.to_string(), sender: None, timeout }
    }

    /// POSTs `body` and reads the whole answer, connecting first if needed. After an error, or
    /// an answer with `connection: close`, the connection is dropped and the next call opens a
    /// new one.
    pub async fn post(
        &mut self,
        path: &'static str,
        content_type: &'static str,
        user_agent: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        let timeout = self.timeout;
        let outcome = tokio::time::timeout(timeout, self.exchange(path, content_type, user_agent, body)).await;
        let result = outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {timeout:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        path: &'static str,
        content_type: &'static str,
        user_agent: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
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
        // The server closes such a connection after this answer (ingest's 503 over its
        // connection cap does): sending on it again would fail without reaching the server.
        let closes = response.headers().get_all(CONNECTION).iter().any(|value| {
            value.to_str().is_ok_and(|tokens| tokens.split(',').any(|token| token.trim().eq_ignore_ascii_case("close")))
        });
        let body = response.into_body().collect().await.context("reading the answer")?.to_bytes();
        if closes {
            self.sender = None;
        }
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn an_answer_with_connection_close_makes_the_next_request_reconnect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers one request per connection, with a 503 and `connection: close`, as ingest
        // does over its connection cap; the second request must come on a second connection.
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.unwrap();
                    head.extend_from_slice(&buf[..n]);
                }
                let answer = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}";
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let mut connection = Connection::new(addr);
        for _ in 0..2 {
            let (status, body) = connection
                .post("/ads/click", "application/json", BENCH_USER_AGENT, Bytes::from_static(b"{}"))
                .await
                .unwrap();
            assert_eq!((status, &body[..]), (503, &b"{}"[..]));
        }
        server.await.unwrap();
    }
}
