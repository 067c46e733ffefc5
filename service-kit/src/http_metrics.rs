//! `http_request_duration_seconds{method, route, status}`: every answer of every service, timed
//! from the request's arrival to its response.
//!
//! `route` is the path's template (`/ads/{ad_id}/analytics`), never the path itself, so that
//! ids do not make a series each; a path no template matches is `unmatched`. The templates come
//! from the service's OpenAPI document plus the operational routes.

use std::sync::Arc;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use prometheus::{HistogramOpts, HistogramVec, Registry};

use crate::operations::{Operations, PathTemplates};

/// The routes every service has besides its API (see [`crate::with_ops_routes`]).
const OPS_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// Swagger UI and its files, which every service with an API serves.
const DOCS_ROUTE: &str = "/docs";

/// The label of a path that matches no route.
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone)]
pub struct HttpMetrics {
    durations: HistogramVec,
    routes: Arc<PathTemplates>,
    /// Routes that stand for everything under them: `/docs` and the service's pages.
    prefixes: Arc<Vec<String>>,
}

impl HttpMetrics {
    /// Registers the histogram in `registry`; `operations` are the service's OpenAPI document's,
    /// whose paths are the templates, and `pages` the service's [`crate::web`] pages, each
    /// labelled by its root for all its files.
    pub fn new(
        registry: &Registry,
        operations: &Operations,
        pages: &[&crate::web::Page],
    ) -> Result<Self, prometheus::Error> {
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "From a request's arrival to its response, by route template and status",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(durations.clone()))?;
        let routes = PathTemplates::new(operations.templates().chain(OPS_ROUTES.iter().copied()).map(str::to_owned));
        let prefixes = std::iter::once(DOCS_ROUTE).chain(pages.iter().map(|p| p.root)).map(str::to_owned).collect();
        Ok(Self { durations, routes: Arc::new(routes), prefixes: Arc::new(prefixes) })
    }

    /// The template `path` matches, or [`UNMATCHED`]. A page's files count as the page
    /// (Swagger UI's as `/docs`).
    pub fn route(&self, path: &str) -> &str {
        if let Some(page) = self
            .prefixes
            .iter()
            .find(|p| path.strip_prefix(p.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
        {
            return page;
        }
        self.routes.matching(path).unwrap_or(UNMATCHED)
    }

    /// Answers `req` with `next` and records how long that took.
    async fn observe<E: Endpoint>(&self, next: &E, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let method = method_label(req.method());
        let route = self.route(req.uri().path()).to_owned();
        let response = next.call(req).await?.into_response();
        self.durations
            .with_label_values(&[method, route.as_str(), response.status().as_str()])
            .observe(started.elapsed().as_secs_f64());
        Ok(response)
    }
}

/// The standard methods by name; any other (a client may send any token) is `other`, so that
/// clients cannot make new series.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(known, _)| known == method).map_or("other", |(_, name)| name)
}

/// `app.with(http_metrics)` times every answer of `app`. Apply it after `catch_all_error`, so
/// that errors are counted with the status they are answered with.
impl<E: Endpoint> Middleware<E> for HttpMetrics {
    type Output = Observed<E>;

    fn transform(&self, inner: E) -> Observed<E> {
        Observed { inner, metrics: self.clone() }
    }
}

/// An endpoint whose answers [`HttpMetrics`] times.
pub struct Observed<E> {
    inner: E,
    metrics: HttpMetrics,
}

impl<E: Endpoint> Endpoint for Observed<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        self.metrics.observe(&self.inner, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_labelled_by_their_template() {
        let spec = r#"{"paths": {"/ads": {}, "/ads/analytics": {}, "/ads/{ad_id}": {}, "/ads/{ad_id}/analytics": {}}}"#;
        static DEMO: crate::web::Page = crate::web::Page { root: "/demo", files: &[] };
        let metrics = HttpMetrics::new(&Registry::new(), &Operations::from_spec(spec).unwrap(), &[&DEMO]).unwrap();
        assert_eq!(metrics.route("/ads"), "/ads");
        assert_eq!(metrics.route("/ads/analytics"), "/ads/analytics");
        assert_eq!(metrics.route("/ads/0193a5c2-7b1e-7c3d-9f00-2a6b1c4d5e6f"), "/ads/{ad_id}");
        assert_eq!(metrics.route("/ads/0193a5c2-7b1e-7c3d-9f00-2a6b1c4d5e6f/analytics"), "/ads/{ad_id}/analytics");
        assert_eq!(metrics.route("/readyz"), "/readyz");
        assert_eq!(metrics.route("/docs/swagger-ui.css"), "/docs");
        assert_eq!(metrics.route("/demo/sample-ad.webm"), "/demo");
        assert_eq!(metrics.route("/demo"), "/demo");
        assert_eq!(metrics.route("/demos"), UNMATCHED);
        assert_eq!(metrics.route("/dashboard/"), UNMATCHED, "another service's page");
        assert_eq!(metrics.route("/ads/x/y/z"), UNMATCHED);
        assert_eq!(metrics.route("/wp-login.php"), UNMATCHED);
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&poem::http::Method::POST), "POST");
        assert_eq!(method_label(&poem::http::Method::from_bytes(b"FOO1").unwrap()), "other");
    }
}
