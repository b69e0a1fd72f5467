//! One source for the drop-in keys: docs/dropin.schema.json is derived from
//! the OpenAPI document's `Definition` schema, and this test fails when the
//! committed file is not that derivation (`make dropin-schema` writes it).

use serde_json::{json, Map, Value};

const OPENAPI: &str = include_str!("../src/api/openapi.json");
const COMMITTED: &str = "docs/dropin.schema.json";

/// `#/components/schemas/X` -> `#/$defs/X`, collecting every X it reaches.
fn rewrite_refs(v: &mut Value, schemas: &Map<String, Value>, defs: &mut Map<String, Value>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    let name = name.to_string();
                    *r = format!("#/$defs/{name}");
                    if !defs.contains_key(&name) {
                        let mut def = schemas[&name].clone();
                        defs.insert(name.clone(), Value::Null);
                        rewrite_refs(&mut def, schemas, defs);
                        defs.insert(name, toml_types(def));
                    }
                }
            }
            for (_, child) in m.iter_mut() {
                rewrite_refs(child, schemas, defs);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_refs(c, schemas, defs)),
        _ => {}
    }
}

/// TOML has no null: a key is written or left out. A schema that only
/// allows null becomes `false` (the key must be left out); null leaves
/// type lists, enums and alternatives.
fn toml_types(v: Value) -> Value {
    match v {
        Value::Object(mut m) => {
            if m.get("type") == Some(&json!("null")) {
                return Value::Bool(false);
            }
            if let Some(Value::Array(types)) = m.get("type") {
                let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                let t = match kept.as_slice() {
                    [one] => one.clone(),
                    _ => Value::Array(kept),
                };
                m.insert("type".into(), t);
            }
            if let Some(Value::Array(e)) = m.get_mut("enum") {
                e.retain(|x| !x.is_null());
            }
            for (_, child) in m.iter_mut() {
                *child = toml_types(child.take());
            }
            for key in ["oneOf", "anyOf"] {
                if let Some(Value::Array(alts)) = m.get_mut(key) {
                    alts.retain(|a| *a != Value::Bool(false));
                    if let [one] = alts.as_slice() {
                        let one = one.clone();
                        m.remove(key);
                        if let Value::Object(inner) = one {
                            for (k, x) in inner {
                                m.entry(k).or_insert(x);
                            }
                        }
                    }
                }
            }
            Value::Object(m)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(toml_types).collect()),
        other => other,
    }
}

/// The JSON schema of a drop-in file's keys.
fn derive() -> Value {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap().clone();
    let mut def = toml_types(schemas["Definition"].clone());
    let mut defs = Map::new();
    rewrite_refs(&mut def, &schemas, &mut defs);
    let obj = def.as_object_mut().unwrap();
    // Only a drop-in file means something by it, but it is always a key.
    obj["properties"]
        .as_object_mut()
        .unwrap()
        .entry("autostart")
        .or_insert(json!({"type": "boolean", "default": true}));
    if let Some(example) = obj.remove("example") {
        obj.insert("examples".into(), json!([example]));
    }
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("title".into(), json!("iris-init drop-in service file"));
    out.insert(
        "description".into(),
        json!(
            "The keys of DIR/NAME.toml (TOML; env is a table). Derived from \
             components.schemas.Definition of GET /v1/openapi.json \
             (src/api/openapi.json) by `make dropin-schema`: do not edit."
        ),
    );
    out.extend(obj.clone());
    if !defs.is_empty() {
        out.insert("$defs".into(), Value::Object(defs));
    }
    Value::Object(out)
}

fn rendered() -> String {
    serde_json::to_string_pretty(&derive()).unwrap() + "\n"
}

#[test]
fn committed_dropin_schema_is_derived_from_the_api_document() {
    let want = rendered();
    if std::env::var_os("IRIS_WRITE_DROPIN_SCHEMA").is_some() {
        std::fs::create_dir_all("docs").unwrap();
        std::fs::write(COMMITTED, &want).unwrap();
    }
    let have = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        have == want,
        "{COMMITTED} is not derived from src/api/openapi.json: run `make dropin-schema`"
    );
}

#[test]
fn the_dropin_schema_has_every_key_and_no_null() {
    let s = derive();
    let keys: Vec<&str> = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in ["cmd", "args", "env", "needs", "health_port", "autostart"] {
        assert!(keys.contains(&k), "{k} missing: {keys:?}");
    }
    assert_eq!(s["required"], json!(["cmd"]));
    assert_eq!(s["additionalProperties"], false, "unknown keys are errors");
    assert_eq!(s["properties"]["args"]["type"], "array");
    assert!(!rendered().contains("\"null\""), "TOML has no null");
    assert!(!rendered().contains("#/components/"), "every $ref resolves");
}
