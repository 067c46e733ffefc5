//! The live dashboard at `/dashboard/` (`web/dashboard/`): charts and a table of ads drawn in
//! the browser from this service's own analytics operations.

use service_kit::web::{Asset, Page, COMMON_CSS};

pub static DASHBOARD_PAGE: Page = Page {
    root: "/dashboard",
    files: &[
        Asset {
            name: "",
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("../../web/dashboard/index.html"),
        },
        Asset {
            name: "dashboard.js",
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("../../web/dashboard/dashboard.js"),
        },
        Asset {
            name: "charts.js",
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("../../web/dashboard/charts.js"),
        },
        COMMON_CSS,
    ],
};
