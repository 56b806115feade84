//! The committed `crds/` must equal what the Rust types generate, and every schema
//! must be structural (what a real API server accepts).

use serde_json::Value;
use switchyard_api::{all_crds, crd_file_name, render_crd};

fn crds_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn committed_crds_match_the_rust_types() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for crd in all_crds() {
        let path = crds_dir().join(crd_file_name(&crd));
        let want = render_crd(&crd);
        if update {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
        assert!(have == want, "{} drifted from the Rust types; run `make crds`", path.display());
    }
}

/// Walks a schema and returns every rule of structural schemas it breaks.
fn structural_violations(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        out.push(format!("{at}: schema is not an object"));
        return;
    };
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !obj.contains_key("type") && !preserves && !int_or_string {
        out.push(format!("{at}: no type"));
    }
    if let Some(t) = obj.get("type")
        && !t.is_string()
    {
        out.push(format!("{at}: type must be one string, found {t}"));
    }
    for banned in ["$ref", "oneOf", "anyOf", "allOf", "not", "additionalItems", "definitions", "$defs"] {
        if obj.contains_key(banned) {
            out.push(format!("{at}: {banned} is not allowed in a structural schema"));
        }
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, sub) in props {
            structural_violations(sub, &format!("{at}.{name}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_violations(items, &format!("{at}[]"), out);
    }
    if let Some(extra @ Value::Object(_)) = obj.get("additionalProperties") {
        structural_violations(extra, &format!("{at}{{}}"), out);
    }
}

#[test]
fn every_crd_schema_is_structural() {
    for crd in all_crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let schema = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut violations = Vec::new();
        structural_violations(schema, crd.metadata.name.as_deref().unwrap(), &mut violations);
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

fn descriptions_missing(schema: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (name, sub) in props {
            let path = format!("{at}.{name}");
            if sub.get("description").is_none() && !["metadata", "apiVersion", "kind"].contains(&name.as_str()) {
                out.push(path.clone());
            }
            descriptions_missing(sub, &path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        descriptions_missing(items, &format!("{at}[]"), out);
    }
}

#[test]
fn every_spec_and_status_field_has_a_description_for_kubectl_explain() {
    for crd in all_crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let schema = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut missing = Vec::new();
        descriptions_missing(schema, crd.metadata.name.as_deref().unwrap(), &mut missing);
        assert!(missing.is_empty(), "fields without a description: {missing:#?}");
    }
}

#[test]
fn backend_service_schema_requires_exactly_one_kind_by_cel() {
    let crd = all_crds().into_iter().find(|c| c.spec.names.kind == "BackendService").unwrap();
    let json = serde_json::to_value(&crd).unwrap();
    let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = spec["x-kubernetes-validations"].as_array().expect("CEL rules on spec");
    assert!(rules.iter().any(|r| r["rule"].as_str().unwrap().contains("size() == 1")));
}

#[test]
fn every_crd_has_a_status_subresource_and_printer_columns() {
    for crd in all_crds() {
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert!(columns.iter().any(|c| c.name == "Accepted"), "{}", crd.spec.names.kind);
    }
}

/// The schema of `kind` at a dotted path of properties (`spec.target.address`); `[]`
/// steps into array items.
fn schema_at(kind: &str, path: &str) -> Value {
    let crd = all_crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap();
    let json = serde_json::to_value(&crd).unwrap();
    let mut at = json["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    for step in path.split('.') {
        let (name, items) = step.strip_suffix("[]").map_or((step, false), |n| (n, true));
        at = at["properties"][name].clone();
        assert!(!at.is_null(), "{kind}: no {path} in the schema (at {name})");
        if items {
            at = at["items"].clone();
        }
    }
    at
}

/// Every resource string that reaches the wire carries its rule in the schema, so the
/// API server refuses the object before compile ever sees it.
#[test]
fn every_string_that_reaches_the_wire_is_constrained_by_the_schema() {
    use switchyard_api::{HEADER_TEXT_PATTERN, WIRE_PATH_PATTERN};
    let paths = [
        ("VpcAuthorization", "spec.connectivityTest.http.path"),
        ("BackendService", "spec.healthCheck.active.path"),
        ("ApiRoute", "spec.rewrite.path"),
    ];
    let header_text = [
        ("VpcAuthorization", "spec.hostName"),
        ("BackendService", "spec.http.hostHeader"),
        ("BackendService", "spec.vpc.hostHeader"),
        ("BackendService", "spec.mock.headers[].name"),
        ("BackendService", "spec.mock.headers[].value"),
        ("ApiRoute", "spec.hostOverride"),
        ("ApiRoute", "spec.parameters[].name"),
        ("ApiRoute", "spec.parameters[].value"),
        ("ApiRoute", "spec.match.headers[].name"),
        ("ApiRoute", "spec.match.headers[].value"),
    ];
    for (rules, pattern) in [(&paths[..], WIRE_PATH_PATTERN), (&header_text[..], HEADER_TEXT_PATTERN)] {
        for (kind, path) in rules {
            let schema = schema_at(kind, path);
            assert_eq!(schema["pattern"].as_str(), Some(pattern), "{kind} {path}: {schema}");
            // A bound on the length keeps validation cheap for the API server.
            assert!(schema["maxLength"].as_u64().is_some_and(|n| n <= 4096), "{kind} {path} has no maxLength: {schema}");
        }
    }
}

#[test]
fn the_wire_patterns_refuse_line_breaks_nul_and_spaces_in_paths() {
    let path = regex::Regex::new(switchyard_api::WIRE_PATH_PATTERN).unwrap();
    for good in ["/", "/healthz", "/v1/{id}.json", "/a?b=c&d=%20"] {
        assert!(path.is_match(good), "{good:?}");
    }
    for bad in ["", "healthz", "/a b", "/x HTTP/1.1\r\nHost: a\r\n\r\nPOST /admin/delete-all", "/a\n", "/a\0", "/a\t", "/santé", "/\x7f"] {
        assert!(!path.is_match(bad), "{bad:?}");
    }
    let header = regex::Regex::new(switchyard_api::HEADER_TEXT_PATTERN).unwrap();
    for good in ["", "orders.internal:8080", "a value with spaces\tand a tab"] {
        assert!(header.is_match(good), "{good:?}");
    }
    for bad in ["a\r\nX-Injected: 1", "a\rb", "a\nb", "a\0b", "\n"] {
        assert!(!header.is_match(bad), "{bad:?}");
    }
}

/// Every property name of a schema (with its path), nested objects, array items and maps included.
fn property_names(schema: &Value, at: &str, out: &mut Vec<(String, String)>) {
    if let Some(Value::Object(props)) = schema.get("properties") {
        for (name, sub) in props {
            let path = format!("{at}.{name}");
            out.push((name.clone(), path.clone()));
            property_names(sub, &path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        property_names(items, &format!("{at}[]"), out);
    }
    if let Some(extra @ Value::Object(_)) = schema.get("additionalProperties") {
        property_names(extra, &format!("{at}{{}}"), out);
    }
}

/// Plain scalars a YAML 1.1 reader (kubectl, the API server's YAML path, PyYAML) reads as
/// booleans: a field named one of these becomes `"true"`/`"false"` before it reaches the
/// API server, in the CRD and in every manifest written by hand.
const YAML_1_1_BOOLEANS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off",
    "Off", "OFF",
];

#[test]
fn no_property_name_is_a_yaml_1_1_boolean() {
    let mut bad = Vec::new();
    for crd in all_crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let schema = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut names = Vec::new();
        property_names(schema, crd.metadata.name.as_deref().unwrap(), &mut names);
        assert!(names.len() > 10, "{}: the walk found too few properties: {names:?}", crd.spec.names.kind);
        bad.extend(names.into_iter().filter(|(name, _)| YAML_1_1_BOOLEANS.contains(&name.as_str())).map(|(_, path)| path));
    }
    assert!(bad.is_empty(), "property names that YAML 1.1 reads as booleans (kubectl turns them into \"true\"/\"false\"): {bad:?}");
}

#[test]
fn retries_take_their_failure_list_as_retry_on() {
    for (kind, path) in [("ApiRoute", "spec.retries.retryOn"), ("BackendService", "spec.retries.retryOn")] {
        let schema = schema_at(kind, path);
        assert_eq!(schema["type"], "array", "{kind} {path}: {schema}");
        let values: Vec<&str> = schema["items"]["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(values, ["connect-failure", "gateway-error", "reset"], "{kind} {path}");
    }
    let retries: switchyard_api::Retries = serde_yaml::from_str("{attempts: 2, retryOn: [gateway-error, reset]}").unwrap();
    assert_eq!(retries.retry_on, [switchyard_api::RetryOn::GatewayError, switchyard_api::RetryOn::Reset]);
    let back = serde_json::to_value(&retries).unwrap();
    assert_eq!(back, serde_json::json!({"attempts": 2, "retryOn": ["gateway-error", "reset"]}));
}

/// Formats the API server accepts without a warning (apiextensions-apiserver's list of
/// supported formats; anything else prints `unrecognized format "..."` on install).
const KUBERNETES_FORMATS: &str = "int32 int64 float double byte password date date-time datetime duration \
     bsonobjectid uri email hostname ipv4 ipv6 cidr mac uuid uuid3 uuid4 uuid5 isbn isbn10 isbn13 creditcard ssn hexcolor rgbcolor";

fn formats(schema: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match schema {
        Value::Object(obj) => {
            if obj.get("format").is_some_and(Value::is_string) {
                out.push((at.to_owned(), schema.clone()));
            }
            for (key, sub) in obj {
                // `properties` maps names to schemas: a property called `format` is no format.
                if key == "properties" {
                    for (name, prop) in sub.as_object().into_iter().flatten() {
                        formats(prop, &format!("{at}.{name}"), out);
                    }
                } else if sub.is_object() || sub.is_array() {
                    formats(sub, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                formats(item, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_format_is_one_kubernetes_knows_and_integer_bounds_are_kept() {
    let mut unknown = Vec::new();
    let mut integers = 0;
    for crd in all_crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let schema = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut found = Vec::new();
        formats(schema, crd.metadata.name.as_deref().unwrap(), &mut found);
        for (at, schema) in found {
            let format = schema["format"].as_str().unwrap();
            if !KUBERNETES_FORMATS.split_whitespace().any(|known| known == format) {
                unknown.push(format!("{at}: {format}"));
            }
            if schema["type"] == "integer" {
                integers += 1;
                assert!(switchyard_api::KUBERNETES_INTEGER_FORMATS.contains(&format), "{at}: integer format {format}");
                // Every integer field but observedGeneration (i64) is unsigned in Rust: the
                // schema must keep it from going negative.
                if !at.ends_with(".observedGeneration") {
                    assert!(schema["minimum"].as_f64().is_some_and(|m| m >= 0.0), "{at}: no minimum: {schema}");
                }
            }
        }
    }
    assert!(integers > 10, "the walk found only {integers} integer schemas");
    assert!(unknown.is_empty(), "formats the API server does not know (install warns `unrecognized format`): {unknown:#?}");
}

#[test]
fn integer_fields_keep_the_range_of_their_rust_type() {
    // u16 (ports): 0..=65535 unless tighter, in int32.
    for (kind, path) in [("VpcAuthorization", "spec.ports[]"), ("BackendService", "spec.vpc.port")] {
        let schema = schema_at(kind, path);
        assert_eq!(schema["format"], "int32", "{kind} {path}: {schema}");
        assert!(schema["maximum"].as_f64().is_some_and(|m| m <= 65535.0), "{kind} {path}: {schema}");
    }
    // u32: int64 (an int32 cannot hold every u32), at most u32::MAX.
    let endpoints = schema_at("BackendService", "status.endpoints");
    assert_eq!(endpoints["format"], "int64", "{endpoints}");
    assert_eq!(endpoints["minimum"].as_f64(), Some(0.0), "{endpoints}");
    assert_eq!(endpoints["maximum"].as_f64(), Some(f64::from(u32::MAX)), "{endpoints}");
    // A tighter bound from the field's own attribute survives.
    let attempts = schema_at("ApiRoute", "spec.retries.attempts");
    assert_eq!((attempts["minimum"].as_f64(), attempts["maximum"].as_f64()), (Some(0.0), Some(10.0)), "{attempts}");
}
