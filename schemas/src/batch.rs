//! What clients send to `POST /ads/events`: many clicks and impressions in one request.
//!
//! A batch is a JSON array of items, or NDJSON (one item per line). An item is a click or an
//! impression body with a `"type"` field saying which. Each item passes or fails on its own:
//! one bad item never costs the others. Only a body that cannot be split into items at all (a
//! broken JSON array) or that holds too many items is rejected whole.

use serde_json::{Map, Value};

use crate::input::{parse_json, wrong_type, RequestContext, TimestampLimits};
use crate::{AdEvent, ClickInput, EventKind, ImpressionInput, InputError};

/// How the items of a batch are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// `application/json`: one JSON array.
    JsonArray,
    /// `application/x-ndjson`: one JSON object per line; blank lines are skipped.
    Ndjson,
}

/// A whole batch refused before any item is looked at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchRejection {
    #[error("{0}")]
    Input(InputError),
    #[error("a batch holds at most {max} events, this one {count}: split it")]
    TooManyEvents { count: usize, max: usize },
}

/// One item of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum EventInput {
    Click(ClickInput),
    Impression(ImpressionInput),
}

impl EventInput {
    /// An item: a JSON object with `"type": "click" | "impression"` and that kind's fields.
    pub fn from_value(value: Value) -> Result<Self, InputError> {
        let Value::Object(mut map) = value else {
            return Err(InputError::malformed(None, "each event must be a JSON object"));
        };
        match take_type(&mut map)? {
            EventKind::Click => ClickInput::from_map(map).map(Self::Click),
            EventKind::Impression => ImpressionInput::from_map(map).map(Self::Impression),
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Self::Click(_) => EventKind::Click,
            Self::Impression(_) => EventKind::Impression,
        }
    }

    pub fn into_event(self, ctx: RequestContext, limits: TimestampLimits) -> Result<AdEvent, InputError> {
        match self {
            Self::Click(click) => click.into_event(ctx, limits),
            Self::Impression(impression) => impression.into_event(ctx, limits),
        }
    }
}

fn take_type(map: &mut Map<String, Value>) -> Result<EventKind, InputError> {
    match map.remove("type") {
        None | Some(Value::Null) => Err(InputError::invalid("type", "is required: \"click\" or \"impression\"")),
        Some(Value::String(s)) if s == "click" => Ok(EventKind::Click),
        Some(Value::String(s)) if s == "impression" => Ok(EventKind::Impression),
        Some(Value::String(_)) => Err(InputError::invalid("type", "must be \"click\" or \"impression\"")),
        Some(other) => Err(wrong_type("type", "a string", &other)),
    }
}

/// Splits a batch into items, each parsed on its own, in request order. The body is split
/// first, into borrowed slices of at most `max_events` items (the rest only counted, nothing
/// built), so that a body of a million tiny items costs no more memory than the body itself.
pub fn parse_batch(
    body: &[u8],
    format: BatchFormat,
    max_events: usize,
) -> Result<Vec<Result<EventInput, InputError>>, BatchRejection> {
    let items: Vec<&[u8]> = match format {
        BatchFormat::JsonArray => split_array(body, max_events)?,
        BatchFormat::Ndjson => {
            let lines = || body.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty());
            let count = lines().count();
            if count > max_events {
                return Err(BatchRejection::TooManyEvents { count, max: max_events });
            }
            lines().collect()
        }
    };
    if items.is_empty() {
        return Err(BatchRejection::Input(InputError::invalid_body("the batch holds no events")));
    }
    Ok(items.into_iter().map(|item| parse_json(item).and_then(EventInput::from_value)).collect())
}

