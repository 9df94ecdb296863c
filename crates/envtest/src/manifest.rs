//! Applying YAML manifests (one or many documents) with server-side apply, the
//! way `kubectl apply --server-side` does.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};

/// Splits a multi-document YAML string into objects, skipping empty documents.
pub fn parse_documents(yaml: &str) -> anyhow::Result<Vec<DynamicObject>> {
    use serde::Deserialize;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        objects.push(serde_json::from_value(value)?);
    }
    Ok(objects)
}

/// Server-side applies every document of `yaml`; namespaced objects without a
/// namespace go to `default_namespace`. Returns the applied objects.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    default_namespace: &str,
    field_manager: &str,
) -> anyhow::Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for obj in parse_documents(yaml)? {
        applied.push(apply_object(client, obj, default_namespace, field_manager).await?);
    }
    Ok(applied)
}

/// Server-side applies one object, resolving its kind through discovery.
pub async fn apply_object(
    client: &Client,
    mut obj: DynamicObject,
    default_namespace: &str,
    field_manager: &str,
) -> anyhow::Result<DynamicObject> {
    let types = obj
        .types
        .clone()
        .ok_or_else(|| anyhow::anyhow!("object {} has no apiVersion/kind", obj.name_any()))?;
    let gvk = kube::api::GroupVersionKind::try_from(&types)?;
    let (resource, caps) = discover(client, &gvk).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => {
            let ns = obj
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string());
            obj.metadata.namespace = Some(ns.clone());
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = obj.name_any();
    let params = PatchParams::apply(field_manager).force();
    api.patch(&name, &params, &Patch::Apply(&obj))
        .await
        .map_err(|e| anyhow::anyhow!("applying {} {name}: {e}", gvk.kind))
}

/// Discovery of a kind, retried briefly: right after a CRD is established
/// the API server can take a moment to list it.
async fn discover(
    client: &Client,
    gvk: &kube::api::GroupVersionKind,
) -> anyhow::Result<(kube::api::ApiResource, kube::discovery::ApiCapabilities)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match discovery::pinned_kind(client, gvk).await {
            Ok(found) => return Ok(found),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, kind = %gvk.kind, "kind not discoverable yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => anyhow::bail!(
                "discovering {}/{} {}: {e}",
                gvk.group,
                gvk.version,
                gvk.kind
            ),
        }
    }
}

/// Waits until each named CRD reports `Established=True` and its kind is
/// listed by discovery.
pub async fn wait_crds_established(
    client: &Client,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    for name in names {
        loop {
            let established = api
                .get_opt(name)
                .await?
                .and_then(|crd| crd.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                let crd = api.get(name).await?;
                let spec = &crd.spec;
                let served = spec.versions.iter().filter(|v| v.served);
                for v in served {
                    let gvk =
                        kube::api::GroupVersionKind::gvk(&spec.group, &v.name, &spec.names.kind);
                    discover(client, &gvk).await?;
                }
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("CRD {name} not established after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Installs the CRDs of a directory, as `kubectl apply --server-side -f dir`
/// would: server-side applies every `.yaml` file of `dir` in sorted order
/// (field manager `envtest`), then waits up to 60 s until all of them are
/// established. Returns the names of the applied objects, in that order.
pub async fn install_crd_dir(client: &Client, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    let mut names = Vec::new();
    for path in files {
        let yaml = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let applied = apply_yaml(client, &yaml, "default", "envtest")
            .await
            .with_context(|| format!("installing {}", path.display()))?;
        names.extend(applied.iter().map(|o| o.name_any()));
    }
    wait_crds_established(client, &names, Duration::from_secs(60)).await?;
    Ok(names)
}
