//! Connection-level protection: at most N open connections per service, a connection over the
//! cap answered at once with a 503 (not left unread in the kernel's accept queue, where its
//! client times out and may retry an event that was in fact stored), a deadline for a request's
//! head, and a cap on request header size. The default cap follows the process's open-file limit, raised to its hard
//! limit at start, and its container's memory limit when it has one.

use std::io::Result as IoResult;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, IntoResponse, Request, Response};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What one client may hold of a service's HTTP listener: its connections, their idle time, and
/// their request headers. Ingest and the query service take the same settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Largest total size of a request's headers (names and values); more gets 431.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 8 * 1024)]
    pub max_header_bytes: usize,
    /// Most connections open at once; a connection beyond them is answered 503 with
    /// `Retry-After: 1` at once. Default: three quarters of the open-file limit, which the
    /// service raises to its hard limit at start (`ulimit -Hn`), and at most one per 64 KiB of
    /// the container's memory limit above 64 MiB.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// A connection with no traffic for this long is closed (slow or stalled clients).
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub idle_timeout_secs: u64,
    /// Seconds a request's head (request line and headers) may take to arrive once its first
    /// byte has; then the connection is closed. The idle timeout restarts with every byte, so
    /// without this a client trickling its headers would hold a connection for good.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
}

/// Requests one HTTP/2 connection may carry at once: without a bound, one connection would
/// carry any number of requests past `MAX_CONNECTIONS`.
pub const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

impl ConnectionArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == Some(0) {
            return Err("MAX_CONNECTIONS must be at least 1".into());
        }
        if self.idle_timeout_secs == 0 {
            return Err("IDLE_TIMEOUT_SECS must be at least 1".into());
        }
        if self.header_read_timeout_secs == 0 {
            return Err("HEADER_READ_TIMEOUT_SECS must be at least 1".into());
        }
        if self.max_header_bytes < 1024 {
            return Err("MAX_HEADER_BYTES must be at least 1024".into());
        }
        Ok(())
    }

    /// A server on `addr` holding these limits (connections over the cap counted in `refused`).
    pub fn server(
        &self,
        addr: SocketAddr,
        service: &str,
        refused: IntCounter,
    ) -> IoResult<poem::Server<std::convert::Infallible, LimitedAcceptor<TcpAcceptor>>> {
        let open_files = raise_open_file_limit();
        let max_connections =
            self.max_connections.unwrap_or_else(|| default_max_connections(open_files, container_memory_limit()));
        let acceptor = listen(addr)?;
        tracing::info!(%addr, max_connections, open_files, "{service} listening");
        let head_deadline = Duration::from_secs(self.header_read_timeout_secs);
        Ok(poem::Server::new_with_acceptor(
            LimitedAcceptor::new(acceptor, max_connections, refused).with_head_deadline(head_deadline),
        )
        .idle_timeout(Duration::from_secs(self.idle_timeout_secs))
        .http2_max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX)))
    }
}

/// Raises the process's soft open-file limit to its hard limit, and returns the limit then in
/// force: each connection is a file.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            tracing::warn!(%error, soft, "cannot raise the open-file limit");
            soft
        }
    }
}

/// Memory an open connection may cost: ingest held about 57 KiB per connection at 10,000
/// connections sending requests at once (BENCHMARKS.md), rounded up.
const MEMORY_PER_CONNECTION: u64 = 64 * 1024;
/// What a service holds with no connection open.
const MEMORY_BASELINE: u64 = 64 * 1024 * 1024;

/// The memory limit of the process's container (cgroup v2 `memory.max`, else v1), if it has one.
pub fn container_memory_limit() -> Option<u64> {
    ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| parse_memory_limit(&text))
}

/// A cgroup memory limit: `max` (v2) and v1's near-`i64::MAX` mean none.
fn parse_memory_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|bytes| *bytes < 1 << 60)
}

