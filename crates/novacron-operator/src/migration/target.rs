//! The target of a migration: a launcher pod with the source pod's spec
//! (same image, resources, disks, networks, placement rules), another name,
//! placed on another node than the source (and on one matching the
//! migration's `targetNodeSelector`), exposing the migration port, with a
//! launch ConfigMap of its own whose config has `incoming` set so QEMU waits
//! for the source instead of booting. Pure builders.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ContainerPort, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use novacron_launcher::config::{
    IncomingConfig, LaunchConfig, MIGRATION_PORT, MIGRATION_PORT_NAME,
};

use super::{SOURCE_ANNOTATION, TARGET_LABEL};
use crate::build::launch::LAUNCH_KEY;
use crate::reconcile::SHUTDOWN_ANNOTATION;

/// The node label the scheduler matches host names with.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// What the target is built from.
pub struct TargetInput<'a> {
    /// The launcher pod running the VM now (as read from the API).
    pub source: &'a Pod,
    /// Its node.
    pub source_node: &'a str,
    /// The source's launch config (from its ConfigMap).
    pub source_config: &'a LaunchConfig,
    /// The migration's name (label value on the target).
    pub migration: &'a str,
    /// Target pod and ConfigMap names.
    pub pod_name: String,
    pub config_map_name: String,
    pub target_node_selector: &'a BTreeMap<String, String>,
    pub incoming: IncomingConfig,
}

/// The launch config of the target: the source's, receiving.
pub fn target_config(source: &LaunchConfig, incoming: IncomingConfig) -> LaunchConfig {
    LaunchConfig {
        incoming: Some(incoming),
        ..source.clone()
    }
}

fn meta(input: &TargetInput<'_>, name: &str, source: &ObjectMeta) -> ObjectMeta {
    let mut labels = source.labels.clone().unwrap_or_default();
    labels.insert(TARGET_LABEL.into(), input.migration.into());
    ObjectMeta {
        name: Some(name.into()),
        namespace: source.namespace.clone(),
        labels: Some(labels),
        // The VM owns the target like the source, so it goes with the VM
        // and wakes the VM's reconciler.
        owner_references: Some(controller_refs(source)),
        ..ObjectMeta::default()
    }
}

fn controller_refs(source: &ObjectMeta) -> Vec<OwnerReference> {
    source
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.controller == Some(true))
        .cloned()
        .collect()
}

/// The target's launch ConfigMap.
pub fn target_config_map(input: &TargetInput<'_>) -> ConfigMap {
    let config = target_config(input.source_config, input.incoming.clone());
    let json = serde_json::to_string_pretty(&config).expect("a LaunchConfig serializes");
    ConfigMap {
        metadata: meta(input, &input.config_map_name, &input.source.metadata),
        data: Some(BTreeMap::from([(LAUNCH_KEY.to_owned(), json)])),
        ..ConfigMap::default()
    }
}

/// `NotIn [node]` for the host name, added to every required node
/// selector term (terms are ORed, so each must exclude the source).
fn avoid_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let avoid = NodeSelectorRequirement {
        key: HOSTNAME_LABEL.into(),
        operator: "NotIn".into(),
        values: Some(vec![node.into()]),
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_expressions
            .get_or_insert_with(Vec::new)
            .push(avoid.clone());
    }
    affinity
}

