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

/// `admin_kubeconfig` (YAML) with every user's credentials replaced by
/// `token` and the context namespace set to `namespace`: the same cluster,
/// as someone else.
pub fn with_token(admin_kubeconfig: &str, token: &str, namespace: &str) -> anyhow::Result<String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(admin_kubeconfig)?;
    let users = doc["users"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow::anyhow!("the kubeconfig has no users"))?;
    for user in users {
        user["user"] = serde_yaml::to_value(std::collections::BTreeMap::from([("token", token)]))?;
    }
    if let Some(contexts) = doc["contexts"].as_sequence_mut() {
        for context in contexts {
            context["context"]["namespace"] = namespace.into();
        }
    }
    Ok(serde_yaml::to_string(&doc)?)
}

/// A fresh token (one hour) of ServiceAccount `namespace/name`, through the
/// TokenRequest API.
pub async fn service_account_token(
    admin: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = sas
        .create_token_request(name, &Default::default(), &request)
        .await
        .map_err(|e| anyhow::anyhow!("a token for ServiceAccount {namespace}/{name}: {e}"))?;
    answer
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("the TokenRequest for {namespace}/{name} has no token"))
}

/// A kubeconfig (YAML) for the cluster of `admin_kubeconfig` that is only
/// ServiceAccount `namespace/name` (so tests prove the RBAC they ship).
pub async fn service_account_kubeconfig(
    admin: &kube::Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    let token = service_account_token(admin, namespace, name).await?;
    with_token(
        &std::fs::read_to_string(admin_kubeconfig)?,
        &token,
        namespace,
    )
}

/// A client that is only ServiceAccount `namespace/name`.
pub async fn service_account_client(
    admin: &kube::Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    name: &str,
) -> anyhow::Result<kube::Client> {
    let yaml = service_account_kubeconfig(admin, admin_kubeconfig, namespace, name).await?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml)?,
        &Default::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}
