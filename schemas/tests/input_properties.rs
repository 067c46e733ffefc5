//! Whatever a client sends, parsing never panics, and every rejection is classified and, when a
//! field is at fault, names a field that exists in the contract.

use proptest::prelude::*;
use schemas::input::{RequestContext, TimestampLimits, CLICK_FIELDS};
use schemas::{ClickInput, InputErrorKind};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("a1000000-0000-4000-8000-000000000001")),
        Just(json!("2026-11-22T10:00:00Z")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects using the contract's field names with arbitrary values: the interesting cases.
fn click_like() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(CLICK_FIELDS), any_json()), 0..6).prop_map(|fields| {
        let mut map = Map::new();
        for (k, v) in fields {
            map.insert(k.to_owned(), v);
        }
        Value::Object(map)
    })
}

fn check(body: &[u8]) {
    let ctx =
        RequestContext { received_at: OffsetDateTime::now_utc(), client_ip: None, user_agent: None, request_id: None };
    let limits = TimestampLimits { max_age: Some(std::time::Duration::from_secs(86_400)) };
    match ClickInput::parse(body).and_then(|input| input.into_event(ctx, limits)) {
        Ok(event) => {
            assert!(event.playback_time_secs.is_none_or(|p| (0.0..=86_400.0).contains(&p)));
            assert!(event.watched_percent.is_none_or(|p| (0.0..=100.0).contains(&p)));
        }
        Err(error) => {
            assert!(!error.message.is_empty());
            match (&error.kind, &error.field) {
                (InputErrorKind::Invalid, None) => panic!("a rule violation must name its field: {error:?}"),
                (InputErrorKind::Invalid, Some(field)) => assert!(CLICK_FIELDS.contains(&field.as_str()), "{error:?}"),
                (InputErrorKind::Malformed, _) => {}
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        check(value.to_string().as_bytes());
    }

    #[test]
    fn contract_shaped_objects_are_classified(value in click_like()) {
        check(value.to_string().as_bytes());
    }
}
