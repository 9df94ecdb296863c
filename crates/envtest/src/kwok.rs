//! KWOK: its CRDs and stages, fake nodes, and per-pod `Exec`/`PortForward`
//! rules that make `pods/exec` and `pods/portforward` reach local processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::manifest;

/// KWOK resources read from the cluster rather than from a config file, so
/// tests can add stages and exec/port-forward rules at run time.
pub const ENABLED_CRDS: &[&str] = &[
    "Stage",
    "Exec",
    "ClusterExec",
    "PortForward",
    "ClusterPortForward",
    "Logs",
    "ClusterLogs",
    "Attach",
    "ClusterAttach",
];

const FIELD_MANAGER: &str = "envtest";

/// A fake node: capacity, labels and taints.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub gpus: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl FakeNode {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            cpu: "16".into(),
            memory: "64Gi".into(),
            pods: "110".into(),
            gpus: 0,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn gpus(mut self, count: u32) -> Self {
        self.gpus = count;
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        });
        self
    }

    /// Two general nodes in two zones and one tainted GPU node.
    pub fn defaults() -> Vec<Self> {
        vec![
            FakeNode::new("kwok-node-0").label("topology.kubernetes.io/zone", "zone-a"),
            FakeNode::new("kwok-node-1").label("topology.kubernetes.io/zone", "zone-b"),
            FakeNode::new("kwok-gpu-0")
                .label("topology.kubernetes.io/zone", "zone-a")
                .label("nvidia.com/gpu.present", "true")
                .label("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB")
                .gpus(4)
                .taint("nvidia.com/gpu", "present", "NoSchedule"),
        ]
    }

    /// A tainted node with eight GPUs and room for the largest flavors (96
    /// CPUs, 1 TiB), for demos whose manifests ask for that much.
    pub fn large_gpu(name: &str) -> Self {
        let mut node = FakeNode::new(name)
            .label("topology.kubernetes.io/zone", "zone-b")
            .label("nvidia.com/gpu.present", "true")
            .label("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")
            .gpus(8)
            .taint("nvidia.com/gpu", "present", "NoSchedule");
        node.cpu = "96".into();
        node.memory = "1Ti".into();
        node
    }

    /// The Node object, with capacity in its status (KWOK keeps it).
    pub fn to_node(&self) -> Node {
        let mut labels: BTreeMap<String, String> = [
            ("type", "kwok"),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        labels.extend(self.labels.clone());
        let mut capacity = json!({ "cpu": self.cpu, "memory": self.memory, "pods": self.pods });
        if self.gpus > 0 {
            capacity["nvidia.com/gpu"] = json!(self.gpus.to_string());
        }
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
            },
            "spec": { "taints": self.taints },
            "status": { "allocatable": capacity, "capacity": capacity },
        }))
        .expect("a valid Node")
    }
}

/// Applies KWOK's CRDs, waits for them, then its stock stages and the default
/// StorageClass that the volume stages bind, plus `extra_classes`: more
/// StorageClasses whose claims the volume stages provision and bind too.
pub async fn install_assets(
    client: &Client,
    assets: &Path,
    extra_classes: &[String],
) -> anyhow::Result<()> {
    let mut crd_names = Vec::new();
    for file in sorted_yaml_files(&assets.join("crds"))? {
        for obj in manifest::apply_yaml(
            client,
            &std::fs::read_to_string(&file)?,
            "default",
            FIELD_MANAGER,
        )
        .await?
        {
            crd_names.push(obj.metadata.name.unwrap_or_default());
        }
    }
    manifest::wait_crds_established(client, &crd_names, Duration::from_secs(30)).await?;
    for file in sorted_yaml_files(&assets.join("stages"))? {
        let stage = volume_stage_for_classes(&std::fs::read_to_string(&file)?, extra_classes);
        manifest::apply_yaml(client, &stage, "default", FIELD_MANAGER).await?;
    }
    for class in extra_classes {
        let yaml = format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {class}\nprovisioner: {VOLUME_PROVISIONER}\nreclaimPolicy: Delete\nvolumeBindingMode: Immediate\n"
        );
        manifest::apply_yaml(client, &yaml, "default", FIELD_MANAGER).await?;
    }
    Ok(())
}

const VOLUME_PROVISIONER: &str = "kwok.x-k8s.io/volume";

/// KWOK's volume stages select claims and volumes of the class `kwok-volume`
/// only; widen the selector to `extra_classes` as well.
fn volume_stage_for_classes(stage: &str, extra_classes: &[String]) -> String {
    if extra_classes.is_empty() {
        return stage.to_string();
    }
    let classes: Vec<String> = std::iter::once("kwok-volume".to_string())
        .chain(extra_classes.iter().cloned())
        .map(|c| format!("'{c}'"))
        .collect();
    stage.replace(
        "self.spec.storageClassName == 'kwok-volume'",
        &format!("self.spec.storageClassName in [{}]", classes.join(", ")),
    )
}

