//! ZooKeeper node data in the Spring Cloud (Curator ServiceInstance JSON) and plain
//! layouts: a serving instance is a valid endpoint, a skipped one a printable name.
//!
//! Input: the first byte picks the layout, then the child's name up to a newline, then
//! the node's data.
#![no_main]

#[path = "shared/instances.rs"]
mod instances;

use libfuzzer_sys::fuzz_target;
use switchyard_api::ZooKeeperLayout;
use switchyard_zookeeper::layout::{Entry, parse_entry};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let layout = if pick & 1 == 0 { ZooKeeperLayout::SpringCloud } else { ZooKeeperLayout::Plain };
    let at = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let Ok(child) = std::str::from_utf8(&rest[..at]) else { return };
    let node_data = rest.get(at + 1..).unwrap_or_default();
    match parse_entry(layout, child, node_data) {
        Entry::Serves(instance) => instances::check_instance(&instance),
        Entry::Idle => {}
        Entry::Skipped(skipped) => instances::check_skipped(&skipped),
    }
});
