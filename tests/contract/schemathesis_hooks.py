"""Schemathesis hooks for tests/tests/contract.rs (loaded through SCHEMATHESIS_HOOKS).

POST /ads/events also takes NDJSON: one event object per line. Schemathesis has no serializer
for application/x-ndjson; the spec gives the schema of one line, so a generated value is
written as one line (and a generated list, as one line per item).
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    items = value if isinstance(value, list) else [value]
    return {"data": "".join(json.dumps(item) + "\n" for item in items).encode()}
