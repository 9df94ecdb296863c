//! `DevServerFlavor`: a cluster-wide "t-shirt size" for DevServers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::VolumeMount;

/// A non-negative int-or-string quantity.
pub const NON_NEGATIVE_QUANTITY: &str = "type(self) == int ? self >= 0 : (isQuantity(self) && !quantity(self).isLessThan(quantity('0')))";

/// A map from resource name to quantity, each value checked by
/// [`NON_NEGATIVE_QUANTITY`] (bounded, so the rule's cost is bounded).
fn resource_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "maxLength": super::MAX_QUANTITY_LEN,
            "x-kubernetes-validations": [{
                "rule": NON_NEGATIVE_QUANTITY,
                "message": "must be a non-negative quantity such as 500m, 2 or 4Gi",
            }],
        },
    })
}

/// Compute resources, scheduling constraints and default volumes shared by
/// every DevServer that uses this flavor.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "devserver.io",
    version = "v1",
    kind = "DevServerFlavor",
    plural = "devserverflavors",
    singular = "devserverflavor",
    shortname = "dsf",
    status = "DevServerFlavorStatus",
    derive = "PartialEq",
    doc = "A size for DevServers: resources (CPU, memory, GPUs), node selection and default volumes.",
    printcolumn(
        name = "Default",
        type_ = "boolean",
        json_path = ".spec.default",
        description = "Used when a DevServer names no flavor"
    ),
    printcolumn(
        name = "CPU",
        type_ = "string",
        json_path = ".spec.resources.requests.cpu",
        description = "Requested CPU"
    ),
    printcolumn(
        name = "Memory",
        type_ = "string",
        json_path = ".spec.resources.requests.memory",
        description = "Requested memory"
    ),
    printcolumn(
        name = "Schedulable",
        type_ = "string",
        json_path = ".status.schedulable",
        description = "Whether a node can fit this flavor"
    ),
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description",
        priority = 1,
        description = "What the flavor is for"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DevServerFlavorSpec {
    /// Name shown to users, e.g. `Small CPU`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub display_name: Option<String>,

    /// What the flavor is for, shown by `devctl flavors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Use this flavor for DevServers that name none. At most one flavor may
    /// be the default; a second one is reported and never picked silently.
    #[serde(default)]
    pub default: bool,

    /// Image for DevServers of this flavor that set no `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub default_image: Option<String>,

    /// Compute resources of each DevServer pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<FlavorResources>,

    /// Node labels a node must have to run these DevServers, e.g.
    /// `kubernetes.io/arch: amd64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations for tainted nodes, e.g. GPU nodes tainted
    /// `nvidia.com/gpu:NoSchedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tolerations: Option<Vec<Toleration>>,

    /// PersistentVolumeClaims mounted into every DevServer of this flavor
    /// (claims are looked up in each DevServer's namespace). A DevServer's
    /// own volume on the same `mountPath` replaces the flavor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(super::DISTINCT_MOUNT_PATHS).message("volumes must not repeat a mountPath: each path can be mounted only once"))]
    pub volumes: Option<Vec<VolumeMount>>,
}

/// Requests and limits by resource name (`cpu`, `memory`,
/// `nvidia.com/gpu`, ...).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlavorResources {
    /// Minimum resources reserved for each pod, e.g. `cpu: 500m`,
    /// `memory: 1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resource_map")]
    pub requests: Option<BTreeMap<String, Quantity>>,

    /// Maximum resources of each pod. Extended resources such as
    /// `nvidia.com/gpu` must have equal requests and limits (a limit alone
    /// implies the same request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resource_map")]
    pub limits: Option<BTreeMap<String, Quantity>>,
}

/// Whether the cluster can run a DevServer of this flavor (Yes, No,
/// AUTOSCALED or Unknown), computed from the nodes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Schedulable {
    /// A current node has the capacity and matches the selector and taints.
    Yes,
    /// No node can fit it.
    No,
    /// No current node fits, but an autoscaler (a Karpenter NodePool) can
    /// add one.
    #[serde(rename = "AUTOSCALED")]
    Autoscaled,
    /// Not computed yet.
    Unknown,
}

impl std::fmt::Display for Schedulable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Schedulable::Yes => "Yes",
            Schedulable::No => "No",
            Schedulable::Autoscaled => "AUTOSCALED",
            Schedulable::Unknown => "Unknown",
        })
    }
}

/// Observed state of a flavor.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevServerFlavorStatus {
    /// Yes, No, AUTOSCALED or Unknown, computed from the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedulable: Option<Schedulable>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions: `Accepted` (the spec is valid) and, on default flavors,
    /// `DefaultConflict` (another flavor is marked default too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
