//! VirtualMachines to `Running` on the local control plane (envtest:
//! kube-apiserver, controller-manager, scheduler, KWOK nodes), with the
//! operator running as a child process. Prints the time until every VM
//! runs, the operator's memory, and what it does while idle afterwards.
//!
//! Every VM imports its disk (an importer Job KWOK completes), gets its
//! launcher pod (KWOK makes it Ready), and reports `Running` once the
//! operator read the launcher's `/status` through the API server's
//! port-forward; the launchers are one stand-in control-API server in this
//! process (KWOK runs no containers), reached through a KWOK `PortForward`
//! per launcher pod.
//!
//! `ENVTEST_BIN_DIR=$(hack/control-plane.sh) cargo bench -p novacron-operator --bench scale`
//! (`VMS=50 IDLE_SECS=10` for a quick run; default 500 VMs, 120 s idle).
//! Nothing is asserted: this prints numbers.

use std::time::Duration;

use envtest::bench::{NAMESPACE, Scale, env_or};
use envtest::kwok::{ForwardTarget, forward_port};
use futures::FutureExt;
use novacron_launcher::api::{LauncherPhase, LauncherStatus};
use novacron_launcher::config::CONTROL_PORT;
use novacron_operator::crd::{VirtualMachine, VmPhase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn vm(i: u64) -> VirtualMachine {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": vm_name(i)},
        "spec": {
            "running": true,
            "template": {"spec": {
                "resources": {"cpu": 1, "memory": "512Mi", "disk": "2Gi"},
                "image": {"source": "http://images.example.com/cirros.qcow2"}
            }}
        }
    }))
    .unwrap()
}

fn vm_name(i: u64) -> String {
    format!("vm-{i:04}")
}

/// Routes every launcher pod's control port to one stand-in launcher.
async fn route_launchers(client: kube::Client, n: u64) {
    let port = stand_in_launcher().await;
    let names: Vec<u64> = (0..n).collect();
    for chunk in names.chunks(50) {
        futures::future::try_join_all(chunk.iter().map(|i| {
            let client = client.clone();
            let pod = format!("{}-launcher", vm_name(*i));
            async move {
                let target = ForwardTarget::Address {
                    address: "127.0.0.1".into(),
                    port,
                };
                forward_port(&client, NAMESPACE, &pod, CONTROL_PORT, target).await
            }
        }))
        .await
        .expect("routing the launcher pods");
    }
}

/// One control-API server answering `Running` for every launcher.
async fn stand_in_launcher() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = serde_json::to_string(&LauncherStatus {
        phase: LauncherPhase::Running,
        qemu_status: Some("running".into()),
        cpu_usage_cores: Some(0.1),
        memory_usage_bytes: Some(200 << 20),
        ..LauncherStatus::default()
    })
    .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

fn main() {
    Scale {
        binary: env!("CARGO_BIN_EXE_novacron-operator"),
        crd_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/novacron-operator/crds"),
        kind: "VMs (disk import, launcher pod, launcher status)",
        state: "Running",
        count: env_or("VMS", 500),
        idle: Duration::from_secs(env_or("IDLE_SECS", 120)),
        timeout: Duration::from_secs(env_or("READY_TIMEOUT_SECS", 1800)),
        prerequisites: String::new(),
        prepare: Some(Box::new(|client, n| route_launchers(client, n).boxed())),
        // Running VMs are polled at this interval: the idle figures count it.
        operator_env: vec![("NOVACRON_STATUS_INTERVAL", "60s".into())],
        make: vm,
        done: |v| v.status.as_ref().and_then(|s| s.phase) == Some(VmPhase::Running),
    }
    .run();
}
