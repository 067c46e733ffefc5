//! The request id: the caller's `X-Request-Id` when it is a sensible one, else a new UUIDv7.
//! It is echoed in the answer's `X-Request-Id`, appears in every log line written while the
//! request is handled (a `request` span), and ingest records it with each event, so that one
//! id follows an event from the HTTP request through the stream to the aggregator's logs.

use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

/// The header read and answered.
pub const HEADER: &str = "x-request-id";

/// Longest id taken from a caller; a longer one is replaced.
pub const MAX_LEN: usize = 128;

/// The request's id, kept in its extensions for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The caller's id if it is 1 to [`MAX_LEN`] visible ASCII characters (safe in headers and
    /// logs), else a new one.
    pub fn from_header(value: Option<&str>) -> RequestId {
        match value {
            Some(id) if (1..=MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) => {
                RequestId(id.to_owned())
            }
            _ => RequestId(uuid::Uuid::now_v7().to_string()),
        }
    }
}

/// Gives `req` its id, handles it inside a `request` span carrying the id, and answers with the
/// id in `X-Request-Id`.
pub async fn with_request_id<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let id = RequestId::from_header(req.headers().get(HEADER).and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!("request", request_id = %id.0);
    req.extensions_mut().insert(id.clone());
    let mut response = next.call(req).instrument(span).await?.into_response();
    if let Ok(value) = poem::http::HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensible_ids_are_kept_and_others_replaced() {
        assert_eq!(RequestId::from_header(Some("req-42:abc")).0, "req-42:abc");
        for bad in [None, Some(""), Some("two words"), Some("ünïcode"), Some(&*"x".repeat(MAX_LEN + 1))] {
            let id = RequestId::from_header(bad).0;
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} gave {id}");
        }
    }
}