/// The default connection cap: three quarters of the open-file limit (the other quarter is for
/// the connections answered 503 over the cap, and for NATS, ClickHouse and files), and no more
/// than a memory limit holds, so that a burst of clients is refused rather than kills the
/// process.
pub fn default_max_connections(open_files: u64, memory_limit: Option<u64>) -> usize {
    let by_files = open_files / 4 * 3;
    let by_memory =
        memory_limit.map_or(u64::MAX, |bytes| bytes.saturating_sub(MEMORY_BASELINE) / MEMORY_PER_CONNECTION);
    usize::try_from(by_files.min(by_memory)).unwrap_or(usize::MAX).max(1)
}

/// Connections over the cap answered at once, at most: each holds a file while it is answered.
fn max_refusals(max_connections: usize) -> usize {
    (max_connections / 3).max(1)
}

/// How long a connection over the cap may take to send its request's head, and then to take
/// the 503 and close.
const REFUSAL_READ: Duration = Duration::from_secs(2);
const REFUSAL_DRAIN: Duration = Duration::from_secs(1);

/// Binds `addr` with a listen backlog as long as the kernel allows (`somaxconn`): a burst of
/// new connections then waits in the queue instead of having its SYNs dropped and retried a
/// second later.
pub fn listen(addr: SocketAddr) -> IoResult<TcpAcceptor> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    TcpAcceptor::from_tokio(socket.listen(u32::from(u16::MAX))?)
}

/// An acceptor that holds a permit per open connection, and answers a connection that comes
/// when every permit is taken with a 503 `Retry-After: 1` of its own.
pub struct LimitedAcceptor<A> {
    inner: A,
    /// The answer every refused connection gets, made once.
    refusal: Arc<[u8]>,
    permits: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    /// Connections answered 503 for the cap.
    refused: IntCounter,
    /// How long a request's head may take to arrive ([`HeadDeadline`]).
    head_deadline: Duration,
}

/// The head deadline of an acceptor not given one: the setting's default.
const DEFAULT_HEAD_DEADLINE: Duration = Duration::from_secs(10);

impl<A> LimitedAcceptor<A> {
    pub fn new(inner: A, max_connections: usize, refused: IntCounter) -> Self {
        Self {
            inner,
            refusal: refusal(max_connections).into(),
            permits: Arc::new(Semaphore::new(max_connections)),
            refusals: Arc::new(Semaphore::new(max_refusals(max_connections))),
            refused,
            head_deadline: DEFAULT_HEAD_DEADLINE,
        }
    }

    /// Closes a connection whose request head has not arrived within `limit` of its first byte.
    pub fn with_head_deadline(mut self, limit: Duration) -> Self {
        self.head_deadline = limit;
        self
    }

    fn permitted<T>(&self, io: T, permit: OwnedSemaphorePermit) -> Permitted<T> {
        Permitted { io, _permit: permit, head: HeadDeadline::new(self.head_deadline) }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A>
where
    A::Io: 'static,
{
    type Io = Permitted<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> IoResult<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        loop {
            // With every refusal slot busy too, wait for a connection to close before taking
            // the next: the kernel's queue holds the rest.
            if self.refusals.available_permits() == 0 {
                let permit = self.permits.clone().acquire_owned().await.map_err(std::io::Error::other)?;
                let (io, local, remote, scheme) = self.accept_inner().await?;
                return Ok((self.permitted(io, permit), local, remote, scheme));
            }
            let (io, local, remote, scheme) = self.accept_inner().await?;
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return Ok((self.permitted(io, permit), local, remote, scheme));
            }
            if let Ok(slot) = self.refusals.clone().try_acquire_owned() {
                self.refused.inc();
                tokio::spawn(refuse(io, self.refusal.clone(), slot));
                continue;
            }
            let permit = self.permits.clone().acquire_owned().await.map_err(std::io::Error::other)?;
            return Ok((self.permitted(io, permit), local, remote, scheme));
        }
    }
}

