//! The demo ad player at `/demo/` (`web/demo/`): an ad of the catalog, chosen by `ad.json`, that
//! sends its impression and clicks to this service's own `POST /ads/impression` and `/ads/click`.

use std::collections::HashMap;
use std::sync::Arc;

use poem::endpoint::make_sync;
use poem::http::header::{CACHE_CONTROL, RETRY_AFTER};
use poem::http::StatusCode;
use poem::web::Json;
use poem::{get, IntoResponse, Request, Response, Route};
use rand::seq::IteratorRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use service_kit::catalog::{Catalog, CatalogAd};
use service_kit::web::{Asset, Page, COMMON_CSS};
use service_kit::Problem;
use uuid::Uuid;

pub static DEMO_PAGE: Page = Page {
    root: "/demo",
    files: &[
        Asset { name: "", content_type: "text/html; charset=utf-8", body: include_bytes!("../../web/demo/index.html") },
        Asset {
            name: "demo.js",
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("../../web/demo/demo.js"),
        },
        Asset {
            name: "sample-ad.webm",
            content_type: "video/webm",
            body: include_bytes!("../../web/demo/sample-ad.webm"),
        },
        COMMON_CSS,
    ],
};

/// `route` with the demo page's files and its `ad.json`, the ad it plays.
pub fn serve(route: Route, catalog: Arc<Catalog>) -> Route {
    service_kit::web::serve(route, &DEMO_PAGE)
        .at(format!("{}/ad.json", DEMO_PAGE.root), get(make_sync(move |request| ad_json(&catalog, &request))))
}

/// The ad the demo plays: the body of `GET /demo/ad.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemoAd {
    pub ad_id: Uuid,
    pub title: String,
    pub media_url: String,
    /// Shown even when false, so that the demo can show ingest refusing an inactive ad's events.
    pub active: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DemoAdError {
    #[error("ad_id: {0}")]
    MalformedAdId(String),
    #[error("unknown ad {0}")]
    UnknownAd(Uuid),
    #[error("the catalog has no active ad")]
    NoActiveAd,
    #[error("the ad catalog is not loaded yet; retry shortly")]
    CatalogNotLoaded,
}

