//! Connection-level protection: at most N open connections per service (further clients wait
//! in the kernel's accept queue), and a cap on request header size.

use std::io::Result as IoResult;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use poem::http::StatusCode;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, IntoResponse, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An acceptor that holds a permit per open connection.
pub struct LimitedAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(inner: A, max_connections: usize) -> Self {
        Self { inner, permits: Arc::new(Semaphore::new(max_connections)) }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = Permitted<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> IoResult<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let permit = self.permits.clone().acquire_owned().await.map_err(std::io::Error::other)?;
        match self.inner.accept().await {
            Ok((io, local, remote, scheme)) => Ok((Permitted { io, _permit: permit }, local, remote, scheme)),
            Err(error) => {
                // E.g. out of file descriptors: the server retries at once, so pause rather
                // than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Err(error)
            }
        }
    }
}

/// A connection; its permit is released when it closes.
pub struct Permitted<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Permitted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Permitted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<IoResult<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
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
