//! Scale benchmark on the local control plane (envtest + KWOK), printing figures:
//!
//! 1. `DEVSERVERS` (default 500) DevServers are created at once (one flavor; each gets a
//!    host-key Secret, an SSH ConfigMap, a StatefulSet and an SSH Service; KWOK runs the pods);
//! 2. the time until every one is `Running` (its pod Ready, as KWOK reports it), sampled every
//!    second;
//! 3. the operator's memory: it runs as the real binary in a child process, so VmHWM (peak) and
//!    VmRSS come from its own `/proc/<pid>/status`;
//! 4. the API writes (create/update/patch/delete) and reconciles the operator makes during
//!    `IDLE_SECS` (default 120) idle seconds afterwards, from its own `/metrics` (target: 0).
//!
//! `ENVTEST_BIN_DIR=$(hack/control-plane.sh) cargo bench -p devserver-operator --bench scale`
//! (`DEVSERVERS=50 IDLE_SECS=10` for a quick run). Nothing is asserted: this prints numbers.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devserver_operator::crd::{DevServer, DevServerFlavor, DevServerPhase};
use envtest::{Cluster, ClusterOptions, FakeNode};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};

const NAMESPACE: &str = "bench";
const FLAVOR: &str = "bench-tiny";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default nodes plus enough pod capacity for every session.
fn nodes(servers: u64) -> Vec<FakeNode> {
    let mut nodes = FakeNode::defaults();
    let extra = servers.div_ceil(200).max(1);
    for i in 0..extra {
        let mut n = FakeNode::new(&format!("kwok-bench-{i}"));
        n.pods = "250".into();
        n.cpu = "1000".into();
        n.memory = "4Ti".into();
        nodes.push(n);
    }
    nodes
}

/// `(VmHWM, VmRSS)` of `pid` in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// `GET /metrics` of the operator (blocking; the endpoint answers at once).
fn scrape(port: u16) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    out
}

/// Sum of the samples of `metric` whose labels contain any of `needles` (all when empty).
fn sum(text: &str, metric: &str, needles: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(metric))
        .filter(|l| needles.is_empty() || needles.iter().any(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

const WRITE_VERBS: [&str; 4] = [
    "verb=\"create\"",
    "verb=\"update\"",
    "verb=\"patch\"",
    "verb=\"delete\"",
];

struct Counts {
    writes: u64,
    requests: u64,
    reconciles: u64,
}

fn counts(port: u16) -> Counts {
    let text = scrape(port);
    Counts {
        writes: sum(&text, "operator_api_requests_total", &WRITE_VERBS),
        requests: sum(&text, "operator_api_requests_total", &[]),
        reconciles: sum(&text, "operator_reconcile_total", &[]),
    }
}

/// Stops the operator on drop (also when the benchmark panics).
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        // SIGTERM first: the operator shuts down cleanly. SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn devserver(i: u64) -> DevServer {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "devserver.io/v1",
        "kind": "DevServer",
        "metadata": {"name": format!("dev-{i:04}")},
        "spec": {
            "owner": "bench",
            "flavor": FLAVOR,
            "image": "ubuntu:24.04",
            "ssh": {"publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkKeyOnly bench@example"},
            "lifecycle": {"timeToLive": "7d", "idleTimeout": "1d"}
        }
    }))
    .unwrap()
}

fn flavor() -> DevServerFlavor {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "devserver.io/v1",
        "kind": "DevServerFlavor",
        "metadata": {"name": FLAVOR},
        "spec": {"resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
    }))
    .unwrap()
}

fn main() {
    let n = env_or("DEVSERVERS", 500);
    let idle = Duration::from_secs(env_or("IDLE_SECS", 120));
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions {
        nodes: nodes(n),
        start_timeout: Duration::from_secs(300),
        ..ClusterOptions::default()
    })
    .expect("the local cluster starts (ENVTEST_BIN_DIR=$(hack/control-plane.sh))");
    println!(
        "cluster up in {:.1}s ({} KWOK nodes)",
        started.elapsed().as_secs_f64(),
        nodes(n).len()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(cluster.client()).unwrap();
    rt.block_on(async {
        let crd_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/devserver-operator/crds");
        envtest::manifest::install_crd_dir(&client, &crd_dir)
            .await
            .unwrap();
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        Api::<DevServerFlavor>::all(client.clone())
            .create(&PostParams::default(), &flavor())
            .await
            .unwrap();
    });

    // The operator binary, as deployed (release build of this package).
    let port = envtest::process::free_port().unwrap();
    let operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_devserver-operator"))
            .arg("run")
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the operator binary"),
    );
    let pid = operator.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the operator did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (_, rss_start) = memory_mib(pid);

    // Create every DevServer at once (bounded client-side parallelism).
    let api: Api<DevServer> = Api::namespaced(client.clone(), NAMESPACE);
    let t0 = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), &devserver(i)).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await
            .expect("every DevServer is accepted");
    });
    let created = t0.elapsed();
    println!("created {n} DevServers in {:.1}s", created.as_secs_f64());

    // Until every one is Running.
    let timeout = Duration::from_secs(env_or("READY_TIMEOUT_SECS", 1800));
    let mut last_print = Instant::now();
    let all_ready = loop {
        let list = rt
            .block_on(api.list(&ListParams::default()))
            .expect("listing DevServers");
        let ready = list
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DevServerPhase::Running))
            .count() as u64;
        if ready == n {
            break t0.elapsed();
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            let (hwm, rss) = memory_mib(pid);
            println!(
                "  {:>5.0}s: {ready}/{n} Running, operator RSS {rss:.1} MiB (peak {hwm:.1})",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        assert!(
            t0.elapsed() < timeout,
            "only {ready}/{n} Running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let (hwm_ready, rss_ready) = memory_mib(pid);
    let at_ready = counts(port);

    // Idle: nothing changes, so the operator should not write anything.
    std::thread::sleep(Duration::from_secs(5));
    let before = counts(port);
    std::thread::sleep(idle);
    let after = counts(port);
    let (hwm_end, rss_end) = memory_mib(pid);

    println!();
    println!(
        "devserver-operator scale benchmark ({n} DevServers, standalone, TTL and idle timeout set)"
    );
    println!(
        "  all Running after               {:>8.1} s (creation took {:.1} s)",
        all_ready.as_secs_f64(),
        created.as_secs_f64()
    );
    println!("  operator RSS at start         {rss_start:>8.1} MiB");
    println!(
        "  operator RSS when all Running  {rss_ready:>8.1} MiB (peak so far {hwm_ready:.1} MiB)"
    );
    println!("  operator RSS after idle       {rss_end:>8.1} MiB (peak {hwm_end:.1} MiB)");
    println!(
        "  API requests until all Running {:>8} ({} writes), reconciles {}",
        at_ready.requests, at_ready.writes, at_ready.reconciles
    );
    println!(
        "  during {:>3} s idle: API writes {:>3}, API requests {:>3}, reconciles {:>3}",
        idle.as_secs(),
        after.writes - before.writes,
        after.requests - before.requests,
        after.reconciles - before.reconciles
    );
    drop(operator);
    drop(cluster);
}
