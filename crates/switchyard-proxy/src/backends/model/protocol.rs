//! What each inference protocol serves, and the check of a KServe v2 inference request.
//!
//! The path checked is the shaped path: what the gateway appends to the backend's `url`
//! (after the route's rewrite), without the query.

use http::Method;
use serde::Deserialize;
use serde_json::Value;
use switchyard_compile::snapshot::ModelProtocol;

/// What a request to a model backend is, once its path is one the protocol serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    /// Forwarded as it is.
    Plain,
    /// A KServe v2 `infer`: its body is checked before it is forwarded.
    KServeInfer,
}

/// What the protocol serves, for the 404 message.
pub(super) fn serves(protocol: ModelProtocol) -> &'static str {
    match protocol {
        ModelProtocol::Raw => "every path",
        ModelProtocol::KServeV2 => {
            "GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{name}[/versions/{version}] and .../ready, POST .../infer"
        }
        ModelProtocol::OpenAI => "POST /v1/chat/completions, /v1/completions, /v1/embeddings, GET /v1/models and /v1/models/{id}",
    }
}

pub(super) fn name(protocol: ModelProtocol) -> &'static str {
    match protocol {
        ModelProtocol::Raw => "Raw",
        ModelProtocol::KServeV2 => "KServeV2",
        ModelProtocol::OpenAI => "OpenAI",
    }
}

/// The call `method path` is under `protocol`, or None when the protocol does not serve it.
pub(super) fn classify(protocol: ModelProtocol, method: &Method, path: &str) -> Option<Call> {
    match protocol {
        ModelProtocol::Raw => Some(Call::Plain),
        ModelProtocol::KServeV2 => kserve(method, path),
        ModelProtocol::OpenAI => openai(method, path).then_some(Call::Plain),
    }
}

/// KServe v2 (Open Inference Protocol) REST paths.
fn kserve(method: &Method, path: &str) -> Option<Call> {
    let get = *method == Method::GET;
    let rest = match path.strip_prefix("/v2") {
        Some("") => return get.then_some(Call::Plain),
        Some(rest) => rest.strip_prefix('/')?,
        None => return None,
    };
    if rest == "health/live" || rest == "health/ready" {
        return get.then_some(Call::Plain);
    }
    let mut segments = rest.strip_prefix("models/")?.split('/');
    let _name = segments.next().filter(|s| !s.is_empty())?;
    let mut tail = segments.next();
    if tail == Some("versions") {
        segments.next().filter(|s| !s.is_empty())?;
        tail = segments.next();
    }
    if segments.next().is_some() {
        return None;
    }
    match tail {
        None | Some("ready") => get.then_some(Call::Plain),
        Some("infer") => (*method == Method::POST).then_some(Call::KServeInfer),
        Some(_) => None,
    }
}

/// The OpenAI API paths a model gateway forwards.
fn openai(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => matches!(path, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings"),
        Method::GET => path == "/v1/models" || path.strip_prefix("/v1/models/").is_some_and(|id| !id.is_empty()),
        _ => false,
    }
}

/// The tensor datatypes of the KServe v2 protocol.
const DATATYPES: [&str; 13] =
    ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"];

