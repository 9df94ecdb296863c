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

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devserver_operator::crd::{DevServer, DevServerFlavor, DevServerPhase};
use envtest::bench::{Operator, counts, env_or, memory_mib, nodes};
use envtest::{Cluster, ClusterOptions};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};

const NAMESPACE: &str = "bench";
const FLAVOR: &str = "bench-tiny";

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
