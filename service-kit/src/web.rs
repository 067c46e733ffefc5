//! The browser pages a service ships (ingest's demo player, query's dashboard): plain HTML, JS,
//! CSS and media from `web/`, compiled into the binary so that neither an image nor `make run`
//! needs files beside it.

use poem::endpoint::{make, make_sync};
use poem::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use poem::http::StatusCode;
use poem::web::{Redirect, StaticFileRequest};
use poem::{get, FromRequest, IntoResponse, Request, Response, Route};
use schemas::rows::fnv1a64;

/// A page: its files under `root` (`/demo` serves `/demo/`, `/demo/demo.js`, ...).
pub struct Page {
    pub root: &'static str,
    pub files: &'static [Asset],
}

/// One file of a page; the one named `""` is the page itself.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// `route` with the page's files. `root` itself redirects to `root/`, where the page's relative
/// links resolve; the redirect is relative too, so it holds behind a proxy that serves the
/// service under a path prefix. Browsers revalidate every file (`no-cache`) by its `ETag`, a
/// hash of its bytes, so a new build's page is seen at once and an unchanged one costs a 304.
/// Range requests are answered (a video element seeks with them).
pub fn serve(route: Route, page: &'static Page) -> Route {
    let last_segment = page.root.rsplit('/').next().unwrap_or_default();
    let index = format!("{last_segment}/");
    let route = route.at(page.root, get(make_sync(move |_| Redirect::permanent(index.clone()))));
    page.files.iter().fold(route, |route, asset| {
        let etag = format!("\"{:016x}\"", fnv1a64(asset.body.iter().copied()));
        route.at(
            format!("{}/{}", page.root, asset.name),
            get(make(move |request: Request| {
                let etag = etag.clone();
                async move {
                    if unchanged(&request, &etag) {
                        return Ok(Response::builder().status(StatusCode::NOT_MODIFIED).header(ETAG, etag).finish());
                    }
                    let file = StaticFileRequest::from_request_without_body(&request).await?;
                    let response = file.create_response_from_data(asset.body)?.with_content_type(asset.content_type);
                    Ok::<_, poem::Error>(
                        response.with_header(CACHE_CONTROL, "no-cache").with_header(ETAG, etag).into_response(),
                    )
                }
            })),
        )
    })
}

/// Whether the browser's copy is this one (`If-None-Match` lists its tag, weak or not, or `*`).
fn unchanged(request: &Request, etag: &str) -> bool {
    request
        .headers()
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The stylesheet every page shares.
pub const COMMON_CSS: Asset =
    Asset { name: "common.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../../web/common.css") };
