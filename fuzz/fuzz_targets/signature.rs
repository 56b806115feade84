//! Signature auth: the signer (`string_to_sign` + `sign`, what a client does) and the
//! verifier (what the gateway does on every request) agree on every request a client can
//! send, and a wrong signature never verifies. With raw headers, the verifier answers
//! every malformed request with a 4xx, never a panic or a 5xx.
//!
//! Input: a flags byte, then newline-separated fields: method, path, query, Accept,
//! Content-Type, Date, nonce, body, then `name:value` headers to sign.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use switchyard_proxy::auth::signature::{
    RequestParts, SignatureMethod, SigningApp, SigningParts, Verifier, content_md5, is_form, sign, string_to_sign,
};

const NOW_MS: u64 = 1_700_000_000_000;
const SECRET: &str = "s3cr3t";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let fields: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    if flags & 1 == 0 { signed_request_verifies(flags, &field) } else { raw_headers(&fields) }
});

/// Visible ASCII and inner spaces, trimmed: what a header value can be on the wire.
fn visible(bytes: &[u8]) -> String {
    let kept: String = bytes.iter().filter(|b| (0x20..0x7f).contains(*b)).map(|&b| char::from(b)).collect();
    kept.trim().to_owned()
}

fn signed_request_verifies<'a>(flags: u8, field: &dyn Fn(usize) -> &'a [u8]) {
    let method_name = visible(field(0)).replace(' ', "");
    let method_text = if method_name.is_empty() { "GET".to_owned() } else { method_name };
    let path = format!("/{}", visible(field(1)).replace([' ', '?', '#'], ""));
    let query = visible(field(2)).replace([' ', '#'], "");
    let query = (!query.is_empty()).then_some(query.as_str());
    let (accept, content_type, date) = (visible(field(3)), visible(field(4)), visible(field(5)));
    let nonce = visible(field(6)).replace(' ', "");
    let nonce = if nonce.is_empty() { "n".to_owned() } else { nonce.chars().take(128).collect() };
    let body = field(7);
    let method = if flags & 2 == 0 { SignatureMethod::HmacSha256 } else { SignatureMethod::HmacSha1 };

    let mut headers = HeaderMap::new();
    let mut put = |name: &str, value: &str| {
        headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    };
    put("x-ca-key", "key1");
    put("x-ca-timestamp", &NOW_MS.to_string());
    put("x-ca-nonce", &nonce);
    put("x-ca-signature-method", method.name());
    for (name, value) in [("accept", &accept), ("content-type", &content_type), ("date", &date)] {
        if !value.is_empty() {
            put(name, value);
        }
    }
    if flags & 4 != 0 {
        put("content-md5", &content_md5(body));
    }
    let mut listed = vec!["x-ca-key".to_owned(), "x-ca-nonce".to_owned(), "x-ca-timestamp".to_owned(), "x-ca-signature-method".to_owned()];
    for i in 8..16 {
        let line = field(i);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name: String = line[..colon].iter().filter(|b| b.is_ascii_alphanumeric() || **b == b'-').map(|&b| char::from(b)).collect();
        if name.is_empty() || name.to_ascii_lowercase().starts_with("x-ca-signature") || name.eq_ignore_ascii_case("content-md5") {
            continue;
        }
        let value = visible(&line[colon + 1..]);
        put(&name.to_ascii_lowercase(), &value);
        listed.push(if flags & 8 != 0 { name.to_ascii_uppercase() } else { name });
    }
    let signed_headers = listed.join(",");
    put("x-ca-signature-headers", &signed_headers);

    // The client's view: each listed name (as listed) with the request's first value.
    let values: Vec<(String, String)> = listed
        .iter()
        .map(|name| {
            let value = headers.get(name.to_ascii_lowercase().as_str()).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (name.clone(), value)
        })
        .collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("");
    let form = is_form(header("content-type").as_bytes()).then_some(body);
    let parts = SigningParts {
        method: &method_text,
        accept: header("accept"),
        content_md5: header("content-md5"),
        content_type: header("content-type"),
        date: header("date"),
        headers: &pairs,
        path: &path,
        query,
        form,
    };
    let to_sign = string_to_sign(&parts);
    let signature = sign(SECRET.as_bytes(), method, &to_sign);
    let wrong = sign(b"another secret", method, &to_sign);

    let verifier = Verifier::new("fuzz/route", vec![SigningApp::new("key1", SECRET, true)]);
    for (value, should_pass) in [(signature, true), (wrong, false)] {
        let mut signed = headers.clone();
        signed.insert("x-ca-signature", HeaderValue::from_str(&value).unwrap());
        let presented = verifier.presented(&signed, NOW_MS).unwrap_or_else(|e| panic!("{e:?} for {signed:?}"));
        let body = presented.needs_body().then_some(body);
        let request = RequestParts { method: &method_text, path: &path, query, headers: &signed };
        let verdict = verifier.verify(&presented, &request, body);
        if should_pass {
            verdict.unwrap_or_else(|e| panic!("a correctly signed request failed: {e:?}\nclient signed {to_sign:?}"));
        } else {
            assert!(verdict.is_err(), "a wrong signature verified");
        }
    }
}

fn raw_headers(fields: &[&[u8]]) {
    let mut headers = HeaderMap::new();
    let (body, lines): (&[u8], &[&[u8]]) = match fields.split_first() {
        Some((body, lines)) => (body, lines),
        None => (b"", &[]),
    };
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    let verifier = Verifier::new("fuzz/route", vec![SigningApp::new("key1", SECRET, true), SigningApp::new("key2", SECRET, false)]);
    let checked = verifier.presented(&headers, NOW_MS).and_then(|presented| {
        let body = presented.needs_body().then_some(body);
        let request = RequestParts { method: "POST", path: "/p", query: Some("a=1"), headers: &headers };
        verifier.verify(&presented, &request, body)
    });
    if let Err(error) = checked {
        let status = error.status().as_u16();
        assert!((400..500).contains(&status), "{status} for {error:?}");
    }
}
