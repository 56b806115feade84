use super::*;

const NOW: u64 = 1_700_000_000_000;
const SIGNED: &str = "x-ca-key,x-ca-nonce,x-ca-signature-method,x-ca-timestamp";

fn verifier() -> Verifier {
    Verifier::new("shop/orders", vec![SigningApp::new("204000001", "s3cr3t", true), SigningApp::new("204000002", "other", false)])
}

/// The headers of a request signed now (as the scheme's clients do), before the
/// signature itself.
fn unsigned_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-ca-key", "204000001"),
        ("x-ca-timestamp", "1700000000000"),
        ("x-ca-nonce", "5f1a7d0e-0b1c-4b55-9d3a-3c2a8f0e9b11"),
        ("x-ca-signature-method", "HmacSHA256"),
        ("x-ca-signature-headers", SIGNED),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
}

/// Signs `headers` for `method path?query` with `secret`, exactly as [`Verifier`] reads it.
fn signed(mut headers: HeaderMap, secret: &str, method: &str, path: &str, query: Option<&str>, body: Option<&[u8]>) -> HeaderMap {
    let algorithm =
        headers.get(&X_CA_SIGNATURE_METHOD).map_or(SignatureMethod::HmacSha256, |m| SignatureMethod::parse(m.to_str().unwrap()).unwrap());
    let listed: Vec<String> = headers
        .get(&X_CA_SIGNATURE_HEADERS)
        .map(|v| v.to_str().unwrap().split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    let value = |name: &str| headers.get(name).map_or(String::new(), |v| v.to_str().unwrap().to_owned());
    let pairs: Vec<(String, String)> = listed.iter().map(|n| (n.clone(), value(n))).collect();
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let form = body.filter(|_| headers.get("content-type").is_some_and(|t| is_form(t.as_bytes())));
    let (accept, md5, ctype, date) = (value("accept"), value("content-md5"), value("content-type"), value("date"));
    let parts =
        SigningParts { method, accept: &accept, content_md5: &md5, content_type: &ctype, date: &date, headers: &pairs, path, query, form };
    let signature = sign(secret.as_bytes(), algorithm, &string_to_sign(&parts));
    headers.insert(X_CA_SIGNATURE, HeaderValue::from_str(&signature).unwrap());
    headers
}

fn check(headers: &HeaderMap, method: &str, path: &str, query: Option<&str>, body: Option<&[u8]>) -> Result<(), GatewayError> {
    check_at(headers, method, path, query, body, NOW)
}

fn check_at(headers: &HeaderMap, method: &str, path: &str, query: Option<&str>, body: Option<&[u8]>, now: u64) -> Result<(), GatewayError> {
    let verifier = verifier();
    let presented = verifier.presented(headers, now)?;
    verifier.verify(&presented, &RequestParts { method, path, query, headers }, body)
}

fn refusal(result: Result<(), GatewayError>) -> (&'static str, String) {
    let error = result.expect_err("refused");
    (error.code(), error.client_message())
}

#[test]
fn the_string_to_sign_has_the_seven_parts_in_the_specs_order() {
    let parts = SigningParts {
        method: "POST",
        accept: "application/json",
        content_md5: "XUFAKrxLKna5cZ2REBfFkg==",
        content_type: "application/x-www-form-urlencoded; charset=UTF-8",
        date: "Wed, 09 May 2018 13:30:29 GMT",
        headers: &[("X-Ca-Timestamp", "1525872629832"), ("X-Ca-Key", "203753385"), ("x-ca-nonce", "c9f15cbf")],
        path: "/http2test/test",
        query: Some("param1=test"),
        form: Some(b"password=123456&username=xiaoming"),
    };
    assert_eq!(
        string_to_sign(&parts),
        "POST\napplication/json\nXUFAKrxLKna5cZ2REBfFkg==\napplication/x-www-form-urlencoded; charset=UTF-8\nWed, 09 May 2018 13:30:29 GMT\n\
         X-Ca-Key:203753385\nX-Ca-Timestamp:1525872629832\nx-ca-nonce:c9f15cbf\n\
         /http2test/test?param1=test&password=123456&username=xiaoming",
        "headers sorted by name as listed (byte order: upper case first), parameters by key"
    );
}

#[test]
fn absent_parts_are_empty_lines_and_a_request_without_parameters_has_no_question_mark() {
    let parts = SigningParts { method: "GET", path: "/", ..Default::default() };
    assert_eq!(string_to_sign(&parts), "GET\n\n\n\n\n/");
    let parts = SigningParts { method: "GET", path: "/", query: Some(""), form: Some(b""), ..Default::default() };
    assert_eq!(string_to_sign(&parts), "GET\n\n\n\n\n/");
}

#[test]
fn parameters_are_decoded_sorted_first_value_wins_and_empty_values_are_the_key_alone() {
    let parts = SigningParts {
        method: "GET",
        path: "/a%20b/%E5%BC%A0",
        query: Some("b=2&a=x+y&b=3&c=&d&a=z&e=%26%3D&=skipped"),
        ..Default::default()
    };
    assert_eq!(string_to_sign(&parts), "GET\n\n\n\n\n/a b/张?a=x y&b=2&c&d&e=&=");
}

#[test]
fn a_query_key_shadows_the_same_form_key() {
    let parts = SigningParts { method: "POST", path: "/p", query: Some("k=query"), form: Some(b"k=form&j=1"), ..Default::default() };
    assert_eq!(string_to_sign(&parts), "POST\n\n\n\n\n/p?j=1&k=query");
}

#[test]
fn signatures_match_an_independent_hmac() {
    // From Python: base64.b64encode(hmac.new(b"s3cr3t", b"GET\n\n\n\n\n/", sha256 / sha1).digest())
    assert_eq!(sign(b"s3cr3t", SignatureMethod::HmacSha256, "GET\n\n\n\n\n/"), "FrNSG952fuaxflj96Ms4BkryABvh1DF4DcjlmX5FMlg=");
    assert_eq!(sign(b"s3cr3t", SignatureMethod::HmacSha1, "GET\n\n\n\n\n/"), "L7tcbwaPbGra5j2P/G2U1Xmf818=");
    assert_eq!(content_md5(b"hello"), "XUFAKrxLKna5cZ2REBfFkg==");
}

#[test]
fn methods_parse_in_any_case_and_default_to_sha256() {
    assert_eq!(SignatureMethod::parse("HmacSHA256"), Some(SignatureMethod::HmacSha256));
    assert_eq!(SignatureMethod::parse("hmacsha1"), Some(SignatureMethod::HmacSha1));
    assert_eq!(SignatureMethod::parse("HmacMD5"), None);
    assert_eq!(SignatureMethod::default().name(), "HmacSHA256");
}

#[test]
fn only_urlencoded_bodies_are_forms() {
    assert!(is_form(b"application/x-www-form-urlencoded"));
    assert!(is_form(b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
    assert!(!is_form(b"application/x-www-form-urlencodedx"));
    assert!(!is_form(b"application/json"));
    assert!(!is_form(b"multipart/form-data; boundary=x"));
}

#[test]
fn a_correctly_signed_request_passes_with_either_method() {
    let headers = signed(unsigned_headers(), "s3cr3t", "GET", "/orders/1", Some("v=2"), None);
    assert!(check(&headers, "GET", "/orders/1", Some("v=2"), None).is_ok());
    let mut sha1 = unsigned_headers();
    sha1.insert(X_CA_SIGNATURE_METHOD, HeaderValue::from_static("HmacSHA1"));
    let headers = signed(sha1, "s3cr3t", "GET", "/orders/1", None, None);
    assert!(check(&headers, "GET", "/orders/1", None, None).is_ok());
}

#[test]
fn without_a_method_header_the_signature_is_sha256() {
    let mut headers = unsigned_headers();
    headers.remove(X_CA_SIGNATURE_METHOD);
    headers.insert(X_CA_SIGNATURE_HEADERS, HeaderValue::from_static("x-ca-timestamp,x-ca-nonce"));
    let headers = signed(headers, "s3cr3t", "GET", "/", None, None);
    assert!(check(&headers, "GET", "/", None, None).is_ok());
}

#[test]
fn signed_headers_are_looked_up_ignoring_case_and_named_as_listed() {
    let mut headers = unsigned_headers();
    headers.insert("x-tenant", HeaderValue::from_static("Blue"));
    headers.insert(X_CA_SIGNATURE_HEADERS, HeaderValue::from_static("X-Tenant, X-Ca-Timestamp,X-Ca-Nonce,X-Missing"));
    let headers = signed(headers, "s3cr3t", "GET", "/", None, None);
    assert!(check(&headers, "GET", "/", None, None).is_ok());
    let mut tampered = headers.clone();
    tampered.insert("x-tenant", HeaderValue::from_static("Red"));
    let (code, message) = refusal(check(&tampered, "GET", "/", None, None));
    assert_eq!(code, "A401SI");
    assert!(
        message.contains("#X-Ca-Nonce:5f1a7d0e-0b1c-4b55-9d3a-3c2a8f0e9b11#X-Ca-Timestamp:1700000000000#X-Missing:#X-Tenant:Red#/"),
        "{message}"
    );
}

#[test]
fn form_parameters_and_content_md5_are_covered() {
    let body: &[u8] = b"qty=2&item=book+one";
    let mut headers = unsigned_headers();
    headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
    headers.insert("content-md5", HeaderValue::from_str(&content_md5(body)).unwrap());
    let headers = signed(headers, "s3cr3t", "POST", "/orders", Some("v=1"), Some(body));
    assert!(needs_body(&headers));
    assert!(check(&headers, "POST", "/orders", Some("v=1"), Some(body)).is_ok());
    let (code, message) = refusal(check(&headers, "POST", "/orders", Some("v=1"), Some(b"qty=9&item=book+one")));
    assert_eq!(code, "A400MD", "a changed body fails its Content-MD5 first");
    assert!(message.contains(&content_md5(b"qty=9&item=book+one")), "{message}");
}

#[test]
fn a_changed_form_parameter_fails_the_signature_when_no_content_md5_is_sent() {
    let body: &[u8] = b"qty=2";
    let mut headers = unsigned_headers();
    headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
    let headers = signed(headers, "s3cr3t", "POST", "/orders", None, Some(body));
    assert!(check(&headers, "POST", "/orders", None, Some(body)).is_ok());
    let (code, message) = refusal(check(&headers, "POST", "/orders", None, Some(b"qty=3")));
    assert_eq!(code, "A401SI");
    assert!(message.ends_with("#/orders?qty=3"), "{message}");
}

#[test]
fn a_json_body_is_not_signed_unless_its_content_md5_is_sent() {
    let mut headers = unsigned_headers();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    assert!(!needs_body(&headers));
    let headers = signed(headers, "s3cr3t", "POST", "/orders", None, None);
    assert!(check(&headers, "POST", "/orders", None, None).is_ok());
}

#[test]
fn each_missing_signature_header_is_named() {
    let full = signed(unsigned_headers(), "s3cr3t", "GET", "/", None, None);
    for (name, display) in
        [("x-ca-key", "X-Ca-Key"), ("x-ca-signature", "X-Ca-Signature"), ("x-ca-timestamp", "X-Ca-Timestamp"), ("x-ca-nonce", "X-Ca-Nonce")]
    {
        let mut headers = full.clone();
        headers.remove(name);
        let (code, message) = refusal(check(&headers, "GET", "/", None, None));
        assert_eq!(code, "A400SH");
        assert_eq!(message, format!("the request is not signed: the {display} header is missing"));
    }
}

#[test]
fn an_unsupported_method_or_a_malformed_timestamp_or_nonce_is_a_400() {
    let mut headers = signed(unsigned_headers(), "s3cr3t", "GET", "/", None, None);
    headers.insert(X_CA_SIGNATURE_METHOD, HeaderValue::from_static("HmacMD5"));
    assert_eq!(refusal(check(&headers, "GET", "/", None, None)).0, "A400SM");
    for bad in ["1700000000.000", "-5", "17e11", "99999999999999999999"] {
        let mut headers = signed(unsigned_headers(), "s3cr3t", "GET", "/", None, None);
        headers.insert(X_CA_TIMESTAMP, HeaderValue::from_static(bad));
        let (code, message) = refusal(check(&headers, "GET", "/", None, None));
        assert_eq!((code, message.as_str()), ("A400SV", "X-Ca-Timestamp is invalid: not milliseconds since the Unix epoch"), "{bad}");
    }
    let mut headers = signed(unsigned_headers(), "s3cr3t", "GET", "/", None, None);
    headers.insert(X_CA_NONCE, HeaderValue::from_str(&"n".repeat(129)).unwrap());
    assert_eq!(refusal(check(&headers, "GET", "/", None, None)).0, "A400SV");
}

#[test]
fn the_window_is_fifteen_minutes_either_way_inclusive() {
    let headers = signed(unsigned_headers(), "s3cr3t", "GET", "/", None, None);
    assert!(check_at(&headers, "GET", "/", None, None, NOW + WINDOW_MS).is_ok(), "exactly 15 minutes old");
    assert!(check_at(&headers, "GET", "/", None, None, NOW - WINDOW_MS).is_ok(), "exactly 15 minutes ahead");
    let (code, message) = refusal(check_at(&headers, "GET", "/", None, None, NOW + WINDOW_MS + 1));
    assert_eq!(code, "A401TS");
    assert_eq!(message, "X-Ca-Timestamp is 900.001 s behind the gateway's clock; requests are accepted within 900 s (15 minutes) of it");
    let (_, message) = refusal(check_at(&headers, "GET", "/", None, None, NOW - WINDOW_MS - 61_250));
    assert!(message.starts_with("X-Ca-Timestamp is 961.250 s ahead of the gateway's clock"), "{message}");
}

#[test]
fn nonces_are_remembered_while_their_timestamp_is_acceptable() {
    let headers = signed(unsigned_headers(), "s3cr3t", "GET", "/", None, None);
    let verifier = verifier();
    assert_eq!(verifier.presented(&headers, NOW).unwrap().nonce_ttl_ms(NOW), WINDOW_MS);
    assert_eq!(verifier.presented(&headers, NOW - 1000).unwrap().nonce_ttl_ms(NOW - 1000), WINDOW_MS + 1000, "ahead of the clock");
    assert_eq!(verifier.presented(&headers, NOW + WINDOW_MS).unwrap().nonce_ttl_ms(NOW + WINDOW_MS), 1);
}

#[test]
fn an_unsigned_timestamp_or_nonce_is_refused() {
    for listed in ["x-ca-key,x-ca-nonce", "x-ca-timestamp", ""] {
        let mut headers = unsigned_headers();
        headers.insert(X_CA_SIGNATURE_HEADERS, HeaderValue::from_str(listed).unwrap());
        let headers = signed(headers, "s3cr3t", "GET", "/", None, None);
        let (code, message) = refusal(check(&headers, "GET", "/", None, None));
        assert_eq!(code, "A400SU", "{listed}");
        assert!(message.starts_with("X-Ca-Signature-Headers must list X-Ca-"), "{message}");
    }
}

#[test]
fn unknown_keys_are_401_and_apps_not_allowed_on_the_route_are_403() {
    let mut headers = unsigned_headers();
    headers.insert(X_CA_KEY, HeaderValue::from_static("999"));
    let headers = signed(headers, "s3cr3t", "GET", "/", None, None);
    assert_eq!(
        refusal(check(&headers, "GET", "/", None, None)),
        ("A401AK", "no app of this API's namespace has the X-Ca-Key \"999\"".into())
    );
    let mut headers = unsigned_headers();
    headers.insert(X_CA_KEY, HeaderValue::from_static("204000002"));
    let headers = signed(headers, "other", "GET", "/", None, None);
    assert_eq!(
        refusal(check(&headers, "GET", "/", None, None)),
        ("A403AP", "the app with X-Ca-Key \"204000002\" is not allowed on route shop/orders".into())
    );
}

#[test]
fn a_wrong_secret_or_a_changed_request_shows_the_servers_string_to_sign_and_no_secret() {
    let headers = signed(unsigned_headers(), "wrong", "GET", "/orders/1", Some("b=2&a=1"), None);
    let error = check(&headers, "GET", "/orders/1", Some("b=2&a=1"), None).unwrap_err();
    assert_eq!(error.code(), "A401SI");
    assert_eq!(error.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        error.client_message(),
        "Invalid Signature, Server StringToSign:GET#####x-ca-key:204000001#x-ca-nonce:5f1a7d0e-0b1c-4b55-9d3a-3c2a8f0e9b11#\
         x-ca-signature-method:HmacSHA256#x-ca-timestamp:1700000000000#/orders/1?a=1&b=2"
    );
    assert!(!error.to_string().contains("x-ca-nonce"), "the log line does not carry the request's values: {error}");
    let response = error.into_response();
    let header = response.headers()[crate::error::X_CA_ERROR_MESSAGE].to_str().unwrap().to_owned();
    assert!(header.starts_with("Invalid Signature, Server StringToSign:GET#"), "{header}");
    assert!(!header.contains("s3cr3t") && !header.contains("wrong"));
    let headers = signed(unsigned_headers(), "s3cr3t", "GET", "/orders/1", None, None);
    assert_eq!(refusal(check(&headers, "GET", "/orders/2", None, None)).0, "A401SI", "another path");
    assert_eq!(refusal(check(&headers, "POST", "/orders/1", None, None)).0, "A401SI", "another method");
}

#[test]
fn signing_apps_never_show_their_secret() {
    let app = SigningApp::new("204000001", "s3cr3t-value", true);
    let shown = format!("{app:?} {:?}", verifier());
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[test]
fn more_signed_headers_than_fit_on_the_stack_still_verify() {
    let mut headers = unsigned_headers();
    let mut listed = String::from(SIGNED);
    for i in 0..20 {
        headers.insert(HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(), HeaderValue::from_str(&i.to_string()).unwrap());
        listed.push_str(&format!(",X-H{i}"));
    }
    headers.insert(X_CA_SIGNATURE_HEADERS, HeaderValue::from_str(&listed).unwrap());
    let headers = signed(headers, "s3cr3t", "GET", "/", None, None);
    assert!(check(&headers, "GET", "/", None, None).is_ok());
    let mut tampered = headers.clone();
    tampered.insert("x-h19", HeaderValue::from_static("changed"));
    assert_eq!(refusal(check(&tampered, "GET", "/", None, None)).0, "A401SI");
}

#[test]
fn the_visible_ascii_check_is_header_value_to_str() {
    let cases = (0..=255u8).flat_map(|b| (0..19).map(move |at| (b, at)));
    for (b, at) in cases {
        let mut bytes = [b'a'; 19];
        bytes[at] = b;
        for len in [at + 1, 19] {
            let value = &bytes[..len];
            let expected = HeaderValue::from_bytes(value).is_ok_and(|v| v.to_str().is_ok());
            assert_eq!(visible_ascii(value), expected, "byte {b:#04x} at {at} of {len}");
        }
    }
    for len in 0..=17 {
        let value = "x\t-~ ".repeat(4);
        assert!(visible_ascii(&value.as_bytes()[..len]));
    }
}

#[test]
fn listed_names_are_split_on_commas_and_trimmed() {
    for list in ["", ",", " , ,", "X-Ca-Key", " X-Ca-Key ,\tx-ca-nonce\t,,x-ca-timestamp,", "a,b ,  c  ,d", "\t, a b ,"] {
        assert_eq!(listed_names(list), split_trimmed(list), "{list:?}");
    }
    // Pseudo-random lists of commas, white space and name bytes, up to 40 long.
    let alphabet = b",, \t\tab-+-X.,";
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 41) as usize;
        let list: String = (0..len).map(|i| char::from(alphabet[((seed >> (i % 60)) as usize + i * 7) % alphabet.len()])).collect();
        assert_eq!(listed_names(&list), split_trimmed(&list), "{list:?}");
    }
}

fn listed_names(list: &str) -> Vec<String> {
    Listed::parse(list.as_bytes()).names().iter().map(|(n, _)| String::from_utf8(n.to_vec()).unwrap()).collect()
}

fn split_trimmed(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect()
}

#[test]
fn a_listed_name_is_one_of_the_read_headers_exactly_when_it_equals_one_ignoring_case() {
    let visible: Vec<u8> = (0x20..0x7f).chain([b'\t']).collect();
    for name in READ_NAMES {
        for variant in [name.to_owned(), name.to_ascii_uppercase(), "X-Ca-Signature-Headers".to_owned()] {
            for at in 0..variant.len() {
                for &b in &visible {
                    let mut candidate = variant.clone().into_bytes();
                    candidate[at] = b;
                    let expected = READ_NAMES.iter().position(|n| n.as_bytes().eq_ignore_ascii_case(&candidate));
                    let found = slot_of(&candidate);
                    assert_eq!(expected.map_or(slot::OTHER, |at| at as u8), found, "{:?}", String::from_utf8_lossy(&candidate));
                }
            }
        }
    }
}

#[test]
fn the_headers_are_read_in_one_pass_with_the_first_value_of_each() {
    let mut headers = unsigned_headers();
    headers.append("x-ca-key", HeaderValue::from_static("second"));
    headers.append("accept", HeaderValue::from_static("text/plain"));
    headers.append("accept", HeaderValue::from_static("application/json"));
    headers.insert("x-other", HeaderValue::from_static("x"));
    let read = read_headers(&headers);
    for (at, name) in READ_NAMES.iter().enumerate() {
        assert_eq!(read[at], headers.get(*name), "{name}");
    }
}

#[test]
fn timestamps_are_up_to_sixteen_digits() {
    assert_eq!(parse_timestamp(b"0").unwrap(), 0);
    assert_eq!(parse_timestamp(b"0001700000000000").unwrap(), 1_700_000_000_000);
    assert_eq!(parse_timestamp(b"9999999999999999").unwrap(), 9_999_999_999_999_999);
    for bad in ["", "10000000000000000", "+1", " 1", "1 ", "١"] {
        assert!(parse_timestamp(bad.as_bytes()).is_err(), "{bad:?}");
    }
}

#[test]
fn a_long_string_to_sign_leaves_the_reused_buffer_correct_for_the_next_request() {
    let body = format!("big={}", "x".repeat(10_000));
    let mut headers = unsigned_headers();
    headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
    let form = signed(headers, "s3cr3t", "POST", "/orders", None, Some(body.as_bytes()));
    assert!(check(&form, "POST", "/orders", None, Some(body.as_bytes())).is_ok());
    assert!(STRING_TO_SIGN.with_borrow(|s| s.capacity()) <= STRING_TO_SIGN_KEPT, "not kept");
    let small = signed(unsigned_headers(), "s3cr3t", "GET", "/orders/1", None, None);
    assert!(check(&small, "GET", "/orders/1", None, None).is_ok());
    let (code, message) = refusal(check(&small, "GET", "/orders/2", None, None));
    assert_eq!(code, "A401SI");
    assert!(message.ends_with("#x-ca-timestamp:1700000000000#/orders/2"), "{message}");
}

#[test]
fn tags_are_encoded_as_standard_base64() {
    let bytes: Vec<u8> = (0..64u32).map(|i| (i * 151 + 7) as u8).chain([0xff, 0xfe, 0x00]).collect();
    for len in 0..=64 {
        for start in [0, 3] {
            let tag = &bytes[start..start + len];
            let mut out = [0u8; 88];
            assert_eq!(encode_tag(tag, &mut out), BASE64.encode(tag).as_bytes(), "{len}");
        }
    }
}