impl DemoAdError {
    fn problem(&self) -> Problem {
        let (status, field) = match self {
            DemoAdError::MalformedAdId(_) => (StatusCode::BAD_REQUEST, Some("ad_id")),
            DemoAdError::UnknownAd(_) => (StatusCode::NOT_FOUND, Some("ad_id")),
            DemoAdError::NoActiveAd => (StatusCode::NOT_FOUND, None),
            DemoAdError::CatalogNotLoaded => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        Problem::new(status, self.to_string(), field)
    }
}

/// The ad to play: `requested`, active or not, or else a random active ad, as an ad server
/// would pick one. `ads` is the catalog's copy, `None` while it never loaded.
pub fn choose_ad(
    ads: Option<&HashMap<Uuid, CatalogAd>>,
    requested: Option<Uuid>,
    rng: &mut impl Rng,
) -> Result<DemoAd, DemoAdError> {
    let ads = ads.ok_or(DemoAdError::CatalogNotLoaded)?;
    let (ad_id, ad) = match requested {
        Some(ad_id) => ads.get_key_value(&ad_id).ok_or(DemoAdError::UnknownAd(ad_id))?,
        None => ads.iter().filter(|(_, ad)| ad.active).choose(rng).ok_or(DemoAdError::NoActiveAd)?,
    };
    Ok(DemoAd { ad_id: *ad_id, title: ad.title.clone(), media_url: ad.media_url.clone(), active: ad.active })
}

#[derive(Deserialize)]
struct AdQuery {
    ad_id: Option<String>,
}

/// `?ad_id=` as an id, `None` without one.
fn requested_ad_id(request: &Request) -> Result<Option<Uuid>, DemoAdError> {
    let query: AdQuery = request.params().map_err(|e| DemoAdError::MalformedAdId(e.to_string()))?;
    query
        .ad_id
        .map(|id| Uuid::parse_str(&id).map_err(|e| DemoAdError::MalformedAdId(format!("not a UUID ({e})"))))
        .transpose()
}

fn ad_json(catalog: &Catalog, request: &Request) -> Response {
    let chosen =
        requested_ad_id(request).and_then(|requested| choose_ad(catalog.ads().as_deref(), requested, &mut rand::rng()));
    match chosen {
        // Each load of the page picks anew.
        Ok(ad) => Json(ad).with_header(CACHE_CONTROL, "no-store").into_response(),
        Err(error @ DemoAdError::CatalogNotLoaded) => {
            error.problem().into_response().with_header(RETRY_AFTER, "1").into_response()
        }
        Err(error) => error.problem().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ad(active: bool, title: &str) -> CatalogAd {
        CatalogAd {
            active,
            target_url: "https://shop.example.com/".into(),
            title: title.into(),
            media_url: format!("https://cdn.example.com/{title}.webm"),
        }
    }

    #[test]
    fn a_named_ad_is_played_active_or_not() {
        let (boots, retired) = (Uuid::now_v7(), Uuid::now_v7());
        let ads = HashMap::from([(boots, ad(true, "boots")), (retired, ad(false, "retired"))]);
        let mut rng = StdRng::seed_from_u64(1);
        let chosen = choose_ad(Some(&ads), Some(retired), &mut rng);
        let expected = DemoAd {
            ad_id: retired,
            title: "retired".into(),
            media_url: "https://cdn.example.com/retired.webm".into(),
            active: false,
        };
        assert_eq!(chosen, Ok(expected));
        let unknown = Uuid::now_v7();
        assert_eq!(choose_ad(Some(&ads), Some(unknown), &mut rng), Err(DemoAdError::UnknownAd(unknown)));
    }

    #[test]
    fn without_a_name_any_active_ad_and_only_those() {
        let active: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut ads: HashMap<Uuid, CatalogAd> = active.iter().map(|id| (*id, ad(true, "on"))).collect();
        ads.extend((0..3).map(|_| (Uuid::now_v7(), ad(false, "off"))));
        let mut rng = StdRng::seed_from_u64(7);
        let chosen: std::collections::HashSet<Uuid> = (0..200)
            .map(|_| choose_ad(Some(&ads), None, &mut rng).map(|ad| ad.ad_id))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chosen, active.into_iter().collect(), "every active ad in turn, never an inactive one");
    }

    #[test]
    fn no_ad_to_choose() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(choose_ad(None, None, &mut rng), Err(DemoAdError::CatalogNotLoaded));
        assert_eq!(DemoAdError::CatalogNotLoaded.problem().status, 503);
        assert_eq!(choose_ad(None, Some(Uuid::now_v7()), &mut rng), Err(DemoAdError::CatalogNotLoaded));
        let retired = HashMap::from([(Uuid::now_v7(), ad(false, "retired"))]);
        assert_eq!(choose_ad(Some(&retired), None, &mut rng), Err(DemoAdError::NoActiveAd));
        assert_eq!(choose_ad(Some(&HashMap::new()), None, &mut rng), Err(DemoAdError::NoActiveAd));
    }

    #[test]
    fn the_requested_id_is_read_from_the_query() {
        let id = Uuid::now_v7();
        let requested = |path: &str| requested_ad_id(&Request::builder().uri_str(path).finish());
        assert_eq!(requested("/demo/ad.json"), Ok(None));
        assert_eq!(requested("/demo/ad.json?other=1"), Ok(None));
        assert_eq!(requested(&format!("/demo/ad.json?ad_id={id}")), Ok(Some(id)));
        for malformed in
            ["/demo/ad.json?ad_id=", "/demo/ad.json?ad_id=not-an-id", &format!("/demo/ad.json?ad_id={id}&ad_id={id}")]
        {
            let error = requested(malformed).expect_err(malformed);
            assert_eq!(error.problem().field.as_deref(), Some("ad_id"), "{malformed}");
            assert_eq!(error.problem().status, 400, "{malformed}");
        }
    }
}
