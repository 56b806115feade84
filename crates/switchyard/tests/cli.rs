//! `switchyard crds`, `switchyard validate` and `switchyard vpc test` as an operator runs them.

use std::process::Command;

fn switchyard(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn golden(case: &str) -> String {
    format!("{}/../../tests/golden/compile/{case}/in.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn crds_prints_the_four_committed_crds() {
    let (code, out) = switchyard(&["crds"]);
    assert_eq!(code, 0);
    let crds_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds");
    let mut files: Vec<_> = std::fs::read_dir(crds_dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 4);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(out.contains(&text), "{} is not what `switchyard crds` prints", file.display());
    }
}

#[test]
fn validate_exits_zero_and_prints_every_condition_for_valid_manifests() {
    let (code, out) = switchyard(&["validate", "-f", &golden("quickstart")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ApiRoute default/get-order: Programmed=True (Programmed)"), "{out}");
    assert!(out.contains("BackendService default/orders: Ready=True"), "{out}");
}

#[test]
fn validate_exits_nonzero_and_names_each_problem_for_invalid_manifests() {
    let (code, out) = switchyard(&["validate", "-f", &golden("invalid-manifests")]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "BackendService default/ftp: Accepted=False (InvalidSpec)",
        "BackendService default/both: Accepted=False (InvalidKind)",
        "ApiRoute default/missing-backend: ResolvedRefs=False (BackendNotFound)",
        "ApiRoute default/bad-template: Accepted=False (InvalidPathTemplate)",
        "ApiRoute default/zz-duplicate: Accepted=False (Conflicted)",
        "RateLimit too-fast: Accepted=False (UnknownKind)",
        "ApiRoute default/good: Programmed=True",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn validate_reads_several_files_together() {
    let dir = tempfile::tempdir().unwrap();
    let backend = dir.path().join("backend.yaml");
    let route = dir.path().join("route.yaml");
    std::fs::write(&backend, "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b}\nspec: {mock: {}}\n").unwrap();
    std::fs::write(
        &route,
        "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: r}\nspec: {match: {path: /r}, backendRefs: [{name: b}]}\n",
    )
    .unwrap();
    let (alone, _) = switchyard(&["validate", "-f", route.to_str().unwrap()]);
    assert_eq!(alone, 1, "the route alone misses its backend");
    let (together, out) = switchyard(&["validate", "-f", route.to_str().unwrap(), "-f", backend.to_str().unwrap()]);
    assert_eq!(together, 0, "{out}");
}

#[test]
fn validate_of_a_missing_file_fails_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["validate", "-f", "/nonexistent.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.yaml"));
}

#[test]
fn the_shipped_quickstart_validates_cleanly() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart/resources.yaml");
    let (code, out) = switchyard(&["validate", "-f", file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 route(s) programmed"), "{out}");
}

#[test]
fn the_shipped_registry_examples_validate_cleanly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/registries");
    let (code, out) = switchyard(&["validate", "-f", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 route(s) programmed"), "{out}");
}

#[test]
fn the_shipped_event_bus_examples_validate_cleanly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/event-bus");
    let (code, out) = switchyard(&["validate", "-f", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 route(s) programmed"), "{out}");
    assert!(out.contains("Ready=False (Connecting)"), "a NATS bus is still connecting when nothing is dialled: {out}");
}

#[test]
fn validate_passes_a_data_service_whose_database_it_does_not_dial_and_refuses_duplicate_columns() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.yaml");
    let manifest = |query: &str| {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: products}}\nspec: {{dataService: {{driver: postgres, connection: {{url: \"postgres://reader@127.0.0.1:9/shop\"}}, query: \"{query}\"}}}}\n"
        )
    };
    std::fs::write(&file, manifest("SELECT id, name FROM products")).unwrap();
    let (code, out) = switchyard(&["validate", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Ready=False (Connecting)"), "validate pings no database: {out}");
    std::fs::write(&file, manifest("SELECT a.id, b.id FROM a JOIN b ON a.k = b.k")).unwrap();
    let (code, out) = switchyard(&["validate", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Accepted=False (InvalidQuery)") && out.contains("two result columns are named \"id\""), "{out}");
}

/// A folder holding one VpcAuthorization of 127.0.0.1 on `port`.
fn vpc_folder(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {{name: local, namespace: shop}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{port}]}}\n"
    );
    std::fs::write(dir.path().join("vpc.yaml"), manifest).unwrap();
    dir
}

#[test]
fn vpc_test_with_a_config_dir_tests_from_here_and_exits_1_when_the_port_is_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = vpc_folder(port);
    let args = ["vpc", "test", "local", "-n", "shop", "--config-dir", dir.path().to_str().unwrap()];
    let (open, out) = switchyard(&args);
    assert_eq!(open, 0, "{out}");
    assert!(out.starts_with("VpcAuthorization shop/local: Connected=True: 127.0.0.1:"), "{out}");
    drop(listener);
    let (closed, out) = switchyard(&args);
    assert_eq!(closed, 1, "{out}");
    assert!(out.starts_with("VpcAuthorization shop/local: Connected=False: "), "{out}");
}

#[test]
fn vpc_test_without_a_config_dir_asks_the_cluster_and_says_when_there_are_no_credentials() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["vpc", "test", "orders", "-n", "shop"])
        .env_remove("SWITCHYARD_CONFIG_DIR")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("KUBECONFIG", home.path().join("missing-kubeconfig"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("loading Kubernetes credentials"), "{stderr}");
}

#[test]
fn validate_reads_a_folder_and_standard_input_and_refuses_typos_as_the_api_server_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("routes")).unwrap();
    std::fs::write(
        dir.path().join("backend.yaml"),
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b}\nspec: {mock: {}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("routes/route.yaml"),
        "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: r}\nspec: {match: {path: /a, method: [GET]}, backendRefs: [{name: b}], timout: 5s}\n",
    )
    .unwrap();
    let (code, out) = switchyard(&["validate", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BackendService default/b: Accepted=True"), "the folder's files are read: {out}");
    assert!(out.contains("ApiRoute default/r: Accepted=False (InvalidSpec)"), "{out}");
    assert!(out.contains("unknown field \"spec.match.method\"") && out.contains("unknown field \"spec.timout\""), "{out}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: from-stdin}\nspec: {mock: {}}\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("BackendService default/from-stdin: Accepted=True"), "{text}");
}

/// The subcommands a `--help` lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if !line.starts_with(' ') {
            in_commands = line.starts_with("Commands:");
            continue;
        }
        let name = line.split_whitespace().next().unwrap_or_default();
        if in_commands && !name.is_empty() && name != "help" && line.starts_with("  ") && !line.starts_with("   ") {
            out.push(name.to_owned());
        }
    }
    out
}

/// Removes clap's `[env: ...]`, `[default: ...]`, `[possible values: ...]` annotations.
fn without_annotations(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('[') {
        let inside = &rest[at + 1..];
        let annotation = ["env:", "default:", "possible values:", "aliases:"].iter().any(|p| inside.starts_with(p));
        match inside.find(']') {
            Some(end) if annotation => {
                out.push_str(&rest[..at]);
                rest = &inside[end + 1..];
            }
            _ => {
                out.push_str(&rest[..=at]);
                rest = inside;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// The option and argument entries of a `--help` without a description.
fn undescribed(help: &str) -> Vec<String> {
    // (entry, its description so far)
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut in_list = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_list = line.starts_with("Options:") || line.starts_with("Arguments:");
            continue;
        }
        if !in_list || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent <= 6 && (text.starts_with('-') || text.starts_with('<') || text.starts_with('[')) {
            let (entry, description) = text.split_once("  ").unwrap_or((text, ""));
            entries.push((entry.to_owned(), description.to_owned()));
        } else if let Some((_, description)) = entries.last_mut() {
            description.push(' ');
            description.push_str(text);
        }
    }
    entries.into_iter().filter(|(_, d)| without_annotations(d).is_empty()).map(|(e, _)| e).collect()
}

#[test]
fn every_option_of_every_subcommand_has_a_description() {
    let mut problems = Vec::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).chain(["--help"]).collect();
        let (code, help) = switchyard(&args);
        assert_eq!(code, 0, "switchyard {}: {help}", args.join(" "));
        seen += 1;
        for entry in undescribed(&help) {
            problems.push(format!("switchyard {}: {entry} has no description", args.join(" ")));
        }
        for sub in subcommands(&help) {
            pending.push(path.iter().cloned().chain([sub]).collect());
        }
    }
    // The binary, its six subcommands and `vpc test`.
    assert!(seen >= 8, "only {seen} help pages were found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_help_parser_sees_a_missing_description() {
    let help = "Options:\n      --listen <LISTEN>\n          [env: SWITCHYARD_LISTEN=] [default: 0.0.0.0:8080]\n      --workers <N>\n          Threads [env: W=]\n  -h, --help  Print help\n";
    assert_eq!(undescribed(help), ["--listen <LISTEN>"]);
}
