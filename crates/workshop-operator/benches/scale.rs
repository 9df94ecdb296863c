//! Scale benchmark on the local control plane (envtest + KWOK), printing figures:
//!
//! 1. `WORKSHOPS` (default 500) Workshops are created at once (one participant each, path
//!    routing through an Ingress: Secret, PVC, proxy ConfigMap, Deployment, two Services and an
//!    Ingress per workshop);
//! 2. the time until every one is `Ready` (every pod Ready, as KWOK reports it), sampled every
//!    second;
//! 3. the operator's memory: it runs as the real binary in a child process, so VmHWM (peak) and
//!    VmRSS come from its own `/proc/<pid>/status`;
//! 4. the API writes (create/update/patch/delete) and reconciles the operator makes during
//!    `IDLE_SECS` (default 120) idle seconds afterwards, from its own `/metrics` (target: 0).
//!
//! `ENVTEST_BIN_DIR=$(hack/control-plane.sh) cargo bench -p workshop-operator --bench scale`
//! (`WORKSHOPS=50 IDLE_SECS=10` for a quick run). Nothing is asserted: this prints numbers.
//!
//! Limit: envtest's Service range is a /16, so at most about 32 000 workshops (2 ClusterIPs
//! each) fit; the benchmark says so instead of waiting for Services that cannot be allocated.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use envtest::bench::{Operator, counts, env_or, memory_mib, nodes};
use envtest::{Cluster, ClusterOptions};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use workshop_operator::crd::{Workshop, WorkshopPhase};

const NAMESPACE: &str = "bench";

fn workshop(i: u64) -> Workshop {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "orchestra.io/v1",
        "kind": "Workshop",
        "metadata": {"name": format!("ws-{i:04}")},
        "spec": {
            "name": format!("Workshop {i}"),
            "duration": "8h",
            "resources": {"cpu": "100m", "memory": "256Mi", "cpuRequest": "10m", "memoryRequest": "64Mi"},
            "storage": {"size": "1Gi"},
            "ingress": {"host": format!("ws-{i:04}.example.com")}
        }
    }))
    .unwrap()
}

/// ClusterIPs the local control plane can allocate: envtest's apiserver runs with
/// `--service-cluster-ip-range=10.0.0.0/16` (crates/envtest/src/cluster.rs), 65 534 addresses,
/// one taken by the `kubernetes` Service.
const CLUSTER_IPS: u64 = 65_533;
/// Services per workshop with one participant: `<name>-service` and `<name>-user1-service`.
const SERVICES_PER_WORKSHOP: u64 = 2;

fn main() {
    let n = env_or("WORKSHOPS", 500);
    assert!(
        n * SERVICES_PER_WORKSHOP <= CLUSTER_IPS,
        "{n} workshops need {} ClusterIPs, but the local control plane's Service range \
         (10.0.0.0/16, crates/envtest/src/cluster.rs) holds {CLUSTER_IPS}: run with \
         WORKSHOPS={} or widen the range",
        n * SERVICES_PER_WORKSHOP,
        CLUSTER_IPS / SERVICES_PER_WORKSHOP
    );
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
            .join("../../deploy/workshop-operator/crds");
        envtest::manifest::install_crd_dir(&client, &crd_dir)
            .await
            .unwrap();
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    });

    // The operator binary, as deployed (release build of this package).
    let port = envtest::process::free_port().unwrap();
    let operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_workshop-operator"))
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

    // Create every Workshop at once (bounded client-side parallelism).
    let api: Api<Workshop> = Api::namespaced(client.clone(), NAMESPACE);
    let t0 = Instant::now();
    rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), &workshop(i)).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await
            .expect("every Workshop is accepted");
    });
    let created = t0.elapsed();
    println!("created {n} Workshops in {:.1}s", created.as_secs_f64());

    // Until every one is Ready.
    let timeout = Duration::from_secs(env_or("READY_TIMEOUT_SECS", 1800));
    let mut last_print = Instant::now();
    let all_ready = loop {
        let list = rt
            .block_on(api.list(&ListParams::default()))
            .expect("listing Workshops");
        let ready = list
            .items
            .iter()
            .filter(|w| w.status.as_ref().and_then(|s| s.phase) == Some(WorkshopPhase::Ready))
            .count() as u64;
        if ready == n {
            break t0.elapsed();
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            let (hwm, rss) = memory_mib(pid);
            println!(
                "  {:>5.0}s: {ready}/{n} Ready, operator RSS {rss:.1} MiB (peak {hwm:.1})",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        assert!(
            t0.elapsed() < timeout,
            "only {ready}/{n} Ready after {timeout:?}"
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
    println!("workshop-operator scale benchmark ({n} Workshops, 1 participant each)");
    println!(
        "  all Ready after               {:>8.1} s (creation took {:.1} s)",
        all_ready.as_secs_f64(),
        created.as_secs_f64()
    );
    println!("  operator RSS at start         {rss_start:>8.1} MiB");
    println!(
        "  operator RSS when all Ready   {rss_ready:>8.1} MiB (peak so far {hwm_ready:.1} MiB)"
    );
    println!("  operator RSS after idle       {rss_end:>8.1} MiB (peak {hwm_end:.1} MiB)");
    println!(
        "  API requests until all Ready  {:>8} ({} writes), reconciles {}",
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
