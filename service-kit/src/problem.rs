//! `Problem`, the one error shape of every answer (RFC 9457).

use poem::http::StatusCode;
use poem::Response;

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every error answer of every service and operation: RFC 9457 problem details, sent as
/// `application/problem+json`.
#[derive(Debug, Clone, poem_openapi::Object)]
#[oai(example)]
pub struct Problem {
    /// Always `about:blank`: the HTTP status is the kind of problem (RFC 9457, section 4.2.1);
    /// `field` and `detail` say what to fix.
    #[oai(rename = "type")]
    pub problem_type: String,
    /// The status's standard phrase, e.g. `Unprocessable Entity`.
    pub title: String,
    /// The HTTP status code, repeated for clients that keep only the body.
    pub status: u16,
    /// What is wrong with this request, for people.
    pub detail: String,
    /// The request field or parameter at fault, when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: field.map(str::to_owned),
        }
    }

    /// The whole answer, for errors raised outside the OpenAPI operations (unknown paths,
    /// methods, oversized headers).
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = poem_openapi::types::ToJSON::to_json_string(&self);
        Response::builder().status(status).content_type(PROBLEM_JSON).body(body)
    }
}

/// A query or path parameter poem-openapi could not parse or validate, as a 400 problem naming
/// it; `path_param` is the name of the operation's one path parameter (poem-openapi's path
/// errors do not carry it).
pub fn parameter_problem(error: &poem::Error, path_param: &'static str) -> Problem {
    if let Some(e) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        return Problem::new(StatusCode::BAD_REQUEST, format!("{path_param}: {}", e.reason), Some(path_param));
    }
    let field = error.downcast_ref::<poem_openapi::error::ParseParamError>().map(|e| e.name);
    Problem::new(StatusCode::BAD_REQUEST, error.to_string(), field)
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ad 0b0e7a4c-5a0e-4a53-9d8f-1f2e3d4c5b6a is inactive",
            Some("ad_id"),
        )
    }
}

/// Answers every error that escapes the OpenAPI operations (404 for an unknown path, 405 for a
/// wrong method, ...) as a [`Problem`], so that clients meet one error shape everywhere.
pub async fn problem_for_error(error: poem::Error) -> Response {
    let status = error.status();
    let detail = if status == StatusCode::NOT_FOUND { "no such path".to_owned() } else { error.to_string() };
    Problem::new(status, detail, None).into_response()
}
