//! Request bodies that document a schema in the OpenAPI spec but are read as raw bytes, so that
//! parsing and every rejection (with its field) stay in `schemas`. They are read only when the
//! service asks ([`EventBody::read`]), after it has charged the client's rate limit: a client
//! over its rate costs no more than its headers.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use poem::{Body, Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use schemas::batch::BatchFormat;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BATCH_BODY_BYTES, DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT, DEFAULT_MAX_BODY_BYTES,
};
use crate::error::IngestError;
use crate::service::ReadBatch;

/// The body limits, attached to the routes as request data.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub event: usize,
    pub batch: usize,
    /// How long a body may take to arrive, whole: a client trickling it gets 408.
    pub read_timeout: Duration,
    /// Bytes that batch bodies may hold at once, every request together: each batch reserves
    /// its declared length (or `batch` when it declares none) while it is handled.
    batches_in_flight: Arc<Semaphore>,
    batch_bytes_in_flight: usize,
}

impl BodyLimits {
    pub fn new(event: usize, batch: usize, batch_bytes_in_flight: usize, read_timeout: Duration) -> Self {
        Self {
            event,
            batch,
            read_timeout,
            batches_in_flight: Arc::new(Semaphore::new(batch_bytes_in_flight)),
            batch_bytes_in_flight,
        }
    }
}

/// What the headers say about a body, kept so that it can be read after the request is routed.
#[derive(Debug, Clone)]
struct BodyHead {
    content_type: String,
    declared_length: Option<u64>,
    /// The client waits for `100 Continue` before it sends anything.
    waits_for_continue: bool,
}