/// The fast path: a well-formed request deserializes into these, skipping the tensors'
/// `data` without building values for it. Only a request that fails here is walked again
/// as a `Value`, to name the field at fault.
#[derive(Deserialize)]
struct InferRequest {
    inputs: Vec<InferInput>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // read only to check their types
struct InferInput {
    name: String,
    shape: Vec<u64>,
    datatype: Datatype,
}

#[derive(Deserialize)]
#[allow(clippy::upper_case_acronyms)]
enum Datatype {
    BOOL,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    INT8,
    INT16,
    INT32,
    INT64,
    FP16,
    FP32,
    FP64,
    BYTES,
}

/// Checks that `body` is a v2 inference request: a JSON object whose `inputs` is a
/// non-empty array of objects, each with a string `name`, a `shape` of non-negative
/// integers and a v2 `datatype`. The error names the field (`inputs[1].shape`).
pub(super) fn check_infer_request(body: &[u8]) -> Result<(), String> {
    match serde_json::from_slice::<InferRequest>(body) {
        Ok(request) if request.inputs.is_empty() => Err("inputs: must be a non-empty array".into()),
        Ok(_) => Ok(()),
        Err(typed) => Err(explain(body).unwrap_or_else(|| format!("the body does not deserialize: {typed}"))),
    }
}

/// Why `body` is not an inference request, field by field (None: nothing found, which
/// the typed parse above disagrees with).
fn explain(body: &[u8]) -> Option<String> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return Some(format!("the body is not JSON: {e}")),
    };
    let Value::Object(request) = value else { return Some("the body must be a JSON object with inputs".into()) };
    let inputs = match request.get("inputs") {
        None => return Some("inputs: missing".into()),
        Some(Value::Array(inputs)) if !inputs.is_empty() => inputs,
        Some(_) => return Some("inputs: must be a non-empty array".into()),
    };
    for (i, input) in inputs.iter().enumerate() {
        let Value::Object(input) = input else { return Some(format!("inputs[{i}]: must be an object")) };
        if !matches!(input.get("name"), Some(Value::String(_))) {
            return Some(format!("inputs[{i}].name: must be a string"));
        }
        let shape_ok = matches!(input.get("shape"), Some(Value::Array(dims)) if dims.iter().all(|d| d.as_u64().is_some()));
        if !shape_ok {
            return Some(format!("inputs[{i}].shape: must be an array of non-negative integers"));
        }
        if !matches!(input.get("datatype"), Some(Value::String(t)) if DATATYPES.contains(&t.as_str())) {
            return Some(format!("inputs[{i}].datatype: must be one of {}", DATATYPES.join(", ")));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KS: ModelProtocol = ModelProtocol::KServeV2;
    const OAI: ModelProtocol = ModelProtocol::OpenAI;

    #[test]
    fn kserve_serves_the_v2_model_paths_with_their_methods() {
        let get = |p| classify(KS, &Method::GET, p);
        let post = |p| classify(KS, &Method::POST, p);
        for path in ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/bert", "/v2/models/bert/ready"] {
            assert_eq!(get(path), Some(Call::Plain), "{path}");
            assert_eq!(post(path), None, "POST {path}");
        }
        assert_eq!(get("/v2/models/bert/versions/3"), Some(Call::Plain));
        assert_eq!(get("/v2/models/bert/versions/3/ready"), Some(Call::Plain));
        assert_eq!(post("/v2/models/bert/infer"), Some(Call::KServeInfer));
        assert_eq!(post("/v2/models/bert/versions/3/infer"), Some(Call::KServeInfer));
        assert_eq!(get("/v2/models/bert/infer"), None, "infer is a POST");
        for path in [
            "/",
            "/v1/models",
            "/v2/",
            "/v2x",
            "/v2/models",
            "/v2/models/",
            "/v2/models//ready",
            "/v2/models/bert/",
            "/v2/models/bert/explain",
            "/v2/models/bert/infer/more",
            "/v2/models/bert/versions",
            "/v2/models/bert/versions//infer",
            "/v2/repository/index",
            "/v2/health",
        ] {
            assert_eq!((get(path), post(path)), (None, None), "{path}");
        }
    }

    #[test]
    fn openai_serves_the_four_endpoints_and_nothing_else() {
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
            assert_eq!(classify(OAI, &Method::POST, path), Some(Call::Plain), "{path}");
            assert_eq!(classify(OAI, &Method::GET, path), None, "GET {path}");
        }
        assert_eq!(classify(OAI, &Method::GET, "/v1/models"), Some(Call::Plain));
        assert_eq!(classify(OAI, &Method::GET, "/v1/models/meta-llama/Llama-3"), Some(Call::Plain), "ids may hold a slash");
        for (method, path) in [
            (Method::GET, "/v1/models/"),
            (Method::POST, "/v1/models"),
            (Method::DELETE, "/v1/models/ft-1"),
            (Method::POST, "/v1/files"),
            (Method::POST, "/v1/fine_tuning/jobs"),
            (Method::POST, "/v1/chat/completions/x"),
            (Method::GET, "/admin"),
        ] {
            assert_eq!(classify(OAI, &method, path), None, "{method} {path}");
        }
    }

    #[test]
    fn raw_forwards_anything() {
        assert_eq!(classify(ModelProtocol::Raw, &Method::DELETE, "/anything/at/all"), Some(Call::Plain));
    }

    const GOOD: &str = r#"{"id": "1", "inputs": [
        {"name": "input0", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]},
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"], "parameters": {"binary_data_size": 0}}
    ], "outputs": [{"name": "out"}]}"#;

    #[test]
    fn a_v2_inference_request_passes() {
        assert_eq!(check_infer_request(GOOD.as_bytes()), Ok(()));
        for datatype in DATATYPES {
            let body = format!(r#"{{"inputs": [{{"name": "x", "shape": [], "datatype": "{datatype}", "data": []}}]}}"#);
            assert_eq!(check_infer_request(body.as_bytes()), Ok(()), "{datatype}");
        }
    }

    #[test]
    fn every_refusal_names_its_field() {
        let input = |fields: &str| format!(r#"{{"inputs": [{{"name": "ok", "shape": [1], "datatype": "INT8"}}, {{{fields}}}]}}"#);
        let cases = [
            ("not json".to_owned(), "the body is not JSON"),
            ("[1, 2]".to_owned(), "must be a JSON object"),
            (r#"{"input": []}"#.to_owned(), "inputs: missing"),
            (r#"{"inputs": []}"#.to_owned(), "inputs: must be a non-empty array"),
            (r#"{"inputs": {"name": "x"}}"#.to_owned(), "inputs: must be a non-empty array"),
            (r#"{"inputs": [{"name": "ok", "shape": [1], "datatype": "INT8"}, 7]}"#.to_owned(), "inputs[1]: must be an object"),
            (input(r#""shape": [1], "datatype": "INT8""#), "inputs[1].name: must be a string"),
            (input(r#""name": 5, "shape": [1], "datatype": "INT8""#), "inputs[1].name: must be a string"),
            (input(r#""name": "x", "datatype": "INT8""#), "inputs[1].shape: must be an array of non-negative integers"),
            (input(r#""name": "x", "shape": [1, -2], "datatype": "INT8""#), "inputs[1].shape"),
            (input(r#""name": "x", "shape": [1.5], "datatype": "INT8""#), "inputs[1].shape"),
            (input(r#""name": "x", "shape": "1", "datatype": "INT8""#), "inputs[1].shape"),
            (input(r#""name": "x", "shape": [1]"#), "inputs[1].datatype: must be one of BOOL"),
            (input(r#""name": "x", "shape": [1], "datatype": "FLOAT32""#), "inputs[1].datatype"),
            (input(r#""name": "x", "shape": [1], "datatype": "fp32""#), "inputs[1].datatype"),
        ];
        for (body, want) in cases {
            let got = check_infer_request(body.as_bytes()).expect_err(&body);
            assert!(got.contains(want), "{body}: {got}");
        }
    }
}