impl<A: Acceptor> LimitedAcceptor<A> {
    async fn accept_inner(&mut self) -> IoResult<(A::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        match self.inner.accept().await {
            Ok(accepted) => Ok(accepted),
            Err(error) => {
                // E.g. out of file descriptors: the server retries at once, so pause rather
                // than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(error)
            }
        }
    }
}

/// The whole answer to a connection over the cap: an RFC 9457 problem, like every error.
fn refusal(max_connections: usize) -> Vec<u8> {
    let detail = format!("the service holds its most connections ({max_connections}); retry after 1 s");
    let body = poem_openapi::types::ToJSON::to_json_string(&crate::Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        detail,
        None,
    ));
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        crate::PROBLEM_JSON,
        body.len()
    )
    .into_bytes()
}

/// Reads the request's head (what a client sends before it waits for an answer), answers 503,
/// and reads what else comes for a moment before closing: closing with unread bytes would
/// reset the connection, and the client could lose the answer.
async fn refuse<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, answer: Arc<[u8]>, _slot: OwnedSemaphorePermit) {
    let mut buf = [0u8; 8192];
    let mut head = Vec::new();
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(tokio::time::timeout(REFUSAL_READ, read_head).await, Ok(true)) {
        return;
    }
    if io.write_all(&answer).await.is_err() || io.shutdown().await.is_err() {
        return;
    }
    let _ =
        tokio::time::timeout(REFUSAL_DRAIN, async { while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {} }).await;
}

/// A connection; its permit is released when it closes.
pub struct Permitted<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
    head: HeadDeadline,
}

/// Where an HTTP/1 connection is in its exchange, as far as the head deadline cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// Between requests: waiting is the idle timeout's business.
    Idle,
    /// A request's head has begun to arrive and has not ended.
    Head,
    /// The head is in; the body, the work and the answer follow.
    Answering,
    /// HTTP/2 (its preface came first): frames, not heads; left to the idle timeout and h2's
    /// own limits.
    Http2,
}

