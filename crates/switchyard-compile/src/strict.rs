//! Unknown fields, found the way the API server finds them: by walking a manifest against
//! the CRD's own OpenAPI schema (the one `crds/` holds), so a typo such as `match.method`
//! or `spec.timout` is refused in standalone and `validate` exactly as `kubectl apply`
//! refuses it ("strict decoding error: unknown field").

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

/// Fields of `metadata` an object may carry (ObjectMeta).
const OBJECT_META: &[&str] = &[
    "name",
    "namespace",
    "generateName",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

/// Top-level fields of a v1 Secret.
const SECRET: &[&str] = &["apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable"];

/// The `openAPIV3Schema` of each Switchyard kind, generated once from the Rust types.
fn schemas() -> &'static BTreeMap<String, Value> {
    static SCHEMAS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        switchyard_api::all_crds()
            .into_iter()
            .filter_map(|crd| {
                let version = crd.spec.versions.first()?;
                let schema = version.schema.as_ref()?.open_api_v3_schema.as_ref()?;
                Some((crd.spec.names.kind.clone(), serde_json::to_value(schema).ok()?))
            })
            .collect()
    })
}

/// The paths of every field in `object` that its kind's schema does not define
/// (`spec.match.method`), in document order.
pub fn unknown_fields(kind: &str, object: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let Some(fields) = object.as_object() else { return found };
    if kind == "Secret" {
        found.extend(fields.keys().filter(|k| !SECRET.contains(&k.as_str())).cloned());
        check_metadata(fields.get("metadata"), &mut found);
        return found;
    }
    let Some(schema) = schemas().get(kind) else { return found };
    for (key, value) in fields {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => check_metadata(Some(value), &mut found),
            _ => match property(schema, key) {
                Some(sub) => walk(value, sub, key, &mut found),
                None => found.push(key.clone()),
            },
        }
    }
    found
}

fn check_metadata(metadata: Option<&Value>, found: &mut Vec<String>) {
    let Some(fields) = metadata.and_then(Value::as_object) else { return };
    found.extend(fields.keys().filter(|k| !OBJECT_META.contains(&k.as_str())).map(|k| format!("metadata.{k}")));
}

fn walk(value: &Value, schema: &Value, path: &str, found: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in fields {
                let at = format!("{path}.{key}");
                match property(schema, key).or(additional) {
                    Some(sub) => walk(child, sub, &at, found),
                    None if has_properties(schema) => found.push(at),
                    // A schema naming no properties at all (a free-form object) takes any.
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

/// A property's schema, also when it is declared in an `allOf`/`anyOf`/`oneOf` branch.
fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema.get("properties").and_then(|p| p.get(key)).or_else(|| {
        ["allOf", "anyOf", "oneOf"]
            .iter()
            .filter_map(|k| schema.get(*k).and_then(Value::as_array))
            .flatten()
            .find_map(|branch| property(branch, key))
    })
}

fn has_properties(schema: &Value) -> bool {
    schema.get("properties").is_some()
        || ["allOf", "anyOf", "oneOf"].iter().filter_map(|k| schema.get(*k).and_then(Value::as_array)).flatten().any(has_properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn typos_anywhere_in_a_route_are_found_with_their_path() {
        let route = yaml(
            "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: r, labelz: {}}\nspec:\n  timout: 5s\n  match: {path: /a, method: [GET]}\n  backendRefs: [{name: b, wieght: 1}]\n  retrys: {attempts: 1}\n",
        );
        assert_eq!(
            unknown_fields("ApiRoute", &route),
            ["metadata.labelz", "spec.backendRefs[0].wieght", "spec.match.method", "spec.retrys", "spec.timout"]
        );
    }

    #[test]
    fn a_correct_manifest_of_every_kind_has_no_unknown_fields() {
        let cases = [
            (
                "ApiRoute",
                "spec: {hosts: [a.example.com], match: {path: /a, methods: [GET], headers: [{name: x, value: y}]}, backendRefs: [{name: b, weight: 2}], timeout: 5s}",
            ),
            ("BackendService", "spec: {http: {urls: ['http://10.0.0.1']}, timeout: 2s, loadBalancing: {policy: RoundRobin}}"),
            ("VpcAuthorization", "spec: {target: {address: 10.0.0.1}, ports: [80], hostName: a.internal}"),
            ("DnsRecord", "spec: {domain: a.internal, type: A, records: [{address: 10.0.0.1, weight: 1}]}"),
        ];
        for (kind, spec) in cases {
            let object = yaml(&format!("apiVersion: switchyard.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: x, namespace: y}}\n{spec}\n"));
            assert_eq!(unknown_fields(kind, &object), Vec::<String>::new(), "{kind}");
        }
    }

    #[test]
    fn secrets_are_checked_at_their_top_level_and_metadata() {
        let secret = yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringdata: {appKey: k}\n");
        assert_eq!(unknown_fields("Secret", &secret), ["stringdata"]);
    }
}
