//! The process's own resources: listeners belong to one process (a second gateway on an
//! address in use refuses to start instead of sharing the port through `SO_REUSEPORT`
//! with another configuration), and a config folder cannot keep it from serving or from
//! stopping.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{ConfigDir, Switchyard};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_a_port_in_use_refuses_to_start() {
    let config = ConfigDir::new();
    let first = Switchyard::standalone(config.path(), &[]);
    let taken = first.addrs["proxy"].to_string();
    let args = ["standalone", "--config-dir", config.path().to_str().unwrap(), "--listen", &taken, "--admin-listen", "127.0.0.1:0"];
    let mut second = support::spawn(&args, &[]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_loop_in_the_config_folder_neither_stalls_readiness_nor_blocks_sigterm() {
    let config = ConfigDir::with(&[(
        "mock.yaml",
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: m}\nspec: {mock: {statusCode: 204}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: m}\nspec: {match: {path: /m}, backendRefs: [{name: m}]}\n",
    )]);
    std::fs::create_dir(config.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(config.path(), config.path().join("sub/loop")).unwrap();
    let mut gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    assert_eq!(support::get(&gw.proxy_url("/m")).await.unwrap().status, 204);
    let pid = gw.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.has_exited() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
