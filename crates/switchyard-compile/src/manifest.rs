//! Manifests as text (a folder of YAML, `validate -f`) into [`Resources`].
//!
//! Parsing text is not I/O: callers read files and hand the text in. A document that
//! cannot be decoded becomes an [`InvalidObject`] with the exact field path, so the
//! operator sees `Accepted=False reason=InvalidSpec` instead of a silently dropped file.
//! Decoding is strict, as the API server's: a field the kind's schema does not define is
//! an error naming its path (see [`crate::strict`]), never silently ignored.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use switchyard_api::{API_VERSION, APP_LABEL, CERTIFICATE_LABEL};

use crate::{AppSecret, CertificateSecret, InvalidObject, ObjectRef, ResourceKind, Resources, reason, strict};

/// Adds every document of one YAML text to `resources`. `source` names the text in
/// messages (a file path).
pub fn add_yaml(resources: &mut Resources, source: &str, text: &str) {
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = format!("{source} (document {})", index + 1);
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(value) => add_value(resources, &at, value),
            Err(e) => {
                // The YAML stream cannot resume after a syntax error: report it and stop.
                resources.invalid.push(unreadable(&at, &e.to_string()));
                break;
            }
        }
    }
}

fn unreadable(at: &str, error: &str) -> InvalidObject {
    InvalidObject {
        object: ObjectRef { kind: ResourceKind::Unknown, written_kind: None, namespace: None, name: at.to_owned() },
        generation: None,
        reason: reason::INVALID_SPEC,
        message: format!("{at}: not valid YAML: {error}"),
    }
}

fn add_value(resources: &mut Resources, at: &str, value: Value) {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let meta = |key: &str| value.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).map(str::to_owned);
    let api_version = text("apiVersion").unwrap_or_default();
    let kind = text("kind").unwrap_or_default();
    let name = meta("name").unwrap_or_default();
    let namespace = meta("namespace");
    let generation = value.get("metadata").and_then(|m| m.get("generation")).and_then(Value::as_i64);
    let known = match (api_version.as_str(), kind.as_str()) {
        (API_VERSION, "ApiRoute") => Some(ResourceKind::ApiRoute),
        (API_VERSION, "BackendService") => Some(ResourceKind::BackendService),
        (API_VERSION, "VpcAuthorization") => Some(ResourceKind::VpcAuthorization),
        (API_VERSION, "DnsRecord") => Some(ResourceKind::DnsRecord),
        ("v1", "Secret") => Some(ResourceKind::Secret),
        _ => None,
    };
    let Some(kind_enum) = known else {
        let object = ObjectRef { kind: ResourceKind::Unknown, written_kind: Some(kind.clone()), namespace, name };
        let message = format!(
            "{at}: unknown kind {kind:?} with apiVersion {api_version:?}; Switchyard reads ApiRoute, BackendService, VpcAuthorization, DnsRecord ({API_VERSION}) and app Secrets (v1)"
        );
        resources.invalid.push(InvalidObject { object, generation, reason: reason::UNKNOWN_KIND, message });
        return;
    };
    let namespaced = kind_enum != ResourceKind::DnsRecord;
    let object = ObjectRef::new(kind_enum, namespaced.then(|| namespace.as_deref().unwrap_or("default")), &name);
    let invalid = |message: String| InvalidObject { object: object.clone(), generation, reason: reason::INVALID_SPEC, message };
    if name.is_empty() {
        resources.invalid.push(invalid(format!("{at}: metadata.name is required")));
        return;
    }
    let unknown = serde_json::to_value(&value).map(|json| strict::unknown_fields(&kind, &json)).unwrap_or_default();
    if !unknown.is_empty() {
        let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
        resources.invalid.push(invalid(format!("{at}: strict decoding error: {}", fields.join(", "))));
        return;
    }
    let outcome = match kind_enum {
        ResourceKind::ApiRoute => decode(value).map(|r| resources.api_routes.push(r)),
        ResourceKind::BackendService => decode(value).map(|r| resources.backend_services.push(r)),
        ResourceKind::VpcAuthorization => decode(value).map(|r| resources.vpc_authorizations.push(r)),
        ResourceKind::DnsRecord => decode(value).map(|r| resources.dns_records.push(r)),
        ResourceKind::Secret => {
            let ns = namespace.as_deref().unwrap_or("default");
            let data = secret_data(&value);
            if labelled(&value, CERTIFICATE_LABEL) {
                resources.certificates.push(CertificateSecret {
                    namespace: ns.to_owned(),
                    name: name.clone(),
                    secret_type: text("type"),
                    certificate_chain: data.0.get("tls.crt").cloned(),
                    private_key: data.0.get("tls.key").cloned(),
                });
            }
            resources.secrets.insert((ns.to_owned(), name.clone()), data);
            app_secret(&value, ns, &name).map(|app| resources.apps.extend(app))
        }
        ResourceKind::Unknown => unreachable!("handled above"),
    };
    if let Err(e) = outcome {
        resources.invalid.push(invalid(format!("{at}: {e}")));
    }
}

