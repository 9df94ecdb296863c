//! The demo's cluster command: `envtest up` prints how to use the cluster,
//! `kubectl get nodes` lists the fake nodes Ready, and Ctrl-C stops it all.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn envtest_up_serves_kubectl_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut up = Command::new(env!("CARGO_BIN_EXE_envtest"))
        .args(["up", "--kubeconfig"])
        // Always the local cluster: this test is about the demo command itself.
        .env_remove("USE_EXISTING_CLUSTER")
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push(line.clone());
        if line.contains("press Ctrl-C to stop") || Instant::now() > deadline {
            break;
        }
    }
    let out = printed.join("\n");
    assert!(out.contains("cluster ready"), "{out}");
    assert!(
        out.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{out}"
    );

    let kubectl = envtest::binaries::Binaries::locate()
        .unwrap()
        .path("kubectl");
    let nodes = Command::new(kubectl)
        .args(["get", "nodes", "--no-headers"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&nodes.stdout);
    assert!(
        nodes.status.success(),
        "{}",
        String::from_utf8_lossy(&nodes.stderr)
    );
    for node in ["kwok-node-0", "kwok-node-1", "kwok-gpu-0"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{node} missing:\n{table}"));
        assert!(row.split_whitespace().nth(1) == Some("Ready"), "{row}");
    }

    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(up.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "envtest up did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let after = Command::new(
        envtest::binaries::Binaries::locate()
            .unwrap()
            .path("kubectl"),
    )
    .args(["get", "nodes", "--request-timeout=2s"])
    .env("KUBECONFIG", &kubeconfig)
    .output()
    .unwrap();
    assert!(
        !after.status.success(),
        "the API server still answers after Ctrl-C"
    );
}