#[cfg(test)]
mod stage_tests {
    use super::volume_stage_for_classes;

    #[test]
    fn extra_classes_widen_the_volume_stage_selectors() {
        let stage = "expression: >-\n  self.spec.storageClassName == 'kwok-volume'\n";
        assert_eq!(volume_stage_for_classes(stage, &[]), stage);
        assert_eq!(
            volume_stage_for_classes(stage, &["fast-ssd".into()]),
            "expression: >-\n  self.spec.storageClassName in ['kwok-volume', 'fast-ssd']\n"
        );
    }
}

fn sorted_yaml_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Creates (or updates) the fake nodes.
pub async fn register_nodes(client: &Client, nodes: &[FakeNode]) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for node in nodes {
        let obj = node.to_node();
        api.patch(
            &node.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
        // Capacity lives in status; KWOK initializes the rest around it.
        api.patch_status(
            &node.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
    }
    Ok(())
}

/// True when every node reports `Ready=True`.
pub async fn all_nodes_ready(client: &Client) -> anyhow::Result<bool> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(!nodes.items.is_empty()
        && nodes.items.iter().all(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        }))
}

fn kwok_resource(kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "kwok.x-k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "kwok.x-k8s.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn apply_kwok(
    client: &Client,
    namespace: &str,
    kind: &str,
    plural: &str,
    obj: serde_json::Value,
) -> anyhow::Result<()> {
    let resource = kwok_resource(kind, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let obj: DynamicObject = serde_json::from_value(obj)?;
    let name = obj.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await?;
    Ok(())
}

/// Makes `kubectl exec` into `pod` run the command as a local process in
/// `work_dir` with `envs`.
pub async fn exec_locally(
    client: &Client,
    namespace: &str,
    pod: &str,
    work_dir: &Path,
    envs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let envs: Vec<_> = envs
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    apply_kwok(client, namespace, "Exec", "execs", json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Exec",
        "metadata": { "name": pod, "namespace": namespace },
        "spec": { "execs": [ { "local": { "workDir": work_dir.display().to_string(), "envs": envs } } ] },
    }))
    .await
}

/// Where a port-forward to a pod port ends up.
#[derive(Debug, Clone)]
pub enum ForwardTarget {
    /// A TCP address on this machine.
    Address { address: String, port: u16 },
    /// A command whose stdin/stdout carry the stream.
    Command(Vec<String>),
}

/// Makes port-forwards to `pod_port` of `pod` reach `target`.
pub async fn forward_port(
    client: &Client,
    namespace: &str,
    pod: &str,
    pod_port: u16,
    target: ForwardTarget,
) -> anyhow::Result<()> {
    let forward = match target {
        ForwardTarget::Address { address, port } => {
            json!({ "ports": [pod_port], "target": { "address": address, "port": port } })
        }
        ForwardTarget::Command(command) => json!({ "ports": [pod_port], "command": command }),
    };
    apply_kwok(
        client,
        namespace,
        "PortForward",
        "portforwards",
        json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "PortForward",
            "metadata": { "name": pod, "namespace": namespace },
            "spec": { "forwards": [forward] },
        }),
    )
    .await
}

/// Adds KWOK `Stage`s (for example to make custom resources progress).
///
/// KWOK reads a kind's OpenAPI v3 schema when it starts the kind's stage
/// controller and gives up when it is missing, which it is for a moment
/// after a CRD is established: so this waits until the API server
/// publishes the stage's group version first.
pub async fn apply_stage(client: &Client, stage_yaml: &str) -> anyhow::Result<()> {
    for doc in manifest::parse_documents(stage_yaml)? {
        if let Some(gv) = doc.data["spec"]["resourceRef"]["apiGroup"].as_str() {
            wait_openapi_v3(client, gv, Duration::from_secs(30)).await?;
        }
    }
    manifest::apply_yaml(client, stage_yaml, "default", FIELD_MANAGER).await?;
    Ok(())
}

/// Waits until `/openapi/v3` lists `group_version` (`v1` or `group/version`).
pub async fn wait_openapi_v3(
    client: &Client,
    group_version: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let path = if group_version.contains('/') {
        format!("apis/{group_version}")
    } else {
        format!("api/{group_version}")
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let request = http::Request::get("/openapi/v3").body(Vec::new())?;
        let index: serde_json::Value = client.request(request).await?;
        if index["paths"].get(&path).is_some() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the API server does not publish the OpenAPI v3 schema of {group_version} after {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Makes `kubectl logs` of `pod` read `logs_file` (CRI log format:
/// `<RFC3339Nano> stdout F <line>`).
pub async fn serve_logs(
    client: &Client,
    namespace: &str,
    pod: &str,
    logs_file: &Path,
    follow: bool,
) -> anyhow::Result<()> {
    apply_kwok(
        client,
        namespace,
        "Logs",
        "logs",
        json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": { "name": pod, "namespace": namespace },
            "spec": { "logs": [ { "logsFile": logs_file.display().to_string(), "follow": follow } ] },
        }),
    )
    .await
}
