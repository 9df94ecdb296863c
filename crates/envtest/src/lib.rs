//! A real local Kubernetes control plane for tests and the demo, in the
//! spirit of controller-runtime's envtest, plus KWOK for nodes and pods.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let ns = envtest::test_namespace("my-test").await?;
//! // ns.client talks to the shared cluster; ns.name is fresh for this test.
//! # Ok(()) }
//! ```
//!
//! One cluster is shared by every test of a test binary; it is started on
//! first use and stopped when the binary exits (also after failed tests).
//! `USE_EXISTING_CLUSTER=true` runs the same tests against `KUBECONFIG`.

pub mod bench;
pub mod binaries;
pub mod cluster;
pub mod kubeconfig;
pub mod kwok;
pub mod manifest;
pub mod namespace;
pub mod pki;
pub mod process;
pub mod wait;

use std::sync::OnceLock;

pub use cluster::{Cluster, ClusterInfo, ClusterOptions, StartTimings, client_from_kubeconfig};
pub use kwok::FakeNode;
pub use namespace::TestNamespace;
pub use wait::eventually;

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster shared by this test binary, started on first use. Panics with
/// the reason (for example which binaries are missing and how to build them)
/// when it cannot start.
pub fn shared() -> &'static Cluster {
    let cluster = SHARED.get_or_init(|| {
        let started = Cluster::start(ClusterOptions::default()).map_err(|e| format!("{e:#}"));
        if started.is_ok() {
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe {
                libc::atexit(stop_shared);
            }
        }
        started
    });
    match cluster {
        Ok(c) => c,
        Err(e) => panic!("envtest: could not start the local cluster: {e}"),
    }
}

extern "C" fn stop_shared() {
    if let Some(Ok(cluster)) = SHARED.get() {
        cluster.stop();
    }
}

/// A fresh namespace in the shared cluster.
pub async fn test_namespace(prefix: &str) -> anyhow::Result<TestNamespace> {
    let cluster = shared();
    TestNamespace::create(cluster.kubeconfig().to_path_buf(), prefix).await
}

/// A client for the shared cluster, bound to the calling runtime.
pub async fn client() -> anyhow::Result<kube::Client> {
    shared().client().await
}
