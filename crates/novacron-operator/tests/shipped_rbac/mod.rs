//! The operator as `deploy/novacron-operator` ships it: its namespace,
//! ServiceAccount and RBAC applied from the manifests, and a client that is
//! only that ServiceAccount, so the tests that run the operator with it
//! prove the shipped RBAC covers what the operator does.

use std::path::Path;

use kube::Client;

const NAMESPACE: &str = "novacron-system";
const SERVICE_ACCOUNT: &str = "novacron-controller-manager";
const MANAGER: &str = "novacron-tests";

/// Applies `namespace.yaml` and each of `manifests` (paths under
/// `deploy/novacron-operator`; Services and webhook configurations in them
/// are left out: tests route the webhook themselves) and returns a client
/// that authenticates as the operator's ServiceAccount only.
pub async fn operator_client(admin: &Client, manifests: &[&str]) -> Client {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/novacron-operator");
    for file in std::iter::once("namespace.yaml").chain(manifests.iter().copied()) {
        let yaml = std::fs::read_to_string(deploy.join(file))
            .unwrap_or_else(|e| panic!("reading deploy/novacron-operator/{file}: {e}"));
        for doc in envtest::manifest::parse_documents(&yaml).unwrap() {
            let kind = doc.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("");
            if kind == "Service" || kind.ends_with("WebhookConfiguration") {
                continue;
            }
            envtest::manifest::apply_object(admin, doc, NAMESPACE, MANAGER)
                .await
                .unwrap_or_else(|e| panic!("applying {file}: {e}"));
        }
    }
    envtest::kubeconfig::service_account_client(
        admin,
        envtest::shared().kubeconfig(),
        NAMESPACE,
        SERVICE_ACCOUNT,
    )
    .await
    .expect("a client for the operator's ServiceAccount")
}
