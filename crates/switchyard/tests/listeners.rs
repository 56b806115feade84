//! Listeners belong to one process: a second gateway on an address in use refuses to
//! start instead of sharing the port (through `SO_REUSEPORT`) with another configuration.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{ConfigDir, Switchyard};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_a_port_in_use_refuses_to_start() {
    let config = ConfigDir::new();
    let first = Switchyard::standalone(config.path(), &[]);
    let taken = first.addrs["proxy"].to_string();
    let mut second = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["standalone", "--config-dir", config.path().to_str().unwrap(), "--listen", &taken, "--admin-listen", "127.0.0.1:0"])
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second gateway started on {taken}, which the first one holds");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&taken) && stderr.contains("already listens"), "{stderr}");
    first.wait_ready().await;
}
