"""Validates every OpenAPI document we publish with openapi-spec-validator, checks that the
committed `openapi.yaml` describes exactly the operations each service serves at `/openapi.json`,
and that every request and response body shows an example.

usage: validate_specs.py OPENAPI_YAML SERVICE_URL...
"""

import json
import sys
import urllib.request

from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, f"GET {url}: {response.status}"
        return json.loads(response.read())


def operations(spec):
    return {
        (path, method): op
        for path, item in spec.get("paths", {}).items()
        for method, op in item.items()
        if method in METHODS
    }


def referenced_schemas(value, components, seen=None):
    """Names of the component schemas `value` reaches through `$ref`s."""
    seen = set() if seen is None else seen
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                referenced_schemas(components.get(name, {}), components, seen)
        for v in value.values():
            referenced_schemas(v, components, seen)
    elif isinstance(value, list):
        for v in value:
            referenced_schemas(v, components, seen)
    return seen


def lacks_example(schema, components, seen=()):
    """Why `schema` (a body's) shows no example, or None: an example on it, on the schema it
    refers to, on an array's items, or on every variant of a union."""
    if "example" in schema or (schema.get("type") == "string" and schema.get("format") == "binary"):
        # A binary body (the pixel's GIF) is shown by its media type; there is no text to show.
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[1]
        if name in seen:
            return f"{name} refers to itself"
        return lacks_example(components.get(name, {}), components, (*seen, name))
    if schema.get("type") == "array" and "items" in schema:
        return lacks_example(schema["items"], components, seen)
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        reasons = [r for r in (lacks_example(v, components, seen) for v in variants) if r]
        return "; ".join(reasons) or None
    return f"{' > '.join(seen) or 'an inline schema'} has no example"


def bodies_without_examples(spec):
    components = spec.get("components", {}).get("schemas", {})
    for (path, method), op in operations(spec).items():
        bodies = [("request", op.get("requestBody", {}))]
        bodies += [(f"response {status}", response) for status, response in op.get("responses", {}).items()]
        for what, body in bodies:
            for media_type, content in body.get("content", {}).items():
                if "example" in content or "examples" in content:
                    continue
                reason = lacks_example(content.get("schema", {}), components)
                if reason:
                    yield f"{method.upper()} {path} {what} ({media_type}): {reason}"


def main():
    yaml_path, service_urls = sys.argv[1], sys.argv[2:]
    failures = []

    documents = []
    spec_dict, _ = read_from_filename(yaml_path)
    documents.append((yaml_path, spec_dict))
    for base in service_urls:
        url = base.rstrip("/") + "/openapi.json"
        documents.append((url, fetch(url)))

    for name, spec in documents:
        try:
            validate(spec)
            print(f"valid OpenAPI {spec.get('openapi')}: {name} ({len(operations(spec))} operations)")
        except Exception as error:  # the validator's errors carry the path to the fault
            failures.append(f"{name} is not a valid OpenAPI document: {error}")

    for missing in bodies_without_examples(spec_dict):
        failures.append(f"{yaml_path}: {missing}")

    # The combined file must be the union of what the services serve, operation for operation.
    combined = operations(spec_dict)
    combined_schemas = spec_dict.get("components", {}).get("schemas", {})
    served = {}
    for name, spec in documents[1:]:
        ops = operations(spec)
        if not ops:
            failures.append(f"{name} describes no operations")
        schemas = spec.get("components", {}).get("schemas", {})
        for key, op in ops.items():
            if key in served:
                failures.append(f"{key[1].upper()} {key[0]} is served by two services")
            served[key] = op
            if key not in combined:
                failures.append(f"{name}: {key[1].upper()} {key[0]} is missing from {yaml_path}")
                continue
            if json.dumps(op, sort_keys=True) != json.dumps(combined[key], sort_keys=True):
                failures.append(f"{key[1].upper()} {key[0]} differs between {name} and {yaml_path}")
            for schema in sorted(referenced_schemas(op, schemas)):
                if json.dumps(schemas.get(schema), sort_keys=True) != json.dumps(combined_schemas.get(schema), sort_keys=True):
                    failures.append(f"schema {schema} differs between {name} and {yaml_path}")
    for key in sorted(set(combined) - set(served)):
        failures.append(f"{yaml_path}: {key[1].upper()} {key[0]} is served by no service")

    if failures:
        print("\n".join(["FAILED:"] + sorted(set(failures))))
        sys.exit(1)
    print(f"{yaml_path} holds exactly the {len(served)} operations the services serve, every body with an example")


if __name__ == "__main__":
    main()
