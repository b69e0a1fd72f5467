"""Checks that the API document's own examples are true: every `example`
and `examples` in src/api/openapi.json is valid for the schema beside it,
the drop-in files in init.d/ are valid for docs/dropin.schema.json, and the
document is a valid OpenAPI 3.1 document (Schemathesis loads it).
Run by scripts/api-schema-test.sh with the Python that has Schemathesis."""

import json
import pathlib
import sys
import tomllib

import jsonschema_rs

root = pathlib.Path(__file__).resolve().parent.parent
doc = json.loads((root / "src/api/openapi.json").read_text())
failures = []


def check(where, schema, instance):
    wrapped = {"components": doc["components"], "allOf": [schema]}
    validator = jsonschema_rs.Draft202012Validator(wrapped)
    for error in validator.iter_errors(instance):
        failures.append(f"{where}: {error.message} at {list(error.instance_path)}")


def walk(node, where):
    if isinstance(node, dict):
        schema = node.get("schema")
        if isinstance(schema, dict):
            # A media type or a parameter: its example(s) are for its schema.
            if "example" in node:
                check(where + "/example", schema, node["example"])
            for name, ex in node.get("examples", {}).items():
                check(f"{where}/examples/{name}", schema, ex.get("value"))
        if any(k in node for k in ("type", "$ref", "properties", "oneOf", "anyOf")):
            if "example" in node:
                check(where + "/example", node, node["example"])
            if isinstance(node.get("examples"), list):
                for i, ex in enumerate(node["examples"]):
                    check(f"{where}/examples/{i}", node, ex)
        for key, child in node.items():
            walk(child, f"{where}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            walk(child, f"{where}/{i}")


walk(doc, "#")
dropin = jsonschema_rs.Draft202012Validator(
    json.loads((root / "docs/dropin.schema.json").read_text())
)
files = sorted((root / "init.d").glob("*.toml"))
for f in files:
    for error in dropin.iter_errors(tomllib.loads(f.read_text())):
        failures.append(f"{f.relative_to(root)}: {error.message}")

for failure in failures:
    print("api-examples:", failure, file=sys.stderr)
print(f"api-examples: the document's examples and {len(files)} drop-in files checked; "
      f"{len(failures)} wrong")
sys.exit(1 if failures else 0)
