//! JSON request bodies whose parse errors name the offending field.
//!
//! poem-openapi's `Json<T>` reports why an object failed to parse ("failed to parse
//! \"string\": ...") but not which property failed. [`JsonBody`] reads the body the same way,
//! documents the same schema, and on failure finds the property at fault, so that the 400's
//! problem has its `field` like every other error of the API.

use poem::{Request, RequestBody};
use poem_openapi::error::ContentTypeError;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaRequest, Registry};
use poem_openapi::types::{Example, ParseFromJSON, ToJSON};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::{Map, Value};

/// A JSON object body, documented and parsed as `Json<T>`.
pub struct JsonBody<T>(pub T);

/// Largest body read: an ad is a few hundred bytes; anything near this is not one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body is JSON but not a valid `T`.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct InvalidBody {
    /// The property at fault, when one is: unknown, missing, or of the wrong type or format.
    pub field: Option<String>,
    pub detail: String,
}

impl poem::error::ResponseError for InvalidBody {
    fn status(&self) -> poem::http::StatusCode {
        poem::http::StatusCode::BAD_REQUEST
    }
}

impl<'a, T> ApiExtractor<'a> for JsonBody<T>
where
    T: ParseFromJSON + ToJSON + Example + Send,
{
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Json<T> as ApiExtractor>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        <Json<T> as ApiExtractor>::request_meta()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // The content type as `Json<T>` checks it.
        match request.content_type() {
            Some(content_type) if <Json<Value> as Payload>::check_content_type(content_type) => {}
            Some(content_type) => {
                return Err(ContentTypeError::NotSupported { content_type: content_type.to_owned() }.into())
            }
            None => return Err(ContentTypeError::ExpectContentType.into()),
        }
        let bytes = body.take()?.into_bytes_limit(MAX_BODY_BYTES).await.map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => {
                InvalidBody { field: None, detail: format!("the body is larger than {MAX_BODY_BYTES} bytes") }
            }
            other => InvalidBody { field: None, detail: format!("the body could not be read: {other}") },
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| InvalidBody { field: None, detail: format!("the body is not JSON: {e}") })?;
        parse(value).map(JsonBody).map_err(poem::Error::from)
    }
}

/// `value` as a `T`, or what is wrong with it and where.
fn parse<T: ParseFromJSON + ToJSON + Example>(value: Value) -> Result<T, InvalidBody> {
    match T::parse_from_json(Some(value.clone())) {
        Ok(parsed) => Ok(parsed),
        Err(e) => {
            let field = offending_field::<T>(&value);
            let reason = format!("failed to parse \"{}\": {}", T::name(), e.into_message());
            let detail = match &field {
                Some(field) => format!("{field}: {reason}"),
                None => reason,
            };
            Err(InvalidBody { field, detail })
        }
    }
}

/// The first property of `given` that makes `T`'s valid example fail when put into it, or else
/// the first property of the example that cannot be left out and `given` lacks. The checks are
/// `T`'s own, so this names the field the parser refused, whatever its rule.
fn offending_field<T: ParseFromJSON + ToJSON + Example>(given: &Value) -> Option<String> {
    let Value::Object(given) = given else { return None };
    let Some(Value::Object(valid)) = T::example().to_json() else { return None };
    let fails = |object: Map<String, Value>| T::parse_from_json(Some(Value::Object(object))).is_err();
    let wrong = given.iter().find(|&(name, value)| {
        let mut object = valid.clone();
        object.insert(name.clone(), value.clone());
        fails(object)
    });
    if let Some((name, _)) = wrong {
        return Some(name.clone());
    }
    valid
        .keys()
        .filter(|name| !given.contains_key(*name))
        .find(|&name| {
            let mut object = valid.clone();
            object.remove(name);
            fails(object)
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::model::{AdChanges, NewAd};

    fn new_ad() -> Value {
        NewAd::example().to_json().expect("example")
    }

    fn field_of<T: ParseFromJSON + ToJSON + Example>(value: Value) -> Option<String> {
        parse::<T>(value).err().expect("should not parse").field
    }

    #[test]
    fn each_kind_of_mistake_names_its_field() {
        let with = |name: &str, value: Value| {
            let mut ad = new_ad();
            ad[name] = value;
            ad
        };
        assert_eq!(field_of::<NewAd>(with("budget", json!(100))).as_deref(), Some("budget"));
        assert_eq!(field_of::<NewAd>(with("title", json!(5))).as_deref(), Some("title"));
        assert_eq!(field_of::<NewAd>(with("target_url", json!("javascript:alert(1)"))).as_deref(), Some("target_url"));
        assert_eq!(field_of::<NewAd>(with("id", json!("not-a-uuid"))).as_deref(), Some("id"));
        let mut missing = new_ad();
        missing.as_object_mut().expect("object").remove("campaign_id");
        assert_eq!(field_of::<NewAd>(missing).as_deref(), Some("campaign_id"));
        assert_eq!(field_of::<AdChanges>(json!({"active": "yes"})).as_deref(), Some("active"));
    }

    #[test]
    fn the_detail_says_the_field_and_the_reason() {
        let error = parse::<AdChanges>(json!({"title": "ok", "colour": "red"})).expect_err("unknown field");
        assert_eq!(error.field.as_deref(), Some("colour"));
        assert!(error.detail.starts_with("colour: failed to parse \"AdChanges\""), "{}", error.detail);
        let error = parse::<AdChanges>(json!([1, 2])).expect_err("not an object");
        assert_eq!(error.field, None);
    }

    #[test]
    fn valid_bodies_parse() {
        assert!(parse::<NewAd>(new_ad()).is_ok());
        assert!(parse::<AdChanges>(json!({})).is_ok());
    }
}