/// The target launcher pod.
pub fn target_pod(input: &TargetInput<'_>) -> Pod {
    let source = input.source;
    let mut metadata = meta(input, &input.pod_name, &source.metadata);
    // The source's annotations (spec hash: the target runs the same VM
    // spec; Multus networks) without the source's own markers.
    let mut annotations = source.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(SOURCE_ANNOTATION);
    annotations.remove(SHUTDOWN_ANNOTATION);
    metadata.annotations = Some(annotations);

    let mut spec = source.spec.clone().unwrap_or_default();
    // Set by the scheduler and the priority admission for the source.
    spec.node_name = None;
    spec.priority = None;
    for v in spec.volumes.iter_mut().flatten() {
        if v.name == "launch"
            && let Some(cm) = &mut v.config_map
        {
            cm.name = input.config_map_name.clone();
        }
    }
    if let Some(c) = spec.containers.first_mut() {
        let ports = c.ports.get_or_insert_with(Vec::new);
        if !ports
            .iter()
            .any(|p| p.name.as_deref() == Some(MIGRATION_PORT_NAME))
        {
            ports.push(ContainerPort {
                name: Some(MIGRATION_PORT_NAME.into()),
                container_port: i32::from(MIGRATION_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            });
        }
    }
    if !input.target_node_selector.is_empty() {
        spec.node_selector
            .get_or_insert_with(BTreeMap::new)
            .extend(input.target_node_selector.clone());
    }
    spec.affinity = Some(avoid_node(spec.affinity.take(), input.source_node));
    Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-launcher", "namespace": "prod", "uid": "pod-uid",
                "resourceVersion": "42",
                "labels": {"novacron.io/vm": "web", "operator-core/owner-uid": "vm-uid"},
                "annotations": {
                    "novacron.io/spec-hash": "abc",
                    SOURCE_ANNOTATION: "m1",
                    SHUTDOWN_ANNOTATION: "2026-01-01T00:00:00Z",
                },
                "ownerReferences": [{"apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachine",
                    "name": "web", "uid": "vm-uid", "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {
                "nodeName": "node-a",
                "priority": 0,
                "nodeSelector": {"disk": "ssd"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
                    ]}}},
                "containers": [{"name": "compute", "image": "img:1",
                    "ports": [{"name": "control", "containerPort": 8100, "protocol": "TCP"}]}],
                "volumes": [
                    {"name": "launch", "configMap": {"name": "web-launch"}},
                    {"name": "rootdisk", "persistentVolumeClaim": {"claimName": "web-rootdisk"}}
                ],
            },
            "status": {"phase": "Running", "podIP": "10.0.0.5"},
        }))
        .unwrap()
    }

    fn input<'a>(
        pod: &'a Pod,
        config: &'a LaunchConfig,
        sel: &'a BTreeMap<String, String>,
    ) -> TargetInput<'a> {
        TargetInput {
            source: pod,
            source_node: "node-a",
            source_config: config,
            migration: "m1",
            pod_name: "web-launcher-0123abcd".into(),
            config_map_name: "web-launch-0123abcd".into(),
            target_node_selector: sel,
            incoming: IncomingConfig {
                tls: true,
                ..IncomingConfig::default()
            },
        }
    }

    #[test]
    fn the_target_pod_is_the_source_elsewhere() {
        let pod = source();
        let config = LaunchConfig::new("web", "prod", "vm-uid", 1, 1 << 30);
        let sel = BTreeMap::from([("pool".to_owned(), "b".to_owned())]);
        let t = target_pod(&input(&pod, &config, &sel));
        let v = serde_json::to_value(&t).unwrap();
        let m = &v["metadata"];
        assert_eq!(m["name"], "web-launcher-0123abcd");
        assert_eq!(m["namespace"], "prod");
        assert!(m.get("uid").is_none() && m.get("resourceVersion").is_none());
        assert_eq!(m["labels"][TARGET_LABEL], "m1");
        assert_eq!(m["labels"]["operator-core/owner-uid"], "vm-uid");
        assert_eq!(m["ownerReferences"][0]["uid"], "vm-uid");
        assert_eq!(m["annotations"], json!({"novacron.io/spec-hash": "abc"}));
        let s = &v["spec"];
        assert!(s.get("nodeName").is_none() && s.get("priority").is_none());
        assert!(v.get("status").is_none());
        assert_eq!(s["nodeSelector"], json!({"disk": "ssd", "pool": "b"}));
        let terms = &s["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        for term in terms.as_array().unwrap() {
            assert_eq!(
                term["matchExpressions"][1],
                json!({"key": HOSTNAME_LABEL, "operator": "NotIn", "values": ["node-a"]})
            );
        }
        assert_eq!(s["volumes"][0]["configMap"]["name"], "web-launch-0123abcd");
        assert_eq!(
            s["containers"][0]["ports"][1],
            json!({"name": "migration", "containerPort": 8101, "protocol": "TCP"})
        );
    }

    #[test]
    fn a_pod_without_affinity_gets_one_term_avoiding_the_source() {
        let mut pod = source();
        pod.spec.as_mut().unwrap().affinity = None;
        let config = LaunchConfig::new("web", "prod", "vm-uid", 1, 1 << 30);
        let none = BTreeMap::new();
        let t = target_pod(&input(&pod, &config, &none));
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(
            v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": ["node-a"]}]}]})
        );
        assert_eq!(v["spec"]["nodeSelector"], json!({"disk": "ssd"}));
    }

    #[test]
    fn the_target_config_receives() {
        let pod = source();
        let config = LaunchConfig::new("web", "prod", "vm-uid", 1, 1 << 30);
        let none = BTreeMap::new();
        let cm = target_config_map(&input(&pod, &config, &none));
        assert_eq!(cm.metadata.name.as_deref(), Some("web-launch-0123abcd"));
        let parsed: LaunchConfig = serde_json::from_str(&cm.data.unwrap()[LAUNCH_KEY]).unwrap();
        let inc = parsed.incoming.clone().unwrap();
        assert!(inc.tls);
        assert_eq!(inc.listen, "0.0.0.0:8101");
        assert_eq!(
            LaunchConfig {
                incoming: None,
                ..parsed
            },
            config
        );
    }
}
