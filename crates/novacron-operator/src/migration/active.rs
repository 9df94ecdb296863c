//! Which launcher pod runs a VM, for the VM reconciler and the migration
//! controller alike. A VM has one launcher pod (`<vm>-launcher` when it
//! started, `<vm>-launcher-<hash>` after a migration) plus, while a
//! migration runs, the target pod labelled [`TARGET_LABEL`]; the source pod
//! carries [`SOURCE_ANNOTATION`] meanwhile. The target becomes the VM's pod
//! when the migration controller removes its label (after deleting the
//! source), so at every instant the VM reconciler knows which pod to follow
//! and whether to keep its hands off.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{SOURCE_ANNOTATION, TARGET_LABEL};
use crate::build::VM_LABEL;

/// A VM's launcher pods.
#[derive(Clone, Debug, Default)]
pub struct Launchers {
    /// The pod running the VM (the source while a migration runs).
    pub active: Option<Pod>,
    /// A migration target being prepared or receiving.
    pub target: Option<Pod>,
    /// The migration in flight, if any (from the target's label or the
    /// source's annotation).
    pub migration: Option<String>,
}

fn owned_by(pod: &Pod, vm_uid: &str) -> bool {
    pod.owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == vm_uid)
}

/// Sorts a VM's launcher pods (pure).
pub fn pick(pods: Vec<Pod>, vm_uid: &str) -> Launchers {
    let (targets, mut actives): (Vec<Pod>, Vec<Pod>) = pods
        .into_iter()
        .filter(|p| owned_by(p, vm_uid))
        .partition(|p| p.labels().contains_key(TARGET_LABEL));
    // Two unlabelled pods only right after a switch, while the source is
    // still terminating: the live one runs the VM.
    actives.sort_by_key(|p| {
        (
            p.metadata.deletion_timestamp.is_none(),
            p.metadata.creation_timestamp.clone(),
        )
    });
    let active = actives.pop();
    let target = targets.into_iter().next();
    let migration = target
        .as_ref()
        .and_then(|t| t.labels().get(TARGET_LABEL).cloned())
        .or_else(|| {
            active
                .as_ref()
                .and_then(|a| a.annotations().get(SOURCE_ANNOTATION).cloned())
        });
    Launchers {
        active,
        target,
        migration,
    }
}

/// Reads the launcher pods of VM `vm` (UID `vm_uid`) in `namespace`.
pub async fn find(
    client: &kube::Client,
    namespace: &str,
    vm: &str,
    vm_uid: &str,
) -> Result<Launchers, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{VM_LABEL}={vm},app.kubernetes.io/component=launcher");
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(pick(list.items, vm_uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, owner: &str, extra: serde_json::Value) -> Pod {
        let mut v = json!({"metadata": {
            "name": name,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"novacron.io/vm": "web"},
            "ownerReferences": [{"apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachine",
                "name": "web", "uid": owner, "controller": true}],
        }});
        if let (Some(m), Some(e)) = (v["metadata"].as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                if k == "labels" {
                    for (lk, lv) in val.as_object().unwrap() {
                        m["labels"][lk] = lv.clone();
                    }
                } else {
                    m.insert(k.clone(), val.clone());
                }
            }
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn one_pod_runs_the_vm() {
        let l = pick(vec![pod("web-launcher", "u", json!({}))], "u");
        assert_eq!(l.active.unwrap().name_any(), "web-launcher");
        assert!(l.target.is_none() && l.migration.is_none());
        // Someone else's pod with the same label is not the VM's.
        let l = pick(vec![pod("web-launcher", "other", json!({}))], "u");
        assert!(l.active.is_none());
    }

    #[test]
    fn a_migration_in_flight_is_seen_from_either_side() {
        let source = pod(
            "web-launcher",
            "u",
            json!({"annotations": {SOURCE_ANNOTATION: "m1"}}),
        );
        let target = pod(
            "web-launcher-1234abcd",
            "u",
            json!({"labels": {TARGET_LABEL: "m1"}, "creationTimestamp": "2026-01-02T00:00:00Z"}),
        );
        let l = pick(vec![target.clone(), source.clone()], "u");
        assert_eq!(l.active.unwrap().name_any(), "web-launcher");
        assert_eq!(l.target.unwrap().name_any(), "web-launcher-1234abcd");
        assert_eq!(l.migration.as_deref(), Some("m1"));
        let l = pick(vec![source], "u");
        assert_eq!(l.migration.as_deref(), Some("m1"));
    }

    #[test]
    fn after_the_switch_the_live_pod_wins_over_the_terminating_source() {
        let source = pod(
            "web-launcher",
            "u",
            json!({"deletionTimestamp": "2026-01-03T00:00:00Z"}),
        );
        let promoted = pod(
            "web-launcher-1234abcd",
            "u",
            json!({"creationTimestamp": "2026-01-02T00:00:00Z"}),
        );
        let l = pick(vec![promoted, source], "u");
        assert_eq!(l.active.unwrap().name_any(), "web-launcher-1234abcd");
        assert!(l.migration.is_none());
    }
}
