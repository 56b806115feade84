//! Nacos `serviceInfo.hosts` from a registry the gateway does not control: whatever the
//! JSON, the serving instances are valid endpoints, sorted and without duplicates, and
//! the skipped entries are short, printable and sorted.
#![no_main]

#[path = "shared/instances.rs"]
mod instances;

use libfuzzer_sys::fuzz_target;
use switchyard_nacos::fuzzing::{Hosts, MAX_INSTANCES, select};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else { return };
    let Ok(hosts) = serde_json::from_slice::<Hosts>(json) else { return };
    assert!(hosts.kept.len() <= MAX_INSTANCES && hosts.kept.len() <= hosts.total);
    let clusters: Vec<String> = if pick & 1 == 1 { vec!["DEFAULT".to_owned()] } else { Vec::new() };
    let selection = select(&hosts, &clusters);
    assert!(selection.instances.len() <= hosts.kept.len());
    for instance in &selection.instances {
        instances::check_instance(instance);
    }
    for pair in selection.instances.windows(2) {
        assert!(pair[0] <= pair[1], "sorted");
        assert!((pair[0].scheme, &pair[0].host, pair[0].port) != (pair[1].scheme, &pair[1].host, pair[1].port), "one entry per endpoint");
    }
    for skipped in &selection.skipped {
        instances::check_skipped(skipped);
    }
    assert!(selection.skipped.windows(2).all(|p| p[0] < p[1]), "skipped entries sorted and deduplicated");
});
