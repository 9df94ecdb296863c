//! Pure builders for the Kubernetes objects operators create.
//!
//! Every function here takes a small params struct and returns a `k8s-openapi` object with
//! `metadata.name`, `metadata.namespace` and `metadata.labels` set. They do no I/O and read no
//! clock, and their output is deterministic (maps are `BTreeMap`s, lists keep the caller's order),
//! so tests can compare whole objects. Owner references and field managers are added by the apply
//! layer, not here.
//!
//! Workload builders (Deployment, StatefulSet, Job) merge the object's labels and selector into the
//! pod template's labels, so pods always match their controller's selector.

pub mod config;
pub mod deployment;
pub mod ingress;
pub mod job;
pub mod pvc;
pub mod security;
pub mod service;
pub mod statefulset;

pub use config::{ConfigMapParams, SecretParams, config_map, secret};
pub use deployment::{DeploymentParams, DeploymentStrategy, deployment};
pub use ingress::{BackendPort, IngressParams, IngressPath, PathType, ingress};
pub use job::{JobParams, job};
pub use pvc::{AccessMode, PvcParams, persistent_volume_claim, pvc_spec};
pub use security::{restricted_container_security_context, restricted_pod_security_context};
pub use service::{Protocol, ServiceKind, ServiceParams, ServicePortParams, service};
pub use statefulset::{
    PodManagementPolicy, PvcRetention, PvcRetentionPolicy, StatefulSetParams, VolumeClaimTemplate,
    stateful_set,
};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// `ObjectMeta` with name, namespace and labels (labels omitted when empty).
pub fn object_meta(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: non_empty(labels.clone()),
        ..ObjectMeta::default()
    }
}

/// A `LabelSelector` with `matchLabels` only.
pub fn match_labels(selector: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector.clone()),
        ..LabelSelector::default()
    }
}

/// `a` overlaid with `b` (keys in `b` win).
pub(crate) fn merged(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = a.clone();
    out.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

pub(crate) fn non_empty<K: Ord, V>(map: BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!map.is_empty()).then_some(map)
}

/// The pod template with `labels` added to its metadata labels (existing template labels are
/// kept unless `labels` has the same key).
pub(crate) fn template_with_labels(
    template: &PodTemplateSpec,
    labels: &BTreeMap<String, String>,
) -> PodTemplateSpec {
    let mut template = template.clone();
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    let existing = metadata.labels.take().unwrap_or_default();
    metadata.labels = non_empty(merged(&existing, labels));
    template
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A minimal pod template with one container and one template label.
    pub fn pod_template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("extra", "yes")])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("example.com/app:1".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }
}
