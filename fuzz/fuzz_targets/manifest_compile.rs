//! Manifests from a hostile tenant: YAML text -> resources -> compile. Compile never
//! panics, gives every object a status, and its snapshot is one the proxy takes: it
//! survives the JSON trip to the proxy unchanged and builds a runtime there.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use switchyard_compile::snapshot::Snapshot;
use switchyard_compile::{Resources, compile, manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut resources = Resources::default();
    manifest::add_yaml(&mut resources, "fuzz.yaml", text);
    let objects = resources.api_routes.len()
        + resources.backend_services.len()
        + resources.vpc_authorizations.len()
        + resources.dns_records.len()
        + resources.invalid.len();
    let compiled = compile(&resources);
    assert!(objects == 0 || !compiled.statuses.is_empty(), "objects were read, so they have statuses");
    let json = serde_json::to_vec(&compiled.snapshot).expect("a snapshot serializes");
    let decoded: Snapshot = serde_json::from_slice(&json).expect("the proxy decodes what compile wrote");
    assert!(decoded.same_content(&compiled.snapshot), "the snapshot survives the JSON trip");
    // `FUZZ_WRITE_SNAPSHOTS=<dir>` with `-runs=0` over the seeds writes the snapshot_decode seeds.
    if let Some(dir) = std::env::var_os("FUZZ_WRITE_SNAPSHOTS")
        && !compiled.snapshot.routes.is_empty()
    {
        let name =
            format!("{:016x}.json", json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)));
        std::fs::write(std::path::Path::new(&dir).join(name), &json).expect("write a snapshot seed");
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let proxy = switchyard_proxy::Proxy::new(&mut registry, Default::default());
    if let Err(e) = proxy.apply(Arc::new(decoded)) {
        panic!("the proxy refused a compiled snapshot: {e}");
    }
});