/// Decodes with the failing field's path in the message (`spec.backendRefs[0].weight: ...`).
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) }
    })
}

/// Every key of a Secret, labelled or not (what `credentialsSecretRef` and the like
/// read): `stringData` over base64 `data`, as the API server merges them. A `data` value
/// that is not base64 UTF-8 is left out (its reference then reports the key missing).
fn secret_data(value: &Value) -> crate::SecretData {
    let mut data = std::collections::BTreeMap::new();
    let entries = |field: &str| {
        let map = value.get(field).and_then(Value::as_mapping).into_iter().flatten();
        map.filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?)))
    };
    for (key, encoded) in entries("data") {
        if let Some(decoded) = decode_base64(encoded) {
            data.insert(key, decoded);
        }
    }
    for (key, plain) in entries("stringData") {
        data.insert(key, plain.to_owned());
    }
    crate::SecretData(data)
}

/// An app Secret: labelled `switchyard.dev/app`, with appKey, appSecret, appCode in
/// `stringData` or base64 `data`. Secrets without the label are not apps and are skipped.
fn app_secret(value: &Value, namespace: &str, name: &str) -> Result<Option<AppSecret>, String> {
    if !labelled(value, APP_LABEL) {
        return Ok(None);
    }
    let field = |key: &str| -> Result<String, String> {
        if let Some(v) = value.get("stringData").and_then(|d| d.get(key)).and_then(Value::as_str) {
            return Ok(v.to_owned());
        }
        let encoded = value
            .get("data")
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("app Secret is missing {key} (stringData or data)"))?;
        decode_base64(encoded).ok_or_else(|| format!("data.{key} is not valid base64 UTF-8"))
    };
    Ok(Some(AppSecret {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        app_key: field("appKey")?,
        app_secret: field("appSecret")?,
        app_code: field("appCode")?,
    }))
}

/// Whether the object carries `label: "true"`.
fn labelled(value: &Value, label: &str) -> bool {
    value.get("metadata").and_then(|m| m.get("labels")).and_then(|l| l.get(label)).and_then(Value::as_str).is_some_and(|v| v == "true")
}

/// Standard base64 (with padding) as Kubernetes writes Secret data.
fn decode_base64(text: &str) -> Option<String> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim().as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_secret_data_decodes() {
        assert_eq!(decode_base64("czNjcjN0").as_deref(), Some("s3cr3t"));
        assert_eq!(decode_base64("YQ==").as_deref(), Some("a"));
        assert_eq!(decode_base64("YWI=").as_deref(), Some("ab"));
        assert_eq!(decode_base64("YW"), None);
        assert_eq!(decode_base64("Y!==").as_deref(), None);
    }

    #[test]
    fn any_secret_is_kept_by_name_with_string_data_over_data() {
        let mut resources = Resources::default();
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: login, namespace: shop}\n\
                    data: {username: bmFjb3M=, password: b2xk, broken: '!!'}\nstringData: {password: new}\n";
        add_yaml(&mut resources, "t", yaml);
        assert!(resources.invalid.is_empty() && resources.apps.is_empty(), "an unlabelled Secret is not an app");
        let data = &resources.secrets[&("shop".to_owned(), "login".to_owned())].0;
        assert_eq!(data.get("username").map(String::as_str), Some("nacos"));
        assert_eq!(data.get("password").map(String::as_str), Some("new"));
        assert!(!data.contains_key("broken"));
    }
}
