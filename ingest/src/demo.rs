//! The demo ad player at `/demo/` (`web/demo/`): a sample video ad that sends its impression
//! and clicks to this service's own `POST /ads/impression` and `/ads/click`.

use service_kit::web::{Asset, Page, COMMON_CSS};

pub static DEMO_PAGE: Page = Page {
    root: "/demo",
    files: &[
        Asset { name: "", content_type: "text/html; charset=utf-8", body: include_bytes!("../../web/demo/index.html") },
        Asset { name: "demo.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../../web/demo/demo.js") },
        Asset { name: "sample-ad.webm", content_type: "video/webm", body: include_bytes!("../../web/demo/sample-ad.webm") },
        COMMON_CSS,
    ],
};
