//! Resource strings that reach the wire, and link-local grants, against the real binary:
//! a tenant's VpcAuthorization cannot make the controller write a second, forged request
//! (its connectivity probe path is refused before anything is dialled), and cannot grant
//! cloud metadata unless the gateway runs with `--allow-link-local-grants`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{ConfigDir, Switchyard, wait_until};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

/// A raw TCP listener on 127.0.0.1 that records every connection and the bytes each one
/// sent, and answers anything with `200 OK` (what a probe needs to pass).
struct Recorder {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let sink = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let index = {
                    let mut all = sink.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 4096];
                    let mut answered = false;
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        sink.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                        if !answered {
                            answered = true;
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                        }
                    }
                });
            }
        });
        Self { addr, connections }
    }

    fn connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    fn received(&self) -> String {
        let all = self.connections.lock().unwrap();
        all.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("\n---\n")
    }
}

fn authorization(name: &str, port: u16, path_yaml: &str) -> String {
    format!(
        "{API}\nkind: VpcAuthorization\nmetadata: {{name: {name}}}\n\
         spec: {{target: {{address: 127.0.0.1}}, ports: [{port}], connectivityTest: {{interval: 1s, http: {{path: {path_yaml}}}}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_path_carrying_crlf_is_refused_and_the_forged_request_never_reaches_the_target() {
    let target = Recorder::start();
    let control = Recorder::start();
    let forged =
        r#""/healthz HTTP/1.1\r\nHost: orders\r\n\r\nPOST /admin/delete-all HTTP/1.1\r\nHost: orders\r\nContent-Length: 0\r\n\r\n""#;
    let config = ConfigDir::with(&[
        ("forged.yaml", &authorization("forged", target.addr.port(), forged)),
        ("control.yaml", &authorization("control", control.addr.port(), "/healthz")),
    ]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;

    let refused = gw.condition("VpcAuthorization", "forged", "Accepted").await;
    assert_eq!(refused, Some(("False".into(), "InvalidPath".into())), "{}", gw.log_text());
    // The control authorization shows the prober ran (twice: the interval is 1s), so the
    // forged one had every chance to be tested too.
    wait_until("the control authorization is tested twice", Duration::from_secs(10), || async { control.connections() >= 2 }).await;
    assert!(control.received().starts_with("GET /healthz HTTP/1.1\r\n"), "{}", control.received());
    assert_eq!(gw.condition("VpcAuthorization", "control", "Connected").await, Some(("True".into(), "Connected".into())));
    assert_eq!(target.connections(), 0, "the refused authorization was dialled; it received:\n{}", target.received());
    assert!(!target.received().contains("delete-all"));
}

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).envs(env.iter().copied()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn validate_refuses_a_link_local_grant_and_accepts_it_with_allow_link_local_grants() {
    let config = ConfigDir::with(&[(
        "metadata.yaml",
        &format!(
            "{API}\nkind: VpcAuthorization\nmetadata: {{name: metadata}}\nspec: {{target: {{address: 169.254.169.254}}, ports: [80]}}\n"
        ),
    )]);
    let file = config.file("metadata.yaml");
    let file = file.to_str().unwrap();
    let (code, out) = switchyard(&["validate", "-f", file], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("VpcAuthorization default/metadata: Accepted=False (LinkLocalNotAllowed)"), "{out}");
    assert!(out.contains("--allow-link-local-grants"), "the message says how to allow it: {out}");

    let (code, out) = switchyard(&["validate", "--allow-link-local-grants", "-f", file], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VpcAuthorization default/metadata: Accepted=True (Accepted)"), "{out}");
    let (code, out) = switchyard(&["validate", "-f", file], &[("SWITCHYARD_ALLOW_LINK_LOCAL_GRANTS", "true")]);
    assert_eq!(code, 0, "the environment variable works too: {out}");
}

#[test]
fn a_host_target_pinned_to_cloud_metadata_is_not_dialled_by_vpc_test() {
    let config = ConfigDir::with(&[
        (
            "dns.yaml",
            &format!(
                "{API}\nkind: DnsRecord\nmetadata: {{name: metadata}}\nspec: {{domain: metadata.internal, type: A, records: [{{address: 169.254.169.254, weight: 100}}]}}\n"
            ),
        ),
        (
            "auth.yaml",
            &format!(
                "{API}\nkind: VpcAuthorization\nmetadata: {{name: metadata}}\nspec: {{target: {{host: metadata.internal}}, ports: [80]}}\n"
            ),
        ),
    ]);
    let dir = config.path().to_str().unwrap();
    let started = std::time::Instant::now();
    let (code, out) = switchyard(&["vpc", "test", "metadata", "--config-dir", dir], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Connected=False: no address to test (link-local address(es) 169.254.169.254 skipped"),
        "the address is skipped, not dialled: {out}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "no connect was attempted (it would wait for the probe timeout)");
}

#[test]
fn the_compile_options_are_flags_of_every_subcommand_that_compiles() {
    for (subcommand, ownership) in [(&["standalone"][..], true), (&["controller"], true), (&["validate"], true), (&["vpc", "test"], false)]
    {
        let mut args = subcommand.to_vec();
        args.push("--help");
        let (code, help) = switchyard(&args, &[]);
        assert_eq!(code, 0, "{help}");
        assert!(
            help.contains("--allow-link-local-grants") && help.contains("SWITCHYARD_ALLOW_LINK_LOCAL_GRANTS"),
            "{subcommand:?}: {help}"
        );
        assert_eq!(help.contains("--host-ownership"), ownership, "{subcommand:?}: {help}");
    }
    let (code, out) = switchyard(&["validate", "--host-ownership", "tenant", "-f", "/dev/null"], &[]);
    assert_eq!(code, 2, "an unknown value is refused: {out}");
}
