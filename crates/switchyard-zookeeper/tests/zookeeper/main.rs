//! The watcher against a real ZooKeeper (the Debian `zookeeper` package; see
//! `switchyard_zookeeper::testing`). Each test runs its own server.

mod common;
mod layouts;
mod outage;
mod watching;
