//! The OpenAPI document as served at `/openapi.json` and written to `openapi.yaml`: poem-openapi's,
//! amended where its derive cannot say what the server does.
//!
//! Request bodies that reject unknown fields (`deny_unknown_fields`) are closed objects:
//! `additionalProperties: false`, so that SDKs and fuzzers know a misspelt field is an error. A
//! union variant poem-openapi builds as `allOf: [{type}, {$ref: closed}]` would then reject its
//! own `type`; such variants become one closed object with the `type` property merged in, and
//! with the closed object's example (plus its `type`) as theirs.

use serde_json::{Map, Value};

/// `spec` (JSON) with the schemas named in `closed` closed, and the union variants built on them
/// merged into closed objects.
pub fn close_objects(spec: &str, closed: &[&str]) -> Result<String, serde_json::Error> {
    let mut doc: Value = serde_json::from_str(spec)?;
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        close_schemas(schemas, closed);
    }
    serde_json::to_string(&doc)
}

/// `spec` (JSON) with a 429 answer (a problem, with `Retry-After`) added to each operation named
/// in `operation_ids`, described by `description`.
pub fn add_too_many_requests(
    spec: &str,
    operation_ids: &[&str],
    description: &str,
) -> Result<String, serde_json::Error> {
    let mut doc: Value = serde_json::from_str(spec)?;
    let answer = serde_json::json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "headers": {"RETRY-AFTER": {"required": true, "deprecated": false, "schema": {"type": "integer", "format": "uint32"}}},
    });
    let operations = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|methods| methods.values_mut());
    for operation in operations {
        let guarded =
            operation.get("operationId").and_then(Value::as_str).is_some_and(|id| operation_ids.contains(&id));
        if let (true, Some(responses)) = (guarded, operation.get_mut("responses").and_then(Value::as_object_mut)) {
            responses.insert("429".to_owned(), answer.clone());
        }
    }
    serde_json::to_string(&doc)
}

fn close_schemas(schemas: &mut Map<String, Value>, closed: &[&str]) {
    let refs: Vec<String> = closed.iter().map(|name| format!("#/components/schemas/{name}")).collect();
    let originals: Map<String, Value> = schemas
        .iter()
        .filter(|(name, _)| closed.contains(&name.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, schema) in schemas.iter_mut() {
        if closed.contains(&name.as_str()) {
            schema["additionalProperties"] = Value::Bool(false);
            continue;
        }
        let Some(parts) = schema.get("allOf").and_then(Value::as_array).cloned() else { continue };
        let builds_on_closed =
            parts.iter().any(|p| p.get("$ref").and_then(Value::as_str).is_some_and(|r| refs.iter().any(|c| c == r)));
        if !builds_on_closed {
            continue;
        }
        let mut merged = Map::new();
        merged.insert("type".into(), Value::from("object"));
        if let Some(description) = schema.get("description") {
            merged.insert("description".into(), description.clone());
        }
        let (mut required, mut properties, mut example) = (Vec::new(), Map::new(), Map::new());
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => originals.get(r.trim_start_matches("#/components/schemas/")).cloned().unwrap_or_default(),
                None => part,
            };
            required.extend(part.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
            properties.extend(part.get("properties").and_then(Value::as_object).cloned().unwrap_or_default());
            example.extend(part.get("example").and_then(Value::as_object).cloned().unwrap_or_default());
        }
        let discriminator = properties.get("type").and_then(|t| t.pointer("/enum/0")).cloned();
        if let (Some(kind), false) = (discriminator, example.is_empty()) {
            example.insert("type".into(), kind);
            merged.insert("example".into(), Value::Object(example));
        }
        merged.insert("required".into(), Value::Array(required));
        merged.insert("properties".into(), Value::Object(properties));
        merged.insert("additionalProperties".into(), Value::Bool(false));
        *schema = Value::Object(merged);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn closed_objects_and_their_union_variants() {
        let spec = json!({"components": {"schemas": {
            "Click": {"type": "object", "required": ["ad_id"], "properties": {"ad_id": {"type": "string"}}, "example": {"ad_id": "a1"}},
            "Open": {"type": "object", "properties": {"x": {"type": "string"}}},
            "Event_Click": {"description": "a click", "allOf": [
                {"type": "object", "required": ["type"], "properties": {"type": {"type": "string", "enum": ["click"]}}},
                {"$ref": "#/components/schemas/Click"}
            ]}
        }}});
        let amended: Value = serde_json::from_str(&close_objects(&spec.to_string(), &["Click"]).unwrap()).unwrap();
        let schemas = &amended["components"]["schemas"];
        assert_eq!(schemas["Click"]["additionalProperties"], false);
        assert_eq!(schemas["Open"].get("additionalProperties"), None);
        assert_eq!(
            schemas["Event_Click"],
            json!({"type": "object", "description": "a click", "required": ["type", "ad_id"], "additionalProperties": false,
                   "properties": {"type": {"type": "string", "enum": ["click"]}, "ad_id": {"type": "string"}},
                   "example": {"type": "click", "ad_id": "a1"}})
        );
    }
}
