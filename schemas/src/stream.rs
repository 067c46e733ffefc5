//! JetStream names. Subjects are `<prefix>.click` and `<prefix>.impression` so an operator can
//! replay one kind with `nats consumer add --filter ads.events.click`.

use crate::EventKind;

/// Default name of the stream that holds every accepted event (the source of truth).
pub const DEFAULT_STREAM: &str = "AD_EVENTS";
/// Default subject prefix; the stream captures `<prefix>.>`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "ads.events";
/// Default durable consumer name of the aggregator.
pub const DEFAULT_CONSUMER: &str = "aggregator";

/// Header carrying the event's schema version, so tools can route without parsing the body.
pub const SCHEMA_VERSION_HEADER: &str = "Ads-Schema-Version";

/// Header carrying the id of the HTTP request whose events a message holds, when they all came
/// in one request (a single event, or a batch); each event also carries it as `request_id`.
pub const REQUEST_ID_HEADER: &str = "Ads-Request-Id";

/// The subject an event of `kind` is published on.
pub fn subject(prefix: &str, kind: EventKind) -> String {
    format!("{prefix}.{}", kind.as_str())
}

/// The wildcard the stream captures.
pub fn stream_subjects(prefix: &str) -> String {
    format!("{prefix}.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_prefix() {
        assert_eq!(subject("ads.events", EventKind::Click), "ads.events.click");
        assert_eq!(subject("x", EventKind::Impression), "x.impression");
        assert_eq!(stream_subjects("ads.events"), "ads.events.>");
    }
}
