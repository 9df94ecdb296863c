//! 500 VirtualMachines to `Running` on the local control plane (envtest:
//! kube-apiserver, controller-manager, scheduler, KWOK nodes), with the
//! operator running as a child process under its release build. Prints the
//! time until every VM runs and the operator's resident memory.
//!
//! Every VM imports its disk (an importer Job KWOK completes), gets its
//! launcher pod (KWOK makes it Ready), and reports `Running` once the
//! operator read the launcher's `/status` through the API server's
//! port-forward; the launchers are one stand-in control-API server in this
//! process (KWOK runs no containers).
//!
//! `NOVACRON_BENCH_VMS` changes the count (default 500).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use envtest::FakeNode;
use envtest::kwok::{ForwardTarget, forward_port};
use kube::api::{Api, ListParams};
use novacron_launcher::api::{LauncherPhase, LauncherStatus};
use novacron_operator::crd::{VirtualMachine, VmPhase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the operator binary (release) and returns its path.
fn operator_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "novacron-operator",
            "--bin",
            "novacron-operator",
        ])
        .current_dir(workspace())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the operator failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    target.join("release/novacron-operator")
}

fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::var("NOVACRON_BENCH_VMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let bin = operator_binary();
    let client = envtest::client().await?;
    // Room for the launcher pods and the importer pods.
    let nodes: Vec<FakeNode> = (0..count.div_ceil(100) + 2)
        .map(|i| {
            let mut n = FakeNode::new(&format!("kwok-bench-{i}"));
            n.cpu = "256".into();
            n.memory = "1Ti".into();
            n.pods = "220".into();
            n
        })
        .collect();
    envtest::kwok::register_nodes(&client, &nodes).await?;
    let crds = workspace().join("deploy/novacron-operator/crds");
    envtest::manifest::install_crd_dir(&client, &crds).await?;
    let ns = envtest::test_namespace("nc-bench").await?;
    let port = stand_in_launcher().await;

    let mut operator = tokio::process::Command::new(&bin)
        .arg("run")
        .env("KUBECONFIG", envtest::shared().kubeconfig())
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("LOG_LEVEL", "warn")
        .env("NOVACRON_STATUS_INTERVAL", "60s")
        .kill_on_drop(true)
        .spawn()?;
    let pid = operator.id().expect("the operator runs");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);

    // Routes first (KWOK PortForward objects), then the VMs.
    let names: Vec<String> = (0..count).map(|i| format!("vm-{i:04}")).collect();
    for chunk in names.chunks(50) {
        futures::future::try_join_all(chunk.iter().map(|n| {
            let (client, ns, pod) = (client.clone(), ns.name.clone(), format!("{n}-launcher"));
            async move {
                let target = ForwardTarget::Address {
                    address: "127.0.0.1".into(),
                    port,
                };
                forward_port(&client, &ns, &pod, 8100, target).await
            }
        }))
        .await?;
    }
    let start = Instant::now();
    for chunk in names.chunks(25) {
        futures::future::try_join_all(chunk.iter().map(|n| {
            let yaml = format!(
                "apiVersion: novacron.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {n}\nspec:\n  running: true\n  template:\n    spec:\n      resources: {{cpu: 1, memory: 512Mi, disk: 2Gi}}\n      image: {{source: 'http://images.example.com/cirros.qcow2'}}\n"
            );
            let client = client.clone();
            let ns = ns.name.clone();
            async move { envtest::manifest::apply_yaml(&client, &yaml, &ns, "bench").await }
        }))
        .await?;
    }
    let created = start.elapsed();
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), &ns.name);
    let mut peak = 0u64;
    let mut half = None;
    loop {
        if let Some((_, hwm)) = rss_kib(pid) {
            peak = peak.max(hwm);
        }
        let list = vms.list(&ListParams::default()).await?;
        let running = list
            .items
            .iter()
            .filter(|v| v.status.as_ref().and_then(|s| s.phase) == Some(VmPhase::Running))
            .count();
        if half.is_none() && running * 2 >= count {
            half = Some(start.elapsed());
        }
        if running == count {
            break;
        }
        if start.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("only {running} of {count} VMs running after 30 minutes");
        }
        if let Some(status) = operator.try_wait()? {
            anyhow::bail!("the operator exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = start.elapsed();
    // Steady state: a minute of polling launchers at the status interval.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let steady = rss_kib(pid);
    println!("novacron-operator scale benchmark ({count} VMs, envtest + KWOK, release build)");
    println!(
        "  VMs created (API writes)      {:>8.1} s",
        created.as_secs_f64()
    );
    println!(
        "  half Running                  {:>8.1} s",
        half.unwrap_or(all).as_secs_f64()
    );
    println!(
        "  all Running                   {:>8.1} s",
        all.as_secs_f64()
    );
    println!(
        "  throughput                    {:>8.1} VMs/s",
        count as f64 / all.as_secs_f64()
    );
    if let Some((rss, _)) = idle {
        println!(
            "  operator RSS idle             {:>8.1} MiB",
            rss as f64 / 1024.0
        );
    }
    println!(
        "  operator RSS peak (VmHWM)     {:>8.1} MiB",
        peak as f64 / 1024.0
    );
    if let Some((rss, _)) = steady {
        println!(
            "  operator RSS steady           {:>8.1} MiB",
            rss as f64 / 1024.0
        );
    }
    operator.kill().await?;
    Ok(())
}
