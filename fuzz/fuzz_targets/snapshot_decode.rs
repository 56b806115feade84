//! The proxy's snapshot decoder (what it reads from the controller and from its disk
//! cache): any bytes either fail to decode or give a snapshot that re-encodes to the same
//! content, and applying it either builds a runtime or is refused with a message, never
//! a panic (a refused snapshot keeps the current one).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use switchyard_compile::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) else { return };
    let json = serde_json::to_vec(&snapshot).expect("a decoded snapshot encodes");
    let again: Snapshot = serde_json::from_slice(&json).expect("and decodes again");
    assert!(again.same_content(&snapshot), "decode -> encode -> decode keeps the content");
    let mut registry = prometheus_client::registry::Registry::default();
    let proxy = switchyard_proxy::Proxy::new(&mut registry, Default::default());
    match proxy.apply(Arc::new(snapshot)) {
        Ok(()) => assert!(proxy.runtime().is_some(), "an applied snapshot is live"),
        Err(message) => {
            assert!(!message.is_empty());
            assert!(proxy.runtime().is_none(), "a refused snapshot is not live");
        }
    }
});
