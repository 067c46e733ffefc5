//! `openapi.yaml` is generated from the code: both services' operations in one document, for
//! SDK generators. This test fails while the committed file is stale; `make openapi` rewrites it.

use std::collections::HashMap;
use std::marker::PhantomData;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::registry::{MetaApi, Registry};
use poem_openapi::{OpenApi, OpenApiService, ServerObject};

/// An API's description without its handlers (which need live connections to build).
struct SpecOnly<T>(PhantomData<T>);

impl<T: OpenApi> OpenApi for SpecOnly<T> {
    fn meta() -> Vec<MetaApi> {
        T::meta()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn add_routes(self, _route_table: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {}
}

fn combined_spec() -> String {
    let apis = (SpecOnly::<ingest::http::IngestApi>(PhantomData), SpecOnly::<query::api::QueryApi>(PhantomData));
    let service = OpenApiService::new(apis, "Ad event tracking and analytics", env!("CARGO_PKG_VERSION"))
        .description(
            "Two services. **ingest** (default port 8080) records clicks and impressions: a 202 means \
             the event is stored durably and will be counted exactly once. **query** (default port \
             8081) serves the ad catalog and analytics. Every error is an RFC 9457 problem \
             (`application/problem+json`) naming the offending `field` when there is one.",
        )
        .server(ServerObject::new("http://localhost:8080").description("ingest: the Events operations"))
        .server(ServerObject::new("http://localhost:8081").description("query: the Ads and Analytics operations"));
    // The same amendments as each service's /openapi.json.
    let closed: Vec<&str> = ingest::http::CLOSED_SCHEMAS.iter().chain(query::api::CLOSED_SCHEMAS).copied().collect();
    let spec = service_kit::spec::close_objects(&service.spec(), &closed).expect("spec is JSON");
    let spec = query::api::add_gate_answers(&spec).expect("spec is JSON");
    let value: serde_json::Value = serde_json::from_str(&spec).expect("spec is JSON");
    serde_yaml::to_string(&value).expect("spec as YAML")
}

#[test]
fn openapi_yaml_is_current() {
    let path = e2e::workspace_root().join("openapi.yaml");
    let generated = combined_spec();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "openapi.yaml is stale: run `make openapi` and commit the result");
}

fn ingest_spec() -> serde_json::Value {
    serde_json::from_str(&OpenApiService::new(SpecOnly::<ingest::http::IngestApi>(PhantomData), "t", "0").spec())
        .expect("spec is JSON")
}

#[test]
fn documented_request_fields_are_the_parsed_ones() {
    // The request schemas document what `schemas::input` parses; they must not drift apart.
    let spec = ingest_spec();
    let fields = |schema: &str| {
        let mut names: Vec<String> = spec["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} in spec"))
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    };
    let sorted = |fields: &[&str]| {
        let mut v: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(fields("ClickRequest"), sorted(schemas::input::CLICK_FIELDS));
    assert_eq!(fields("ImpressionRequest"), sorted(schemas::input::IMPRESSION_FIELDS));
}

/// The bounds and patterns the spec states are the rules `schemas::input` applies: the request
/// types can only repeat them as literals, so this holds the two equal.
#[test]
fn documented_request_bounds_are_the_parsed_ones() {
    let spec = ingest_spec();
    let property = |schema: &str, name: &str| spec["components"]["schemas"][schema]["properties"][name].clone();
    let click = |name: &str| property("ClickRequest", name);
    assert_eq!(click("playback_time_secs")["minimum"].as_f64(), Some(0.0));
    assert_eq!(click("playback_time_secs")["maximum"].as_f64(), Some(schemas::input::MAX_PLAYBACK_TIME_SECS));
    assert_eq!(click("watched_percent")["minimum"].as_f64(), Some(0.0));
    assert_eq!(click("watched_percent")["maximum"].as_f64(), Some(schemas::input::MAX_WATCHED_PERCENT));
    for schema in ["ClickRequest", "ImpressionRequest"] {
        assert_eq!(
            property(schema, "country")["pattern"].as_str(),
            Some(schemas::audience::COUNTRY_PATTERN),
            "{schema}.country"
        );
    }
}

/// poem-openapi cannot share a group of query parameters between operations, so the window
/// parameters are declared in each analytics operation: they must read the same in all.
#[test]
fn window_parameters_read_the_same_in_every_operation() {
    let spec: serde_json::Value = serde_yaml::from_str(&combined_spec()).expect("spec");
    let mut seen: HashMap<String, (String, serde_json::Value)> = HashMap::new();
    let mut operations = 0;
    for (path, methods) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            for parameter in parameters.iter().filter(|p| p["in"] == "query") {
                let name = parameter["name"].as_str().unwrap_or_default();
                if !["from", "to", "timeframe", "granularity", "tz"].contains(&name) {
                    continue;
                }
                let here = format!("{method} {path}");
                let described = parameter.clone();
                match seen.get(name) {
                    Some((first, earlier)) => {
                        assert_eq!(&described, earlier, "`{name}` differs between {first} and {here}")
                    }
                    None => {
                        seen.insert(name.to_owned(), (here, described));
                    }
                }
            }
            operations += 1;
        }
    }
    assert!(operations > 4 && seen.len() == 5, "{seen:?}");
}
