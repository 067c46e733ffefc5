//! The operations a service's OpenAPI document declares: each path template, and the query
//! parameters each method on it takes. [`crate::http_metrics`] labels requests by template, and
//! [`KnownQueryParameters`] refuses a query string that names a parameter its operation does not
//! take (400, naming it), as request bodies refuse unknown fields: a misspelt `?start=` would
//! otherwise be ignored, and the answer to another question (the default window) sent with 200.
//! Operations that browsers reach through links and pixels can be exempted: ad platforms append
//! their own parameters (`gclid`, `fbclid`, `utm_*`) to the links they are given, and the person
//! following one must still reach the ad's page.

use std::collections::HashMap;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use serde_json::Value;

use crate::Problem;

/// Path templates (`/ads/{ad_id}/analytics`), matched against request paths.
#[derive(Debug, Clone, Default)]
pub struct PathTemplates {
    /// Each template with its segments; `None` stands for a `{parameter}`. Fewer parameters
    /// first, so that `/ads/analytics` wins over `/ads/{ad_id}`.
    templates: Vec<(String, Vec<Option<String>>)>,
}

impl PathTemplates {
    pub fn new<S: Into<String>>(templates: impl IntoIterator<Item = S>) -> Self {
        let mut templates: Vec<(String, Vec<Option<String>>)> = templates
            .into_iter()
            .map(|template| {
                let template = template.into();
                let segments = segments(&template).map(|s| (!s.starts_with('{')).then(|| s.to_owned())).collect();
                (template, segments)
            })
            .collect();
        templates.sort_by_key(|(_, segments)| segments.iter().filter(|s| s.is_none()).count());
        Self { templates }
    }

    /// The template `path` matches, if one does.
    pub fn matching(&self, path: &str) -> Option<&str> {
        let given: Vec<&str> = segments(path).collect();
        self.templates
            .iter()
            .find(|(_, template)| {
                template.len() == given.len()
                    && template.iter().zip(&given).all(|(t, g)| t.as_deref().is_none_or(|t| t == *g))
            })
            .map(|(template, _)| template.as_str())
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// One operation's name and the query parameters it takes.
#[derive(Debug, Clone)]
struct Operation {
    id: String,
    query: Vec<String>,
    /// Other query parameters are ignored rather than refused.
    open: bool,
}

/// Every operation of an OpenAPI document, by path template and method.
#[derive(Debug, Clone, Default)]
pub struct Operations {
    paths: PathTemplates,
    /// By (template, lowercase method).
    operations: HashMap<(String, String), Operation>,
}

/// An OpenAPI document's HTTP methods (the keys of a path item that are operations).
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

impl Operations {
    /// The operations of `spec`, an OpenAPI 3 document (JSON).
    pub fn from_spec(spec: &str) -> Result<Self, serde_json::Error> {
        let doc: Value = serde_json::from_str(spec)?;
        let mut operations = HashMap::new();
        let empty = serde_json::Map::new();
        let paths = doc.get("paths").and_then(Value::as_object).unwrap_or(&empty);
        for (template, item) in paths {
            for method in METHODS {
                let Some(operation) = item.get(method) else { continue };
                let query = operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
                    .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                let id = operation.get("operationId").and_then(Value::as_str).unwrap_or(template).to_owned();
                operations.insert((template.clone(), method.to_owned()), Operation { id, query, open: false });
            }
        }
        Ok(Self { paths: PathTemplates::new(paths.keys().cloned()), operations })
    }

    /// These operations (by `operationId`) ignore query parameters they do not take.
    pub fn ignoring_unknown_query_parameters(mut self, operation_ids: &[&str]) -> Self {
        for operation in self.operations.values_mut() {
            operation.open |= operation_ids.contains(&operation.id.as_str());
        }
        self
    }

    /// The document's path templates.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.paths.templates.iter().map(|(template, _)| template.as_str())
    }

    /// Why `query` (a raw query string) does not fit the operation at `method path`: the first
    /// parameter it names that the operation does not take. `None` when every name is known,
    /// or no operation answers there (another route, or poem's 404 and 405).
    pub fn unknown_query_parameter(&self, method: &str, path: &str, query: &str) -> Option<Problem> {
        let template = self.paths.matching(path)?;
        let operation = self.operations.get(&(template.to_owned(), method.to_ascii_lowercase())).filter(|o| !o.open)?;
        let unknown = url::form_urlencoded::parse(query.as_bytes())
            .map(|(name, _)| name)
            .find(|name| !operation.query.iter().any(|known| known == name))?;
        let takes = match operation.query.as_slice() {
            [] => "no query parameters".to_owned(),
            known => format!("only {}", known.join(", ")),
        };
        let detail = format!("unknown query parameter {unknown:?}: {} takes {takes}", operation.id);
        Some(Problem::new(StatusCode::BAD_REQUEST, detail, Some(&unknown)))
    }
}

/// `app.with(KnownQueryParameters::new(operations))`: a request naming a query parameter its
/// operation does not take gets a 400 problem naming it, before the operation runs.
#[derive(Clone)]
pub struct KnownQueryParameters {
    operations: Arc<Operations>,
}

impl KnownQueryParameters {
    pub fn new(operations: Operations) -> Self {
        Self { operations: Arc::new(operations) }
    }
}

impl<E: Endpoint> Middleware<E> for KnownQueryParameters {
    type Output = KnownQueryParametersEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        KnownQueryParametersEndpoint { inner, operations: self.operations.clone() }
    }
}