impl BodyHead {
    fn of(request: &Request) -> Self {
        let waits_for_continue = request
            .headers()
            .get(poem::http::header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        Self {
            content_type: request.content_type().unwrap_or("").to_owned(),
            declared_length: declared_length(request),
            waits_for_continue,
        }
    }
}

/// A body not read yet.
struct Unread {
    head: BodyHead,
    body: Option<Body>,
    limits: BodyLimits,
}

impl Unread {
    fn of(request: &Request, body: &mut RequestBody) -> Self {
        Self { head: BodyHead::of(request), body: body.take().ok(), limits: limits(request) }
    }
}

/// One event: `application/json`, documented as `T`.
pub struct EventBody<T> {
    unread: Unread,
    _schema: PhantomData<T>,
}

impl<T> EventBody<T> {
    /// Reads the body: its bytes, or why they cannot be had.
    pub async fn read(self) -> Result<Vec<u8>, IngestError> {
        read_event(self.unread).await
    }
}

/// Many events: a JSON array or NDJSON of `T`.
pub struct BatchBody<T> {
    unread: Result<Unread, IngestError>,
    reserved: Option<OwnedSemaphorePermit>,
    _schema: PhantomData<T>,
}

impl<T> BatchBody<T> {
    /// The body, to read, and its share of `MAX_BATCH_BYTES_IN_FLIGHT`: keep that until the
    /// batch is done.
    pub fn into_parts(self) -> (impl std::future::Future<Output = ReadBatch> + Send, Option<OwnedSemaphorePermit>) {
        let unread = self.unread;
        (async move { read_batch(unread?).await }, self.reserved)
    }
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";
/// What `navigator.sendBeacon` sends a string as: read as JSON (an array or NDJSON for a batch).
const TEXT: &str = "text/plain";

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn unsupported(content_type: &str, expected: &str) -> IngestError {
    let shown = if content_type.is_empty() { "nothing" } else { content_type };
    IngestError::UnsupportedMediaType { got: shown.to_owned(), expected: expected.to_owned() }
}

/// How much of an oversized body is still read, as a multiple of the limit, before its 413 is
/// sent. A server that answers without reading the body and closes the connection makes the
/// kernel reset it while the client is still sending, and most clients then report a broken
/// connection instead of the 413. Reading the rest (and throwing it away) lets them see the
/// answer; a body past this bound is not worth reading and gets the reset.
const DISCARD_UP_TO_LIMITS: u64 = 4;

/// Longest a refused body is read for: a client trickling it gets the reset after this.
const DISCARD_FOR_AT_MOST: std::time::Duration = std::time::Duration::from_secs(5);

fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads the whole body within `limits.read_timeout`, refusing more than `limit` bytes (early,
/// when Content-Length says so).
async fn read(unread: Unread, limit: usize) -> Result<Vec<u8>, IngestError> {
    let Unread { head, body, limits } = unread;
    let too_large = || IngestError::PayloadTooLarge { limit };
    let discard_budget = DISCARD_UP_TO_LIMITS.saturating_mul(limit as u64);
    if head.declared_length.is_some_and(|len| len > limit as u64) {
        // A client waiting for `100 Continue` has sent nothing yet and will send nothing: the
        // 413 reaches it as it is.
        if head.declared_length.is_some_and(|len| len <= discard_budget) && !head.waits_for_continue {
            if let Some(body) = body {
                discard(std::pin::pin!(body.into_bytes_stream()), discard_budget).await;
            }
        }
        return Err(too_large());
    }
    let body = body.ok_or_else(|| IngestError::BodyRead("the body was already taken".to_owned()))?;
    let mut chunks = std::pin::pin!(body.into_bytes_stream());
    let whole = async {
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| IngestError::BodyRead(e.to_string()))?;
            if bytes.len() + chunk.len() > limit {
                discard(&mut chunks, discard_budget.saturating_sub(bytes.len() as u64)).await;
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    tokio::time::timeout(limits.read_timeout, whole)
        .await
        .unwrap_or(Err(IngestError::BodyTimeout { secs: limits.read_timeout.as_secs() }))
}

/// Reads and drops what remains of a body, up to `budget` bytes and [`DISCARD_FOR_AT_MOST`].
async fn discard(mut chunks: impl Stream<Item = std::io::Result<bytes::Bytes>> + Unpin, budget: u64) {
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(chunk)) = chunks.next().await {
            read += chunk.len() as u64;
            if read > budget {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_FOR_AT_MOST, drain).await;
}

/// The route's limits; the configuration's defaults if none were attached.
fn limits(request: &Request) -> BodyLimits {
    request.data::<BodyLimits>().cloned().unwrap_or_else(|| {
        BodyLimits::new(
            DEFAULT_MAX_BODY_BYTES,
            DEFAULT_MAX_BATCH_BODY_BYTES,
            DEFAULT_MAX_BATCH_BYTES_IN_FLIGHT,
            DEFAULT_BODY_READ_TIMEOUT,
        )
    })
}

/// Reserves the batch's bytes of `MAX_BATCH_BYTES_IN_FLIGHT`, or refuses it at once.
fn reserve_batch(unread: &Unread) -> Result<OwnedSemaphorePermit, IngestError> {
    let limits = &unread.limits;
    let bytes = unread
        .head
        .declared_length
        .map_or(limits.batch, |len| usize::try_from(len).unwrap_or(usize::MAX).min(limits.batch));
    let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
    limits
        .batches_in_flight
        .clone()
        .try_acquire_many_owned(permits)
        .map_err(|_| IngestError::BatchesInFlight { limit: limits.batch_bytes_in_flight })
}

async fn read_event(unread: Unread) -> Result<Vec<u8>, IngestError> {
    let content_type = &unread.head.content_type;
    let essence = essence(content_type);
    if !essence.eq_ignore_ascii_case(JSON) && !essence.eq_ignore_ascii_case(TEXT) {
        return Err(unsupported(content_type, &format!("{JSON} (or {TEXT}, as sendBeacon sends it)")));
    }
    let limit = unread.limits.event;
    read(unread, limit).await
}

async fn read_batch(unread: Unread) -> ReadBatch {
    let content_type = unread.head.content_type.clone();
    let format = match essence(&content_type) {
        t if t.eq_ignore_ascii_case(JSON) => Some(BatchFormat::JsonArray),
        t if t.eq_ignore_ascii_case(NDJSON) => Some(BatchFormat::Ndjson),
        // sendBeacon: the text says which, by its first character.
        t if t.eq_ignore_ascii_case(TEXT) => None,
        _ => return Err(unsupported(&content_type, &format!("{JSON}, {NDJSON} or {TEXT}"))),
    };
    let limit = unread.limits.batch;
    let bytes = read(unread, limit).await?;
    let format = format.unwrap_or_else(|| match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => BatchFormat::JsonArray,
        _ => BatchFormat::Ndjson,
    });
    Ok((bytes, format))
}

impl<'a, T: Type + Send> ApiExtractor<'a> for EventBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "The event as JSON; `text/plain` (what `navigator.sendBeacon` sends a string as) is read as JSON too.",
            ),
            // `text/plain` is accepted but not listed: SDK generators refuse a JSON schema on it.
            content: vec![MetaMediaType { content_type: JSON, schema: T::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self { unread: Unread::of(request, body), _schema: PhantomData })
    }
}

impl<'a, T: Type + Send> ApiExtractor<'a> for BatchBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        Vec::<T>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "A JSON array of events, or NDJSON: one event object per line. `text/plain` (what `navigator.sendBeacon` sends a string as) holds either.",
            ),
            content: vec![
                MetaMediaType { content_type: JSON, schema: Vec::<T>::schema_ref() },
                MetaMediaType { content_type: NDJSON, schema: T::schema_ref() },
            ],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let unread = Unread::of(request, body);
        let (unread, reserved) = match reserve_batch(&unread) {
            Ok(reserved) => (Ok(unread), Some(reserved)),
            Err(refused) => (Err(refused), None),
        };
        Ok(Self { unread, reserved, _schema: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_essence() {
        assert_eq!(essence("Application/JSON; charset=utf-8"), "Application/JSON");
        assert_eq!(essence("application/x-ndjson"), NDJSON);
        assert_eq!(essence(""), "");
    }
}
