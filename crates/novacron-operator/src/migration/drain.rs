//! Node drain: when a node is cordoned (`spec.unschedulable`, which
//! `kubectl drain` sets first), every VM running there whose policy allows
//! live migration and that is `LiveMigratable` gets a VirtualMachineMigration
//! (labelled [`TRIGGER_LABEL`]`=drain`), so it moves before its pod is
//! evicted. The name is derived from the VM, the node and the running
//! instance, so each cordon creates it once; the migration controller does
//! the rest (admission, limit, refusal).

use std::collections::HashSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use operator_core::conditions::ConditionStatus;
use operator_core::events::Events;

use super::{DRAIN_DECLINED_ANNOTATION, TRIGGER_LABEL};
use crate::build::stable_hash_hex;
use crate::crd::{VirtualMachine, VirtualMachineMigration, VirtualMachineMigrationSpec, VmPhase};
use crate::observe::live_migratable;

/// What a cordon means for one VM.
#[derive(Clone, Debug)]
pub enum DrainAction {
    /// Create this migration.
    Migrate(Box<VirtualMachineMigration>),
    /// The VM cannot move (the reason, for a Warning event).
    Stuck(String),
}

/// The migration a drain of `node` creates for `vm` (deterministic name).
pub fn drain_migration(vm: &VirtualMachine, node: &str) -> VirtualMachineMigration {
    let name = vm.name_any();
    let instance = vm
        .status
        .as_ref()
        .and_then(|s| s.vm_id.clone())
        .unwrap_or_default();
    let prefix: String = name.chars().take(40).collect();
    let prefix = prefix.trim_end_matches('-');
    let hash = stable_hash_hex(&[&name, node, &instance]);
    VirtualMachineMigration {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}-drain-{}", &hash[..8])),
            namespace: vm.namespace(),
            labels: Some(
                [
                    (TRIGGER_LABEL.to_owned(), "drain".to_owned()),
                    (crate::build::VM_LABEL.to_owned(), name.clone()),
                ]
                .into(),
            ),
            annotations: Some([("novacron.io/drained-node".to_owned(), node.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: VirtualMachineMigrationSpec {
            vm_name: name,
            target_node_selector: Default::default(),
        },
        status: None,
    }
}

/// What to do for each VM on a cordoned `node` (pure).
pub fn plan_drain(vms: &[VirtualMachine], node: &str) -> Vec<(String, DrainAction)> {
    vms.iter()
        .filter(|vm| {
            let s = vm.status.as_ref();
            s.and_then(|s| s.node_name.as_deref()) == Some(node)
                && s.and_then(|s| s.phase) == Some(VmPhase::Running)
        })
        .filter(|vm| vm.spec.migration_policy.allow_live_migration)
        .map(|vm| {
            let c = live_migratable(&vm.spec);
            let action = if c.status == ConditionStatus::True {
                DrainAction::Migrate(Box::new(drain_migration(vm, node)))
            } else {
                DrainAction::Stuck(format!(
                    "node {node} is drained but the VM cannot be live-migrated ({}): {}",
                    c.reason, c.message
                ))
            };
            (
                format!("{}/{}", vm.namespace().unwrap_or_default(), vm.name_any()),
                action,
            )
        })
        .collect()
}

/// What the drain loop already did.
#[derive(Default)]
struct Seen {
    warned: HashSet<(String, String)>,
    created: HashSet<String>,
}

/// Watches Nodes until `shutdown` and creates the drain migrations.
pub async fn run(
    client: Client,
    events: Events,
    namespace: Option<String>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut stream = std::pin::pin!(
        watcher(nodes, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    // Warned VMs (one Warning per VM and node, not one per node update),
    // and migrations created: one a user deleted (cancelled) is not made
    // again at the next node update.
    let mut seen = Seen::default();
    loop {
        let node = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = stream.next() => match next {
                Some(Ok(node)) => node,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching nodes");
                    continue;
                }
                None => return,
            },
        };
        let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        if !cordoned {
            continue;
        }
        if let Err(e) = drain(
            &client,
            &events,
            namespace.as_deref(),
            &node.name_any(),
            &mut seen,
        )
        .await
        {
            tracing::warn!(node = %node.name_any(), error = %e, "draining VMs");
        }
    }
}

/// One drain pass over `node` as a freshly started operator makes it (no
/// memory of earlier passes): what the watch does on a cordoned node.
pub async fn drain_once(
    client: &Client,
    events: &Events,
    namespace: Option<&str>,
    node: &str,
) -> Result<(), kube::Error> {
    drain(client, events, namespace, node, &mut Seen::default()).await
}

async fn drain(
    client: &Client,
    events: &Events,
    namespace: Option<&str>,
    node: &str,
    seen: &mut Seen,
) -> Result<(), kube::Error> {
    let vms: Api<VirtualMachine> = operator_core::controller::scoped_api(client, namespace);
    let list = vms.list(&ListParams::default()).await?;
    for (key, action) in plan_drain(&list.items, node) {
        let vm = list
            .items
            .iter()
            .find(|v| format!("{}/{}", v.namespace().unwrap_or_default(), v.name_any()) == key)
            .expect("planned from this list");
        match action {
            DrainAction::Migrate(m) => {
                let created_key = format!("{key}/{}", m.name_any());
                if seen.created.contains(&created_key) {
                    continue;
                }
                let ns = vm.namespace().unwrap_or_default();
                if declined(client, &ns, vm, &m.name_any()).await? {
                    seen.created.insert(created_key);
                    continue;
                }
                let api: Api<VirtualMachineMigration> = Api::namespaced(client.clone(), &ns);
                match api.create(&PostParams::default(), &m).await {
                    Ok(created) => {
                        seen.created.insert(created_key);
                        let message = format!(
                            "node {node} is drained: live migration {} created",
                            created.name_any()
                        );
                        tracing::info!(vm = %key, "{message}");
                        events.normal(vm, "DrainMigration", "Drain", &message).await;
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        seen.created.insert(created_key);
                    }
                    Err(e) => return Err(e),
                }
            }
            DrainAction::Stuck(message) => {
                if seen.warned.insert((key.clone(), node.to_owned())) {
                    events
                        .warning(vm, "DrainNotMigratable", "Drain", &message)
                        .await;
                }
            }
        }
    }
    Ok(())
}

/// Whether a user deleted the drain migration `migration` of this VM
/// instance before it succeeded (see [`DRAIN_DECLINED_ANNOTATION`]).
async fn declined(
    client: &Client,
    namespace: &str,
    vm: &VirtualMachine,
    migration: &str,
) -> Result<bool, kube::Error> {
    let Some(pod) = vm.status.as_ref().and_then(|s| s.launcher_pod.as_deref()) else {
        return Ok(false);
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods.get_metadata_opt(pod).await?.is_some_and(|p| {
        p.annotations()
            .get(DRAIN_DECLINED_ANNOTATION)
            .map(String::as_str)
            == Some(migration)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(name: &str, node: &str, phase: &str, allow: bool, rwx: bool) -> VirtualMachine {
        serde_json::from_value(json!({
            "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "prod"},
            "spec": {"running": true, "migrationPolicy": {"allowLiveMigration": allow},
                "template": {"spec": {
                    "resources": {"cpu": 1, "memory": "1Gi", "disk": "10Gi"},
                    "image": {"source": "marketplace://cirros"},
                    "rootDiskAccessMode": if rwx { "ReadWriteMany" } else { "ReadWriteOnce" },
                }}},
            "status": {"phase": phase, "nodeName": node, "vmID": "pod-uid-1"},
        }))
        .unwrap()
    }

    #[test]
    fn a_cordon_migrates_the_migratable_running_vms_of_the_node() {
        let vms = [
            vm("a", "n1", "Running", true, true),
            vm("b", "n2", "Running", true, true),
            vm("c", "n1", "Stopped", true, true),
            vm("d", "n1", "Running", false, true),
            vm("e", "n1", "Running", true, false),
            vm("f", "n1", "Migrating", true, true),
        ];
        let plan = plan_drain(&vms, "n1");
        assert_eq!(plan.len(), 2, "{plan:?}");
        let DrainAction::Migrate(m) = &plan[0].1 else {
            panic!("{plan:?}")
        };
        assert_eq!(m.spec.vm_name, "a");
        assert_eq!(m.labels()[TRIGGER_LABEL], "drain");
        assert!(m.name_any().starts_with("a-drain-"), "{}", m.name_any());
        // Deterministic: the same cordon names the same migration.
        assert_eq!(drain_migration(&vms[0], "n1").name_any(), m.name_any());
        assert_ne!(drain_migration(&vms[0], "n2").name_any(), m.name_any());
        let DrainAction::Stuck(why) = &plan[1].1 else {
            panic!("{plan:?}")
        };
        assert!(why.contains("DisksNotShared"), "{why}");
    }
}
