//! StatefulSet with `volumeClaimTemplates` and an explicit PVC retention policy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pvc::{AccessMode, pvc_spec};
use super::{match_labels, merged, non_empty, object_meta, template_with_labels};

/// What happens to a StatefulSet's PVCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PvcRetention {
    /// Keep the PVCs (and the data).
    Retain,
    /// Delete the PVCs.
    Delete,
}

impl PvcRetention {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            PvcRetention::Retain => "Retain",
            PvcRetention::Delete => "Delete",
        }
    }
}

/// `persistentVolumeClaimRetentionPolicy`. There is deliberately no default: losing or leaking
/// user data is a decision each operator makes explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PvcRetentionPolicy {
    /// When the StatefulSet is deleted.
    pub when_deleted: PvcRetention,
    /// When the StatefulSet is scaled down (PVCs of removed ordinals).
    pub when_scaled: PvcRetention,
}

impl PvcRetentionPolicy {
    /// Keep PVCs in both cases.
    pub const RETAIN: PvcRetentionPolicy = PvcRetentionPolicy {
        when_deleted: PvcRetention::Retain,
        when_scaled: PvcRetention::Retain,
    };
    /// Delete PVCs in both cases.
    pub const DELETE: PvcRetentionPolicy = PvcRetentionPolicy {
        when_deleted: PvcRetention::Delete,
        when_scaled: PvcRetention::Delete,
    };
}

/// `podManagementPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PodManagementPolicy {
    /// Pods are created and removed one at a time, in order (the Kubernetes default).
    #[default]
    OrderedReady,
    /// Pods are created and removed in parallel.
    Parallel,
}

impl PodManagementPolicy {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            PodManagementPolicy::OrderedReady => "OrderedReady",
            PodManagementPolicy::Parallel => "Parallel",
        }
    }
}

/// One entry of `volumeClaimTemplates`.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeClaimTemplate {
    /// Template name; the PVCs are named `<name>-<statefulset>-<ordinal>` and pods mount it by
    /// this name.
    pub name: String,
    /// Labels for the created PVCs.
    pub labels: BTreeMap<String, String>,
    /// Requested storage.
    pub size: Quantity,
    /// StorageClass (`None`: cluster default; `Some("")`: none).
    pub storage_class: Option<String>,
    /// Access modes; empty means `[ReadWriteOnce]`.
    pub access_modes: Vec<AccessMode>,
}

impl VolumeClaimTemplate {
    /// A `ReadWriteOnce` template of `size` in the default StorageClass.
    pub fn new(name: impl Into<String>, size: Quantity) -> Self {
        VolumeClaimTemplate {
            name: name.into(),
            labels: BTreeMap::new(),
            size,
            storage_class: None,
            access_modes: vec![AccessMode::ReadWriteOnce],
        }
    }
}

/// Parameters for [`stateful_set`].
#[derive(Clone, Debug, PartialEq)]
pub struct StatefulSetParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels of the StatefulSet (the selector labels are added).
    pub labels: BTreeMap<String, String>,
    /// Selector labels (immutable after creation); added to the pod template.
    pub selector: BTreeMap<String, String>,
    /// Replicas.
    pub replicas: i32,
    /// Governing (usually headless) Service name.
    pub service_name: Option<String>,
    /// Pod template; the StatefulSet's labels and selector are merged into its labels.
    pub template: PodTemplateSpec,
    /// PVC templates (immutable after creation except for size in recent Kubernetes versions).
    pub volume_claim_templates: Vec<VolumeClaimTemplate>,
    /// What happens to the PVCs on delete and scale-down. Required.
    pub pvc_retention: PvcRetentionPolicy,
    /// Pod management policy.
    pub pod_management_policy: PodManagementPolicy,
}

impl StatefulSetParams {
    /// One replica, ordered pod management, no claim templates, no governing Service.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        selector: BTreeMap<String, String>,
        template: PodTemplateSpec,
        pvc_retention: PvcRetentionPolicy,
    ) -> Self {
        StatefulSetParams {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            selector,
            replicas: 1,
            service_name: None,
            template,
            volume_claim_templates: Vec::new(),
            pvc_retention,
            pod_management_policy: PodManagementPolicy::default(),
        }
    }
}

