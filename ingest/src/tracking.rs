//! What the tracking endpoints need besides the event path: where a click-through lands, and the
//! pixel an impression answers with.

use uuid::Uuid;

/// A transparent 1×1 GIF: the body of every `GET /i/{ad_id}.gif`.
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Keeps browsers and proxies from answering a later request for the pixel or the redirect
/// from their cache, which would not reach us and so not count.
pub const NO_CACHE: &str = "no-cache, no-store, must-revalidate, max-age=0";

/// The query parameter a click id travels in, to the advertiser's page.
pub const CLICK_ID_PARAM: &str = "click_id";

/// The ad's target URL (from the catalog, never from the request), with `click_id` added to
/// its query when one was given. A click id is URL-safe by the API's rule (`[A-Za-z0-9._~-]`).
pub fn landing_url(target_url: &str, click_id: Option<&str>) -> String {
    let Some(click_id) = click_id else { return target_url.to_owned() };
    let (before_fragment, fragment) = match target_url.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (target_url, None),
    };
    let separator = if before_fragment.contains('?') { '&' } else { '?' };
    let mut url = format!("{before_fragment}{separator}{CLICK_ID_PARAM}={click_id}");
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// The ad id of a pixel's file name, `<ad_id>.gif`.
pub fn pixel_ad_id(file: &str) -> Option<Uuid> {
    file.strip_suffix(".gif").and_then(|id| Uuid::parse_str(id).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_click_id_joins_the_targets_query() {
        assert_eq!(landing_url("https://shop.example.com/boots", None), "https://shop.example.com/boots");
        assert_eq!(
            landing_url("https://shop.example.com/boots", Some("abc")),
            "https://shop.example.com/boots?click_id=abc"
        );
        assert_eq!(
            landing_url("https://shop.example.com/b?utm=ad", Some("abc")),
            "https://shop.example.com/b?utm=ad&click_id=abc"
        );
        assert_eq!(
            landing_url("https://shop.example.com/b?x=1#top", Some("abc")),
            "https://shop.example.com/b?x=1&click_id=abc#top"
        );
    }

    #[test]
    fn pixel_names_are_an_ad_id_and_gif() {
        let id = Uuid::now_v7();
        assert_eq!(pixel_ad_id(&format!("{id}.gif")), Some(id));
        assert_eq!(pixel_ad_id(&id.to_string()), None);
        assert_eq!(pixel_ad_id("x.gif"), None);
    }

    #[test]
    fn the_pixel_is_a_1x1_gif() {
        assert_eq!(&PIXEL_GIF[..6], b"GIF89a");
        assert_eq!((PIXEL_GIF[6], PIXEL_GIF[8]), (1, 1), "width and height");
        assert_eq!(PIXEL_GIF.last(), Some(&0x3b), "trailer");
    }
}
