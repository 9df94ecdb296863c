//! Talking to the cluster: the client from `--kubeconfig`/`--context` or the
//! usual sources, the namespace to work in, and API errors turned into
//! messages a user can act on.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where to find the cluster (the global options).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// The client configuration for `target`: `--kubeconfig` (else
/// `KUBECONFIG` / `~/.kube/config`, else in-cluster), with `--context`.
pub async fn config(target: &Target) -> anyhow::Result<kube::Config> {
    let opts = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let hint = "(set KUBECONFIG or pass --kubeconfig with a kubeconfig file, or run devctl inside a cluster)";
    let result = match (&target.kubeconfig, &target.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| anyhow!("reading the kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| anyhow!("{e}"))
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| anyhow!("{e}")),
        (None, None) => kube::Config::infer().await.map_err(|e| anyhow!("{e}")),
    };
    result.map_err(|e| anyhow!("cannot find a cluster to talk to: {e:#} {hint}"))
}

/// A client for `target`.
pub async fn client(target: &Target) -> anyhow::Result<Client> {
    Client::try_from(config(target).await?).context("creating the Kubernetes client")
}

/// Explains a failed API call; `action` says what was done (e.g. `listing
/// DevServers in namespace dev-alice`), `crd` is the CRD that serves the
/// kind (empty for built-in kinds).
pub fn explain(e: kube::Error, action: &str, crd: &str) -> anyhow::Error {
    match &e {
        // A missing resource type, not a missing object.
        kube::Error::Api(s) if s.code == 404 && !crd.is_empty() && missing_type(&s.message) => {
            anyhow!(
                "{action}: the DevServer API ({crd}) is not installed in this cluster; install the CRDs with `kubectl apply -f deploy/devserver-operator/crds`"
            )
        }
        kube::Error::Api(s) if s.code == 404 => anyhow!("{action}: not found ({})", s.message),
        kube::Error::Api(s) if s.code == 401 => anyhow!(
            "{action}: not authenticated ({}); check your kubeconfig credentials (a token from `devctl admin user kubeconfig` may have expired: ask for a new one)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 403 => anyhow!(
            "{action}: permission denied: {} (ask an administrator, or check -n/--namespace)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            anyhow!("{action}: rejected by the API server: {}", s.message)
        }
        _ => anyhow!("{action}: {e}"),
    }
}

/// Whether a 404's message is about a whole resource type (the API server
/// does not serve it) rather than one object.
fn missing_type(message: &str) -> bool {
    message.contains("could not find the requested resource") || message.contains("page not found")
}

/// Whether `e` is a 404 for an object (not for a whole resource type).
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && !missing_type(&s.message))
}
