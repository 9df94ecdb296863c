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

use std::time::Duration;

use envtest::bench::{Scale, env_or};
use workshop_operator::crd::{Workshop, WorkshopPhase};

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
    Scale {
        binary: env!("CARGO_BIN_EXE_workshop-operator"),
        crd_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/workshop-operator/crds"),
        kind: "Workshops (1 participant each)",
        state: "Ready",
        count: n,
        idle: Duration::from_secs(env_or("IDLE_SECS", 120)),
        timeout: Duration::from_secs(env_or("READY_TIMEOUT_SECS", 1800)),
        prerequisites: String::new(),
        prepare: None,
        operator_env: Vec::new(),
        make: workshop,
        done: |w| w.status.as_ref().and_then(|s| s.phase) == Some(WorkshopPhase::Ready),
    }
    .run();
}
