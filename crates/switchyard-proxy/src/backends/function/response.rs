//! The function's response JSON (`{isBase64Encoded, statusCode, headers, body}`) turned
//! into the client's response. Whatever the function wrote, the answer is a response or
//! a 502 naming the problem: nothing here panics, and nothing the function writes can
//! reach the wire unchecked (no CR/LF/NUL, no framing or hop-by-hop headers).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::headers::is_hop_by_hop;

/// Standard alphabet; padding optional (some runtimes drop it).
const BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// How much of a value the function wrote a message quotes.
const QUOTE: usize = 64;

/// Parses the function's response body into the client's response.
pub fn parse(bytes: &[u8], backend: &str) -> Result<Response<ResponseBody>, GatewayError> {
    let invalid = |problem: String| GatewayError::FunctionResponseInvalid { backend: backend.to_owned(), problem };
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::FunctionResponseNotJson { backend: backend.to_owned(), detail: e.to_string() })?;
    let Value::Object(object) = value else {
        let detail = format!("the JSON is {}, not an object", kind(&value));
        return Err(GatewayError::FunctionResponseNotJson { backend: backend.to_owned(), detail });
    };
    let status = status(&object, backend)?;
    let is_base64 = match present(&object, "isBase64Encoded") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(invalid(format!("isBase64Encoded must be true or false, not {}", kind(other)))),
    };
    let headers = headers(&object).map_err(invalid)?;
    let body = match present(&object, "body") {
        None => Bytes::new(),
        Some(Value::String(text)) if is_base64 => Bytes::from(
            BASE64.decode(text).map_err(|e| GatewayError::FunctionBodyNotBase64 { backend: backend.to_owned(), detail: e.to_string() })?,
        ),
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => return Err(invalid(format!("body must be a string, not {}", kind(other)))),
    };
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// A field, with `null` read as absent (many SDKs write None as null).
fn present<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object.get(field).filter(|v| !v.is_null())
}

/// `statusCode`: an integer from 100 to 599, and a final one: a 1xx cannot be the answer
/// to a request (hyper would replace it with a bare 500).
fn status(object: &Map<String, Value>, backend: &str) -> Result<StatusCode, GatewayError> {
    let value = object.get("statusCode").ok_or_else(|| GatewayError::FunctionStatusMissing { backend: backend.to_owned() })?;
    let code = value.as_u64().filter(|c| (100..=599).contains(c));
    let Some(code) = code else {
        return Err(GatewayError::FunctionStatusInvalid { backend: backend.to_owned(), status: quote(&value.to_string()) });
    };
    if code < 200 {
        let problem = format!("statusCode {code} is informational (1xx), not a final answer; use 200-599");
        return Err(GatewayError::FunctionResponseInvalid { backend: backend.to_owned(), problem });
    }
    StatusCode::from_u16(code as u16)
        .map_err(|_| GatewayError::FunctionStatusInvalid { backend: backend.to_owned(), status: code.to_string() })
}

