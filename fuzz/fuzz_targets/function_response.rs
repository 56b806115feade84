//! The event function's response JSON: either a response the gateway may send (status
//! 200-599, no framing or hop-by-hop header, every header value sendable) or the 502 with
//! a D502F* code naming the problem.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_proxy::fuzzing::parse_function_response;

fuzz_target!(|data: &[u8]| {
    match parse_function_response(data, "fuzz/fn") {
        Ok(response) => {
            let status = response.status().as_u16();
            assert!((200..=599).contains(&status), "status {status}");
            for (name, value) in response.headers() {
                let name = name.as_str();
                assert!(
                    !matches!(
                        name,
                        "content-length"
                            | "transfer-encoding"
                            | "connection"
                            | "keep-alive"
                            | "upgrade"
                            | "te"
                            | "trailer"
                            | "proxy-connection"
                    ),
                    "a function set {name}"
                );
                assert!(!value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)), "{name}: {value:?}");
            }
        }
        Err(error) => {
            assert_eq!(error.status().as_u16(), 502, "{error:?}");
            assert!(error.code().starts_with("D502F"), "{}", error.code());
        }
    }
});
