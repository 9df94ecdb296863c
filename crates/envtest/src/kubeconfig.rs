//! The admin kubeconfig handed to tests, the demo and the components.

use std::path::Path;

use base64::Engine;

/// Writes a kubeconfig for `server` that trusts `ca_pem` and authenticates
/// with a bearer token.
pub fn write(path: &Path, server: &str, ca_pem: &str, token: &str) -> std::io::Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: envtest-admin
  user:
    token: {token}
contexts:
- name: envtest
  context:
    cluster: envtest
    user: envtest-admin
    namespace: default
current-context: envtest
"
    );
    std::fs::write(path, text)
}
