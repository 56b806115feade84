//! The repository as a new user meets it: its docs stand on their own (no link leaves the
//! repository, every relative link names a file that exists) and `make test` installs what
//! the tests need.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// README.md, docs/*.md and the other READMEs a user reads.
fn doc_files() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for dir in [
        "docs",
        "charts/switchyard",
        "examples/quickstart",
        "examples/registries",
        "examples/event-bus",
        "examples/functions",
        "examples/models",
        "e2e",
        "bench",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every `](target)` of a markdown file, without a `#fragment`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or_default().trim();
        if !target.is_empty() {
            out.push(target.to_owned());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn the_docs_never_name_a_file_outside_the_repository() {
    let root = root();
    let mut problems = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        // The project's specs lived in a folder next to the repository; nothing may point there.
        for (n, line) in text.lines().enumerate() {
            if line.contains("shared/") || line.contains("DESIGN.md") {
                problems.push(format!("{shown}:{}: names a file outside the repository: {line}", n + 1));
            }
        }
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = file.parent().unwrap().join(&target);
            match resolved.canonicalize() {
                Ok(path) if path.starts_with(&root) => {}
                Ok(_) => problems.push(format!("{shown}: links {target}, which is outside the repository")),
                Err(_) => problems.push(format!("{shown}: links {target}, which does not exist")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_resource_reference_covers_every_kind_and_error_code() {
    let reference = std::fs::read_to_string(root().join("docs/resources.md")).expect("docs/resources.md is the resource reference");
    for needle in ["## ApiRoute", "## BackendService", "## VpcAuthorization", "## DnsRecord", "## App Secrets", "## Error codes"] {
        assert!(reference.contains(needle), "docs/resources.md has no {needle:?} section");
    }
    // Every code the proxy can answer with is listed.
    let errors = std::fs::read_to_string(root().join("crates/switchyard-proxy/src/error.rs")).unwrap();
    for line in errors.lines() {
        let Some((_, after)) = line.split_once("=> \"") else { continue };
        let code = &after[..after.find('"').unwrap()];
        if code.len() == 6 && (code.starts_with('A') || code.starts_with('D')) {
            assert!(reference.contains(&format!("`{code}`")), "docs/resources.md does not list error code {code}");
        }
    }
}

/// `scripts/test.sh` with a PATH holding only fakes: apt-get records what it is asked to
/// install, cargo and python3 succeed, and there is no npm.
#[test]
fn make_test_installs_npm_when_it_is_missing() {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    if uid != "0" {
        eprintln!("skipped: scripts/test.sh installs with apt-get only as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path();
    let log = bin.join("apt.log");
    let script = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    };
    script("apt-get", &format!("echo \"$*\" >> {}", log.display()));
    script("cargo", "exit 0");
    script("python3", "exit 0");
    for tool in ["dirname", "mktemp", "rm"] {
        let found = ["/usr/bin", "/bin"].into_iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists()).expect(tool);
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }

    let out = Command::new("/bin/bash")
        .arg(root().join("scripts/test.sh"))
        .env_clear()
        .env("PATH", bin)
        .env("TEST_DEPS_ONLY", "1")
        .env("SWITCHYARD_TOOLS", dir.path().join("tools"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let installed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        installed.lines().any(|l| l.starts_with("install") && l.split_whitespace().any(|w| w == "npm")),
        "apt-get was asked for: {installed:?}\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
}