pub struct KnownQueryParametersEndpoint<E> {
    inner: E,
    operations: Arc<Operations>,
}

impl<E: Endpoint> Endpoint for KnownQueryParametersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let query = req.uri().query().unwrap_or("");
        if !query.is_empty() {
            if let Some(problem) =
                self.operations.unknown_query_parameter(req.method().as_str(), req.uri().path(), query)
            {
                return Ok(problem.into_response());
            }
        }
        Ok(self.inner.call(req).await?.into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"paths": {
        "/ads": {"get": {"operationId": "listAds", "parameters": [{"name": "page", "in": "query"}, {"name": "limit", "in": "query"}]},
                 "post": {"operationId": "createAd"}},
        "/ads/analytics": {"get": {"operationId": "getAdsAnalytics", "parameters": [{"name": "from", "in": "query"}, {"name": "to", "in": "query"}]}},
        "/ads/{ad_id}": {"get": {"operationId": "getAd", "parameters": [{"name": "ad_id", "in": "path"}]}}
    }}"#;

    fn unknown(operations: &Operations, method: &str, path: &str, query: &str) -> Option<(Option<String>, String)> {
        operations.unknown_query_parameter(method, path, query).map(|p| (p.field, p.detail))
    }

    #[test]
    fn templates_match_paths_literal_segments_first() {
        let paths = PathTemplates::new(["/ads/{ad_id}", "/ads/analytics", "/ads"]);
        assert_eq!(paths.matching("/ads/analytics"), Some("/ads/analytics"));
        assert_eq!(paths.matching("/ads/0193a5c2-7b1e-7c3d-9f00-2a6b1c4d5e6f"), Some("/ads/{ad_id}"));
        assert_eq!(paths.matching("/ads/"), Some("/ads"));
        assert_eq!(paths.matching("/ads/x/y"), None);
    }

    #[test]
    fn a_parameter_the_operation_does_not_take_is_named() {
        let operations = Operations::from_spec(SPEC).unwrap();
        assert_eq!(
            unknown(&operations, "GET", "/ads/analytics", "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"),
            None
        );
        let (field, detail) =
            unknown(&operations, "GET", "/ads/analytics", "start=2026-01-01T00:00:00Z&end=x").unwrap();
        assert_eq!(field.as_deref(), Some("start"));
        assert!(detail.contains("getAdsAnalytics takes only from, to"), "{detail}");
        // Names are compared decoded and case-sensitive: `%74o` is `to`, `From` is not `from`.
        assert_eq!(unknown(&operations, "GET", "/ads/analytics", "%74o=x"), None);
        assert_eq!(unknown(&operations, "GET", "/ads/analytics", "From=x").unwrap().0.as_deref(), Some("From"));
        // Path parameters are not query parameters; an operation without any takes none.
        assert_eq!(
            unknown(&operations, "GET", "/ads/a1000000-0000-4000-8000-000000000001", "ad_id=x").unwrap().0.as_deref(),
            Some("ad_id")
        );
        assert!(unknown(&operations, "POST", "/ads", "page=1")
            .unwrap()
            .1
            .contains("createAd takes no query parameters"));
        assert_eq!(unknown(&operations, "get", "/ads", "page=2&limit=5"), None);
    }

    #[test]
    fn requests_outside_the_operations_are_left_alone() {
        let operations = Operations::from_spec(SPEC).unwrap().ignoring_unknown_query_parameters(&["getAd"]);
        assert_eq!(
            unknown(&operations, "GET", "/ads/a1000000-0000-4000-8000-000000000001", "gclid=x"),
            None,
            "an exempted operation"
        );
        assert!(unknown(&operations, "GET", "/ads", "gclid=x").is_some(), "the others are not");
        assert_eq!(unknown(&operations, "GET", "/demo/", "ad_id=x"), None, "not an operation's path");
        assert_eq!(unknown(&operations, "PUT", "/ads", "x=1"), None, "no such method: poem answers 405");
    }
}
