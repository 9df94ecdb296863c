//! Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy as K8sStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{match_labels, merged, object_meta, template_with_labels};

/// The update strategy.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DeploymentStrategy {
    /// Stop the old pod before starting the new one. The default here: single-writer workloads
    /// (an operator without leader election, an app owning a `ReadWriteOnce` volume) must never
    /// run twice.
    #[default]
    Recreate,
    /// Rolling update with the given surge and unavailability.
    RollingUpdate {
        /// `maxSurge`, e.g. `IntOrString::Int(1)` or `"25%"`.
        max_surge: IntOrString,
        /// `maxUnavailable`.
        max_unavailable: IntOrString,
    },
}

/// Parameters for [`deployment`].
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels of the Deployment (the selector labels are added).
    pub labels: BTreeMap<String, String>,
    /// Selector labels (immutable after creation); added to the pod template.
    pub selector: BTreeMap<String, String>,
    /// Replicas.
    pub replicas: i32,
    /// Update strategy.
    pub strategy: DeploymentStrategy,
    /// Pod template; the Deployment's labels and selector are merged into its labels.
    pub template: PodTemplateSpec,
}

impl DeploymentParams {
    /// One replica, `Recreate` strategy.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        selector: BTreeMap<String, String>,
        template: PodTemplateSpec,
    ) -> Self {
        DeploymentParams {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            selector,
            replicas: 1,
            strategy: DeploymentStrategy::Recreate,
            template,
        }
    }
}

/// The Deployment described by `p`.
pub fn deployment(p: &DeploymentParams) -> Deployment {
    let labels = merged(&p.labels, &p.selector);
    let strategy = match &p.strategy {
        DeploymentStrategy::Recreate => K8sStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        },
        DeploymentStrategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => K8sStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(max_surge.clone()),
                max_unavailable: Some(max_unavailable.clone()),
            }),
        },
    };
    Deployment {
        metadata: object_meta(&p.name, &p.namespace, &labels),
        spec: Some(DeploymentSpec {
            replicas: Some(p.replicas),
            selector: match_labels(&p.selector),
            strategy: Some(strategy),
            template: template_with_labels(&p.template, &labels),
            ..DeploymentSpec::default()
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
    fn builds_a_whole_deployment_with_recreate_by_default() {
        let p = DeploymentParams::new(
            "op",
            "system",
            labels(&[("app.kubernetes.io/name", "op")]),
            pod_template(),
        );
        assert_eq!(
            serde_json::to_value(deployment(&p)).unwrap(),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "op",
                    "namespace": "system",
                    "labels": {"app.kubernetes.io/name": "op"}
                },
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": "op"}},
                    "strategy": {"type": "Recreate"},
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": "op", "extra": "yes"}},
                        "spec": {"containers": [{"name": "main", "image": "example.com/app:1"}]}
                    }
                }
            })
        );
    }

    #[test]
    fn rolling_update() {
        let p = DeploymentParams {
            replicas: 3,
            strategy: DeploymentStrategy::RollingUpdate {
                max_surge: IntOrString::Int(1),
                max_unavailable: IntOrString::String("25%".into()),
            },
            ..DeploymentParams::new("web", "ns", labels(&[("a", "b")]), pod_template())
        };
        let d = serde_json::to_value(deployment(&p)).unwrap();
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
        );
    }
}