/// The items of a JSON array as slices of `body`: at most `max` kept, the rest only counted.
fn split_array(body: &[u8], max: usize) -> Result<Vec<&[u8]>, BatchRejection> {
    struct Items<'de> {
        kept: Vec<&'de [u8]>,
        /// Items past the `max` kept, only counted.
        beyond: usize,
        max: usize,
    }
    impl<'de> serde::de::Visitor<'de> for &mut Items<'de> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of events")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while self.kept.len() < self.max {
                match seq.next_element::<&'de serde_json::value::RawValue>()? {
                    Some(item) => self.kept.push(item.get().as_bytes()),
                    None => return Ok(()),
                }
            }
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                self.beyond += 1;
            }
            Ok(())
        }
    }
    let mut items = Items { kept: Vec::new(), beyond: 0, max };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let malformed = |e: serde_json::Error| {
        let detail =
            if e.is_data() { "body must be a JSON array of events".to_owned() } else { format!("malformed JSON: {e}") };
        BatchRejection::Input(InputError::malformed(None, detail))
    };
    serde::Deserializer::deserialize_seq(&mut deserializer, &mut items).map_err(malformed)?;
    deserializer.end().map_err(malformed)?;
    if items.beyond > 0 {
        return Err(BatchRejection::TooManyEvents { count: items.kept.len() + items.beyond, max });
    }
    Ok(items.kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InputErrorKind;

    const AD: &str = "a1000000-0000-4000-8000-000000000001";

    fn field(result: &Result<EventInput, InputError>) -> Option<&str> {
        result.as_ref().unwrap_err().field.as_deref()
    }

    #[test]
    fn ndjson_items_fail_alone() {
        let body = format!(
            "{{\"type\":\"click\",\"ad_id\":\"{AD}\",\"watched_percent\":50}}\n\
             \r\n\
             not json\n\
             {{\"type\":\"impression\",\"ad_id\":\"{AD}\"}}\n\
             {{\"type\":\"impression\",\"ad_id\":\"{AD}\",\"watched_percent\":1}}\n\
             {{\"ad_id\":\"{AD}\"}}\n\
             {{\"type\":\"view\",\"ad_id\":\"{AD}\"}}\n\
             [1]"
        );
        let items = parse_batch(body.as_bytes(), BatchFormat::Ndjson, 1000).unwrap();
        assert_eq!(items.len(), 7, "the blank line is skipped");
        assert_eq!(items[0].as_ref().unwrap().kind(), EventKind::Click);
        assert_eq!(items[1].as_ref().unwrap_err().kind, InputErrorKind::Malformed);
        assert_eq!(items[2].as_ref().unwrap().kind(), EventKind::Impression);
        assert_eq!(field(&items[3]), Some("watched_percent"), "impressions have no playback fields");
        assert_eq!(field(&items[4]), Some("type"));
        assert_eq!(field(&items[5]), Some("type"));
        assert_eq!(items[6].as_ref().unwrap_err().kind, InputErrorKind::Malformed);
    }

    #[test]
    fn a_json_array_is_split_or_refused_whole() {
        let body = format!(r#"[{{"type":"click","ad_id":"{AD}"}}, {{"type":"click","ad_id":"x"}}]"#);
        let items = parse_batch(body.as_bytes(), BatchFormat::JsonArray, 1000).unwrap();
        assert!(items[0].is_ok());
        assert_eq!(field(&items[1]), Some("ad_id"));
        assert!(matches!(parse_batch(b"[{", BatchFormat::JsonArray, 1000), Err(BatchRejection::Input(_))));
        assert!(matches!(parse_batch(b"{}", BatchFormat::JsonArray, 1000), Err(BatchRejection::Input(_))));
        assert!(matches!(parse_batch(b"[]", BatchFormat::JsonArray, 1000), Err(BatchRejection::Input(_))));
        assert!(matches!(parse_batch(b"\n\n", BatchFormat::Ndjson, 1000), Err(BatchRejection::Input(_))));
    }

    #[test]
    fn too_many_events_are_refused_whole() {
        let line = format!("{{\"type\":\"impression\",\"ad_id\":\"{AD}\"}}\n");
        let body = line.repeat(3);
        assert!(parse_batch(body.as_bytes(), BatchFormat::Ndjson, 3).is_ok());
        assert_eq!(
            parse_batch(body.as_bytes(), BatchFormat::Ndjson, 2),
            Err(BatchRejection::TooManyEvents { count: 3, max: 2 })
        );
        let array = format!("[{}]", [line.trim(); 3].join(","));
        assert_eq!(
            parse_batch(array.as_bytes(), BatchFormat::JsonArray, 2),
            Err(BatchRejection::TooManyEvents { count: 3, max: 2 })
        );
    }

    #[test]
    fn a_huge_array_of_tiny_items_is_counted_not_built() {
        // 1 MiB of `0,`: half a million items, of which only `max` are kept as slices.
        let body = format!("[{}0]", "0,".repeat(512 * 1024));
        let items = split_array(body.as_bytes(), 1000);
        assert_eq!(items, Err(BatchRejection::TooManyEvents { count: 512 * 1024 + 1, max: 1000 }));
        let body = format!("[{}0]", "0,".repeat(999));
        assert_eq!(split_array(body.as_bytes(), 1000).map(|kept| kept.len()), Ok(1000));
        let body = "0\n".repeat(512 * 1024);
        assert_eq!(
            parse_batch(body.as_bytes(), BatchFormat::Ndjson, 1000),
            Err(BatchRejection::TooManyEvents { count: 512 * 1024, max: 1000 })
        );
    }
}
