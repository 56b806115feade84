//! A backend's response bytes read by the gateway's upstream HTTP/1 codec: never a panic;
//! refusing or reading, whatever the framing; and the same answer however the bytes are
//! split between two reads (a pooled connection must end each response exactly where the
//! backend ended it, or the next request would read the rest as its answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_proxy::fuzzing::{FuzzRead, fuzz_read_response};

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    let head_request = control & 1 == 1;
    let whole = fuzz_read_response(bytes, head_request, bytes.len());
    // A split in the input's first bytes, in the middle, and near its end.
    let at = usize::from(control >> 1) % (bytes.len() + 1);
    for split in [at, bytes.len() / 2, bytes.len().saturating_sub(at)] {
        assert_eq!(fuzz_read_response(bytes, head_request, split), whole, "split at {split} of {}", bytes.len());
    }
    if let FuzzRead::Response { status, close_delimited, body, rest, .. } = &whole {
        // Three digits, as hyper's client reads them (600-999 pass through, as with nginx);
        // 101 ends the head reading too (the client then refuses it: no upgrade asked
        // for); every other 1xx is skipped.
        assert!(*status == 101 || (200..=999).contains(status), "a final status: {status}");
        assert!(!(*close_delimited && *rest > 0), "a body read until close leaves nothing");
        if head_request || matches!(status, 204 | 304) {
            assert!(body.is_empty(), "no body for HEAD, 204 or 304");
        }
        // A reused connection's next answer starts after this one: what this response
        // claims cannot run past what the backend sent.
        assert!(body.len() + rest <= bytes.len());
    }
});