/// `headers`: an object of names to strings, numbers or booleans; each name a valid
/// token the gateway does not set itself, each value free of CR, LF, NUL and other
/// control characters (so a function cannot split the response or smuggle a header).
fn headers(object: &Map<String, Value>) -> Result<HeaderMap, String> {
    let fields = match present(object, "headers") {
        None => return Ok(HeaderMap::new()),
        Some(Value::Object(fields)) => fields,
        Some(other) => return Err(format!("headers must be an object of header names to strings, not {}", kind(other))),
    };
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        let shown = quote(name);
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header name {shown:?} is not a valid header name"))?;
        // The valid name, lowercase, as short as the invalid one would be shown.
        let shown = quote(header.as_str());
        if is_hop_by_hop(&header) || header == CONTENT_LENGTH || header == TRANSFER_ENCODING {
            return Err(format!("header {shown} is the gateway's to set (framing or hop-by-hop); a function may not send it"));
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(format!("header {shown} must be a string, number or boolean, not {}", kind(other))),
        };
        let value = HeaderValue::from_bytes(text.as_bytes())
            .map_err(|_| format!("header {shown} holds a character that cannot be sent (CR, LF, NUL or another control character)"))?;
        headers.append(header, value);
    }
    Ok(headers)
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most [`QUOTE`] characters of what the function wrote.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn answer(json: &str) -> Result<Response<ResponseBody>, GatewayError> {
        parse(json.as_bytes(), "shop/fn")
    }

    fn refused(json: &str) -> (String, String) {
        let Err(error) = answer(json) else { panic!("accepted: {json}") };
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY, "{json}");
        assert!(error.to_string().contains("shop/fn"), "the message names the backend: {error}");
        (error.code().to_owned(), error.to_string())
    }

    async fn body(response: Response<ResponseBody>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_full_response_becomes_status_headers_and_body() {
        let response =
            answer(r#"{"statusCode": 201, "headers": {"Content-Type": "text/plain", "x-n": 7, "x-b": true}, "body": "made"}"#).unwrap();
        assert_eq!(response.status(), 201);
        let headers = response.headers();
        assert_eq!(
            (headers["content-type"].as_bytes(), headers["x-n"].as_bytes(), headers["x-b"].as_bytes()),
            (&b"text/plain"[..], &b"7"[..], &b"true"[..])
        );
        assert_eq!(body(response).await, "made");
    }

    #[tokio::test]
    async fn only_statuscode_is_required_and_null_fields_are_absent() {
        let response = answer(r#"{"statusCode": 204}"#).unwrap();
        assert_eq!((response.status(), response.headers().len()), (StatusCode::NO_CONTENT, 0));
        assert_eq!(body(response).await, "");
        let response = answer(r#"{"statusCode": 200, "headers": null, "body": null, "isBase64Encoded": null, "extra": [1]}"#).unwrap();
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn a_base64_body_is_decoded_padded_or_not() {
        let response = answer(r#"{"statusCode": 200, "isBase64Encoded": true, "body": "/wD+YQ=="}"#).unwrap();
        assert_eq!(body(response).await, &[0xff, 0x00, 0xfe, b'a'][..]);
        let response = answer(r#"{"statusCode": 200, "isBase64Encoded": true, "body": "/wD+YQ"}"#).unwrap();
        assert_eq!(body(response).await, &[0xff, 0x00, 0xfe, b'a'][..]);
        let response = answer(r#"{"statusCode": 200, "isBase64Encoded": false, "body": "/wD+YQ=="}"#).unwrap();
        assert_eq!(body(response).await, "/wD+YQ==", "not flagged: the text as it is");
    }

    #[test]
    fn the_functions_own_4xx_and_5xx_are_its_answer() {
        for code in [400, 404, 500, 503, 599] {
            let response = answer(&format!(r#"{{"statusCode": {code}, "body": "no"}}"#)).unwrap();
            assert_eq!(response.status().as_u16(), code);
            assert!(!response.headers().contains_key(crate::error::X_CA_ERROR_CODE));
        }
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_d502fj_with_the_parsers_position() {
        for (json, needle) in [
            ("not json", "line 1 column 2"),
            ("", "EOF while parsing"),
            (r#"{"statusCode": 200"#, "EOF while parsing an object"),
            (r#"{"statusCode": 200} trailing"#, "trailing characters at line 1 column 21"),
        ] {
            let (code, message) = refused(json);
            assert_eq!(code, "D502FJ", "{json}");
            assert!(message.contains(needle), "{json}: {message}");
        }
        for (json, kind) in [("[1]", "an array"), ("\"x\"", "a string"), ("200", "a number"), ("null", "null")] {
            let (code, message) = refused(json);
            assert_eq!(code, "D502FJ");
            assert!(message.contains(&format!("the JSON is {kind}, not an object")), "{message}");
        }
        let deep = "[".repeat(100_000);
        assert_eq!(refused(&deep).0, "D502FJ", "deep nesting is refused, not a stack overflow");
    }

    #[test]
    fn no_statuscode_is_d502fn() {
        for json in [r#"{}"#, r#"{"body": "x", "headers": {}}"#, r#"{"StatusCode": 200}"#] {
            let (code, message) = refused(json);
            assert_eq!(code, "D502FN", "{json}");
            assert!(message.contains("without a statusCode"), "{message}");
        }
    }

    #[test]
    fn a_statuscode_that_is_not_an_integer_from_100_to_599_is_d502fs_showing_the_value() {
        for (value, shown) in [
            ("700", "700"),
            ("99", "99"),
            ("0", "0"),
            ("-200", "-200"),
            ("200.0", "200.0"),
            ("2.5e2", "250.0"),
            ("\"200\"", "\"200\""),
            ("null", "null"),
            ("true", "true"),
            ("[200]", "[200]"),
            ("18446744073709551616", "1.8446744073709552e+19"),
        ] {
            let (code, message) = refused(&format!(r#"{{"statusCode": {value}}}"#));
            assert_eq!(code, "D502FS", "{value}");
            assert!(message.contains(&format!("statusCode {shown}:")), "{value}: {message}");
        }
        let long = format!(r#"{{"statusCode": "{}"}}"#, "9".repeat(1000));
        assert!(refused(&long).1.len() < 300, "a long value is quoted short");
    }

    #[test]
    fn an_informational_status_cannot_be_the_final_answer() {
        let (code, message) = refused(r#"{"statusCode": 101}"#);
        assert_eq!(code, "D502FI");
        assert!(message.contains("statusCode 101 is informational"), "{message}");
    }

    #[test]
    fn bad_base64_is_d502fb() {
        for body in ["not base64!", "YQ=x", "Y", "====", "4pyT\n"] {
            let (code, message) = refused(&format!(r#"{{"statusCode": 200, "isBase64Encoded": true, "body": {body:?}}}"#));
            assert_eq!(code, "D502FB", "{body:?}");
            assert!(message.contains("not valid base64"), "{message}");
        }
    }

    #[test]
    fn every_other_unusable_field_is_d502fi_naming_it() {
        let cases = [
            (r#""headers": [1]"#, "headers must be an object of header names to strings, not an array"),
            (r#""headers": "x: y""#, "headers must be an object of header names to strings, not a string"),
            (r#""headers": {"x-a": {"b": 1}}"#, "header x-a must be a string, number or boolean, not an object"),
            (r#""headers": {"x-a": ["1", "2"]}"#, "header x-a must be a string, number or boolean, not an array"),
            (r#""headers": {"x-a": null}"#, "header x-a must be a string, number or boolean, not null"),
            (r#""headers": {"bad name": "1"}"#, "header name \"bad name\" is not a valid header name"),
            (r#""headers": {"": "1"}"#, "header name \"\" is not a valid header name"),
            (r#""headers": {"x-a\r\nx-b": "1"}"#, "is not a valid header name"),
            (r#""headers": {"x-a": "1\r\nset-cookie: stolen=1"}"#, "header x-a holds a character that cannot be sent"),
            (r#""headers": {"x-a": "1\n"}"#, "header x-a holds a character that cannot be sent"),
            (r#""headers": {"x-a": "a\u0000b"}"#, "header x-a holds a character that cannot be sent"),
            (r#""headers": {"Content-Length": "1"}"#, "header content-length is the gateway's to set"),
            (r#""headers": {"transfer-encoding": "chunked"}"#, "header transfer-encoding is the gateway's to set"),
            (r#""headers": {"Connection": "close"}"#, "header connection is the gateway's to set"),
            (r#""headers": {"upgrade": "h2c"}"#, "header upgrade is the gateway's to set"),
            (r#""headers": {"keep-alive": "timeout=1"}"#, "header keep-alive is the gateway's to set"),
            (r#""body": 5"#, "body must be a string, not a number"),
            (r#""body": {"a": 1}"#, "body must be a string, not an object"),
            (r#""isBase64Encoded": "true""#, "isBase64Encoded must be true or false, not a string"),
            (r#""isBase64Encoded": 1"#, "isBase64Encoded must be true or false, not a number"),
        ];
        for (field, needle) in cases {
            let (code, message) = refused(&format!(r#"{{"statusCode": 200, {field}}}"#));
            assert_eq!(code, "D502FI", "{field}");
            assert!(message.contains(needle), "{field}: {message}");
        }
    }

    #[test]
    fn a_long_header_name_is_quoted_short() {
        let name = "x".repeat(10_000);
        let (code, message) = refused(&format!(r#"{{"statusCode": 200, "headers": {{"{name}": null}}}}"#));
        assert_eq!(code, "D502FI");
        assert!(message.len() < 300 && message.contains(&format!("header {}...", "x".repeat(QUOTE))), "{message}");
    }

    #[test]
    fn a_utf8_header_value_is_sent_as_its_bytes() {
        let response = answer(r#"{"statusCode": 200, "headers": {"x-name": "café"}}"#).unwrap();
        assert_eq!(response.headers()["x-name"].as_bytes(), "café".as_bytes());
    }

    #[test]
    fn quoting_cuts_on_a_character_boundary() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(quote(&long), format!("{}...", "é".repeat(QUOTE)));
    }
}
