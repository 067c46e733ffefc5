//! A request body that documents `T` in the OpenAPI spec but is read as raw bytes, so that
//! parsing and every rejection (with its field) stay in `schemas::input`.

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::error::IngestError;

/// The body size limit, attached to the route as request data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub struct EventBody<T> {
    bytes: Result<Vec<u8>, IngestError>,
    _schema: PhantomData<T>,
}

impl<T> EventBody<T> {
    pub fn into_bytes(self) -> Result<Vec<u8>, IngestError> {
        self.bytes
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

async fn read(request: &Request, body: &mut RequestBody) -> Result<Vec<u8>, IngestError> {
    let content_type = request.content_type().unwrap_or("");
    if !is_json(content_type) {
        let shown = if content_type.is_empty() { "nothing" } else { content_type };
        return Err(IngestError::UnsupportedMediaType(shown.to_owned()));
    }
    let limit = request.data::<BodyLimit>().map_or(16 * 1024, |l| l.0);
    let too_large = || IngestError::PayloadTooLarge { limit };
    let declared = request
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let body = body.take().map_err(|e| IngestError::BodyRead(e.to_string()))?;
    match body.into_bytes_limit(limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(too_large()),
        Err(e) => Err(IngestError::BodyRead(e.to_string())),
    }
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
            description: None,
            content: vec![MetaMediaType { content_type: "application/json", schema: T::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self { bytes: read(request, body).await, _schema: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonp"));
        assert!(!is_json(""));
    }
}
