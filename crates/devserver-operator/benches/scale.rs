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

use std::time::Duration;

use devserver_operator::crd::{DevServer, DevServerPhase};
use envtest::bench::{Scale, env_or};

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

/// The one flavor every benchmarked DevServer uses.
fn flavor() -> String {
    format!(
        "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: {FLAVOR}\nspec:\n  resources:\n    requests: {{cpu: 10m, memory: 16Mi}}\n"
    )
}

fn main() {
    Scale {
        binary: env!("CARGO_BIN_EXE_devserver-operator"),
        crd_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/devserver-operator/crds"),
        kind: "DevServers (standalone, TTL and idle timeout set)",
        state: "Running",
        count: env_or("DEVSERVERS", 500),
        idle: Duration::from_secs(env_or("IDLE_SECS", 120)),
        timeout: Duration::from_secs(env_or("READY_TIMEOUT_SECS", 1800)),
        prerequisites: flavor(),
        prepare: None,
        operator_env: Vec::new(),
        make: devserver,
        done: |d| d.status.as_ref().and_then(|s| s.phase) == Some(DevServerPhase::Running),
    }
    .run();
}