/// The StatefulSet described by `p`.
pub fn stateful_set(p: &StatefulSetParams) -> StatefulSet {
    let labels = merged(&p.labels, &p.selector);
    let claims: Vec<PersistentVolumeClaim> = p
        .volume_claim_templates
        .iter()
        .map(|t| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(t.name.clone()),
                labels: non_empty(t.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(pvc_spec(
                &t.size,
                t.storage_class.as_deref(),
                &t.access_modes,
            )),
            status: None,
        })
        .collect();
    StatefulSet {
        metadata: object_meta(&p.name, &p.namespace, &labels),
        spec: Some(StatefulSetSpec {
            replicas: Some(p.replicas),
            selector: match_labels(&p.selector),
            service_name: p.service_name.clone(),
            template: template_with_labels(&p.template, &labels),
            volume_claim_templates: (!claims.is_empty()).then_some(claims),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(p.pvc_retention.when_deleted.as_str().to_owned()),
                    when_scaled: Some(p.pvc_retention.when_scaled.as_str().to_owned()),
                },
            ),
            pod_management_policy: Some(p.pod_management_policy.as_str().to_owned()),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::builders::test_util::{labels, pod_template};

    #[test]
    fn builds_a_whole_stateful_set() {
        let selector = labels(&[("app.kubernetes.io/instance", "alice")]);
        let p = StatefulSetParams {
            labels: labels(&[("app.kubernetes.io/managed-by", "devserver-operator")]),
            service_name: Some("alice-headless".into()),
            volume_claim_templates: vec![VolumeClaimTemplate {
                labels: selector.clone(),
                storage_class: Some("standard".into()),
                ..VolumeClaimTemplate::new("home", Quantity("20Gi".into()))
            }],
            pod_management_policy: PodManagementPolicy::Parallel,
            ..StatefulSetParams::new(
                "alice",
                "dev",
                selector,
                pod_template(),
                PvcRetentionPolicy {
                    when_deleted: PvcRetention::Retain,
                    when_scaled: PvcRetention::Delete,
                },
            )
        };
        assert_eq!(
            serde_json::to_value(stateful_set(&p)).unwrap(),
            json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {
                    "name": "alice",
                    "namespace": "dev",
                    "labels": {
                        "app.kubernetes.io/instance": "alice",
                        "app.kubernetes.io/managed-by": "devserver-operator"
                    }
                },
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app.kubernetes.io/instance": "alice"}},
                    "serviceName": "alice-headless",
                    "podManagementPolicy": "Parallel",
                    "persistentVolumeClaimRetentionPolicy": {
                        "whenDeleted": "Retain",
                        "whenScaled": "Delete"
                    },
                    "template": {
                        "metadata": {"labels": {
                            "app.kubernetes.io/instance": "alice",
                            "app.kubernetes.io/managed-by": "devserver-operator",
                            "extra": "yes"
                        }},
                        "spec": {"containers": [{"name": "main", "image": "example.com/app:1"}]}
                    },
                    "volumeClaimTemplates": [{
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {
                            "name": "home",
                            "labels": {"app.kubernetes.io/instance": "alice"}
                        },
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "20Gi"}},
                            "storageClassName": "standard"
                        }
                    }]
                }
            })
        );
    }

    #[test]
    fn retention_policy_is_always_explicit() {
        let selector = labels(&[("app", "x")]);
        for (policy, deleted, scaled) in [
            (PvcRetentionPolicy::RETAIN, "Retain", "Retain"),
            (PvcRetentionPolicy::DELETE, "Delete", "Delete"),
        ] {
            let p = StatefulSetParams::new("x", "ns", selector.clone(), pod_template(), policy);
            let sts = serde_json::to_value(stateful_set(&p)).unwrap();
            assert_eq!(
                sts["spec"]["persistentVolumeClaimRetentionPolicy"],
                json!({"whenDeleted": deleted, "whenScaled": scaled})
            );
            assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
            assert!(sts["spec"].get("volumeClaimTemplates").is_none());
        }
    }
}
