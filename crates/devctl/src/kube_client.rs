//! Talking to the cluster: the client from the usual sources, and API
//! errors turned into messages a user can act on.

use anyhow::{Context, anyhow};
use kube::Client;

/// A client from `KUBECONFIG` / `~/.kube/config`, or the in-cluster
/// configuration.
pub async fn client() -> anyhow::Result<Client> {
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow!("cannot find a cluster to talk to: {e} (set KUBECONFIG to a kubeconfig file, or run devctl inside a cluster)")
    })?;
    Client::try_from(config).context("creating the Kubernetes client")
}

/// Explains a failed API call about `what` (e.g. `DevServers in namespace
/// dev-alice`); `crd` is the CRD that serves the kind.
pub fn explain(e: kube::Error, what: &str, crd: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(s) if s.code == 404 => anyhow!(
            "listing {what}: the DevServer API ({crd}) is not installed in this cluster; install the CRDs with `kubectl apply -f deploy/devserver-operator/crds`"
        ),
        kube::Error::Api(s) if s.code == 401 => {
            anyhow!(
                "listing {what}: not authenticated ({}); check your kubeconfig credentials",
                s.message
            )
        }
        kube::Error::Api(s) if s.code == 403 => {
            anyhow!("listing {what}: permission denied: {}", s.message)
        }
        _ => anyhow!("listing {what}: {e}"),
    }
}