/// The deadline of a request's head: from its first byte to the blank line that ends it.
struct HeadDeadline {
    limit: Duration,
    exchange: Exchange,
    /// The last bytes of the head so far, to find a `\r\n\r\n` split across reads.
    tail: Vec<u8>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    first_read: bool,
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
const END_OF_HEAD: &[u8] = b"\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 ";

impl HeadDeadline {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            exchange: Exchange::Idle,
            tail: Vec::with_capacity(END_OF_HEAD.len() * 2),
            timer: None,
            first_read: true,
        }
    }

    /// Whether the head now in progress has run past its deadline (registering `cx` to be woken
    /// when it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().is_some_and(|timer| std::future::Future::poll(timer.as_mut(), cx).is_ready())
    }

    fn read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if std::mem::take(&mut self.first_read) && bytes.starts_with(HTTP2_PREFACE) {
            self.exchange = Exchange::Http2;
        }
        if self.exchange == Exchange::Idle {
            self.exchange = Exchange::Head;
            self.tail.clear();
            self.timer = Some(Box::pin(tokio::time::sleep(self.limit)));
        }
        if self.exchange == Exchange::Head {
            self.tail.extend_from_slice(bytes);
            if self.tail.windows(END_OF_HEAD.len()).any(|w| w == END_OF_HEAD) {
                self.exchange = Exchange::Answering;
                self.timer = None;
            } else {
                let keep = self.tail.len().saturating_sub(END_OF_HEAD.len() - 1);
                self.tail.drain(..keep);
            }
        }
    }

    /// The server wrote `bytes` of an answer: the next byte read starts a new head. Not so after
    /// a `100 Continue`, which asks for the body of the same request.
    fn wrote(&mut self, bytes: &[u8]) {
        if self.exchange != Exchange::Http2 && !bytes.starts_with(CONTINUE) {
            self.exchange = Exchange::Idle;
            self.timer = None;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Permitted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<IoResult<()>> {
        if self.head.expired(cx) {
            let limit = self.head.limit.as_secs();
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("request head not in within {limit} s"),
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let this = &mut *self;
            this.head.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Permitted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<IoResult<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.head.wrote(&buf[..n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Answers 431 when a request's headers (names and values) exceed `max_bytes` in total.
pub async fn limit_header_size<E: Endpoint>(next: E, req: Request, max_bytes: usize) -> poem::Result<Response> {
    let size: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if size > max_bytes {
        let error = format!("request headers are {size} bytes; at most {max_bytes}");
        return Ok(crate::Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, error, None).into_response());
    }
    Ok(next.call(req).await?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_quarter_of_the_files_and_fits_the_memory() {
        assert_eq!(default_max_connections(20_000, None), 15_000);
        assert_eq!(default_max_connections(1_024, None), 768);
        assert_eq!(default_max_connections(0, None), 1);
        // A 256 MiB container: (256 - 64) MiB at 64 KiB each.
        assert_eq!(default_max_connections(1_048_576, Some(256 << 20)), 3_072);
        assert_eq!(default_max_connections(1_024, Some(256 << 20)), 768);
        assert_eq!(default_max_connections(1_048_576, Some(32 << 20)), 1);
        assert!(max_refusals(15_000) == 5_000 && max_refusals(2) == 1);
    }

    #[tokio::test]
    async fn a_head_is_timed_from_its_first_byte_to_its_blank_line_and_http2_is_left_alone() {
        let mut head = HeadDeadline::new(Duration::from_secs(10));
        head.read(b"POST /ads/click HTTP/1.1\r\nHost: x\r");
        assert_eq!((head.exchange, head.timer.is_some()), (Exchange::Head, true));
        head.read(b"\n\r");
        assert_eq!(head.exchange, Exchange::Head, "not yet the blank line");
        head.read(b"\n{\"ad_id\"");
        assert_eq!(
            (head.exchange, head.timer.is_some()),
            (Exchange::Answering, false),
            "the blank line split across reads"
        );
        head.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        head.read(b"rest of the body, slow or not\r\n\r\n");
        assert_eq!(head.exchange, Exchange::Answering, "the body after 100 Continue");
        head.wrote(b"HTTP/1.1 202 Accepted\r\n");
        assert_eq!((head.exchange, head.timer.is_some()), (Exchange::Idle, false));
        head.read(b"G");
        assert_eq!((head.exchange, head.timer.is_some()), (Exchange::Head, true), "the next request's head");

        let mut h2 = HeadDeadline::new(Duration::from_secs(10));
        h2.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        h2.wrote(b"\x00\x00\x00\x04");
        h2.read(b"\x00\x00\x04\x01");
        assert_eq!((h2.exchange, h2.timer.is_some()), (Exchange::Http2, false));
    }

    #[test]
    fn memory_limits_read_as_cgroups_write_them() {
        assert_eq!(parse_memory_limit("268435456\n"), Some(256 << 20));
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None, "cgroup v1's unlimited");
    }

    #[test]
    fn the_refusal_is_a_complete_problem_answer() {
        let answer = String::from_utf8(refusal(10)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{head}");
        assert!(
            head.contains("retry-after: 1")
                && head.contains("connection: close")
                && head.contains("application/problem+json"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 503);
        assert!(problem["detail"].as_str().unwrap().contains("(10)"), "{problem}");
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_answered_503_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = IntCounter::new("refused", "test").unwrap();
        let mut acceptor = LimitedAcceptor::new(TcpAcceptor::from_tokio(listener).unwrap(), 1, refused.clone());
        let held = tokio::spawn(async move {
            let first = acceptor.accept().await.unwrap();
            // The second is refused inside this call, which then waits for a third.
            let _ = tokio::time::timeout(Duration::from_secs(5), acceptor.accept()).await;
            drop(first);
        });
        let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second.write_all(b"POST /ads/click HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), second.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert_eq!(refused.get(), 1);
        held.abort();
    }
}
