//! The browser pages a service ships (ingest's demo player, query's dashboard): plain HTML, JS,
//! CSS and media from `web/`, compiled into the binary so that neither an image nor `make run`
//! needs files beside it.

use poem::endpoint::{make, make_sync};
use poem::http::header::CACHE_CONTROL;
use poem::web::{Redirect, StaticFileRequest};
use poem::{get, FromRequest, IntoResponse, Request, Route};

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
/// links resolve. Range requests are answered (a video element seeks with them); `no-cache`
/// has browsers revalidate, so a new build's page is seen at once.
pub fn serve(route: Route, page: &'static Page) -> Route {
    let index = format!("{}/", page.root);
    let route = route.at(page.root, get(make_sync(move |_| Redirect::permanent(index.clone()))));
    page.files.iter().fold(route, |route, asset| {
        route.at(
            format!("{}/{}", page.root, asset.name),
            get(make(move |request: Request| async move {
                let file = StaticFileRequest::from_request_without_body(&request).await?;
                let response = file.create_response_from_data(asset.body)?.with_content_type(asset.content_type);
                Ok::<_, poem::Error>(response.with_header(CACHE_CONTROL, "no-cache").into_response())
            })),
        )
    })
}

/// The stylesheet every page shares.
pub const COMMON_CSS: Asset = Asset { name: "common.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../../web/common.css") };
