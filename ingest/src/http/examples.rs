//! The examples shown in the spec and Swagger UI.

use poem::http::StatusCode;
use poem_openapi::types::Example;
use service_kit::Problem;
use time::macros::datetime;
use uuid::{uuid, Uuid};

use super::requests::*;
use super::responses::*;

const EVENT_ID: Uuid = uuid!("0193a5c2-7b1e-7c3d-9f00-2a6b1c4d5e6f");
const AD_ID: Uuid = uuid!("a1000000-0000-4000-8000-000000000001");

impl Example for ClickRequest {
    fn example() -> Self {
        ClickRequest {
            event_id: Some(EVENT_ID),
            ad_id: AD_ID,
            timestamp: Some(datetime!(2026-11-22 10:15:30 UTC)),
            playback_time_secs: Some(12.5),
            watched_percent: Some(40.0),
            country: Some("FR".to_owned()),
        }
    }
}

impl Example for ImpressionRequest {
    fn example() -> Self {
        ImpressionRequest {
            event_id: Some(EVENT_ID),
            ad_id: AD_ID,
            timestamp: Some(datetime!(2026-11-22 10:15:00 UTC)),
            country: None,
        }
    }
}

impl Example for AcceptedBody {
    fn example() -> Self {
        AcceptedBody { event_id: EVENT_ID, status: AcceptStatus::Accepted }
    }
}

impl Example for UnavailableProblem {
    fn example() -> Self {
        UnavailableProblem {
            problem: Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "JetStream did not confirm the event within 5000 ms",
                None,
            ),
            event_id: Some(EVENT_ID),
        }
    }
}

impl Example for BatchResult {
    fn example() -> Self {
        BatchResult {
            accepted: 1,
            duplicates: 0,
            rejected: 1,
            unavailable: 0,
            results: vec![
                ItemResult { status: ItemStatus::Accepted, event_id: Some(EVENT_ID), error: None, field: None },
                ItemResult {
                    status: ItemStatus::Rejected,
                    event_id: None,
                    error: Some("ad a1000000-0000-4000-8000-000000000004 is inactive".to_owned()),
                    field: Some("ad_id".to_owned()),
                },
            ],
        }
    }
}
