//! Golden tests: `tests/golden/compile/<case>/in.yaml` (manifests) compiles to
//! `out.yaml` (snapshot and every status). `UPDATE_GOLDEN=1 cargo test` rewrites the
//! expected files; review the diff like any other code change.

use std::path::{Path, PathBuf};

use serde::Serialize;
use switchyard_compile::snapshot::Snapshot;
use switchyard_compile::{CompileOptions, HostOwnership, ResourceStatus, Resources, compile, manifest};

#[derive(Serialize)]
struct Golden<'a> {
    statuses: &'a [ResourceStatus],
    snapshot: &'a Snapshot,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/compile")
}

/// A case's `options.yaml` (`hostOwnership: namespace`, `allowLinkLocalGrants: true`),
/// the command-line choices compile reads; defaults without it.
fn options(case: &Path) -> CompileOptions {
    let Ok(text) = std::fs::read_to_string(case.join("options.yaml")) else { return CompileOptions::default() };
    let value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    CompileOptions {
        host_ownership: match value["hostOwnership"].as_str() {
            Some("namespace") => HostOwnership::PerNamespace,
            _ => HostOwnership::Shared,
        },
        allow_link_local_grants: value["allowLinkLocalGrants"].as_bool().unwrap_or(false),
    }
}

#[test]
fn every_golden_case_compiles_to_its_expected_output() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 5, "golden cases are missing");
    let mut failures = Vec::new();
    for case in cases {
        let input = std::fs::read_to_string(case.join("in.yaml")).unwrap();
        let mut resources = Resources::default();
        manifest::add_yaml(&mut resources, "in.yaml", &input);
        resources.options = options(&case);
        let compiled = compile(&resources);
        let actual = serde_yaml::to_string(&Golden { statuses: &compiled.statuses, snapshot: &compiled.snapshot }).unwrap();
        let out = case.join("out.yaml");
        if update {
            std::fs::write(&out, &actual).unwrap();
        } else if std::fs::read_to_string(&out).ok().as_deref() != Some(actual.as_str()) {
            failures.push(format!("{}:\n{actual}", case.display()));
        }
    }
    assert!(failures.is_empty(), "golden output differs (UPDATE_GOLDEN=1 to accept):\n{}", failures.join("\n"));
}
