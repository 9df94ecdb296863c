//! `DevServerUser`: a person who may run DevServers in their own namespace.

use k8s_openapi::api::core::v1::{LimitRangeSpec, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Longest username such that the namespace `dev-<username>` is still a
/// valid 63-character DNS label.
pub const MAX_USERNAME_LEN: usize = 63 - NAMESPACE_PREFIX.len();

/// Prefix of the namespace created for each user.
pub const NAMESPACE_PREFIX: &str = "dev-";

/// The DNS label rule (RFC 1123) for usernames.
pub const DNS_LABEL_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";

/// A user of DevServers. The operator creates the namespace
/// `dev-<username>` with a ServiceAccount and the RBAC that `devctl` needs,
/// plus optional quotas.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "devserver.io",
    version = "v1",
    kind = "DevServerUser",
    plural = "devserverusers",
    singular = "devserveruser",
    shortname = "dsu",
    status = "DevServerUserStatus",
    derive = "PartialEq",
    doc = "A DevServer user: namespace dev-<username>, ServiceAccount, RBAC, quotas and SSH keys.",
    printcolumn(
        name = "Username",
        type_ = "string",
        json_path = ".spec.username",
        description = "The user's name"
    ),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".status.namespace",
        description = "The user's namespace"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Summary state"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DevServerUserSpec {
    /// The user's name: a DNS label (lower-case letters, digits and `-`) of
    /// at most 59 characters, so that the namespace `dev-<username>` fits in
    /// 63. Cannot be changed after creation.
    #[schemars(length(min = 1, max = 59))]
    #[x_kube(
        validation = Rule::new(DNS_LABEL_RULE).message("username must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"),
        validation = Rule::new("self == oldSelf").message("username is immutable")
    )]
    pub username: String,

    /// OpenSSH public keys of the user (`ssh-ed25519 AAAA... comment`), used
    /// for the user's DevServers that set no `ssh.publicKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 16384)))]
    pub ssh_public_keys: Option<Vec<String>>,

    /// Extra permissions in the user's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac: Option<UserRbac>,

    /// Quotas and default limits for the user's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,

    /// What happens to the namespace `dev-<username>` when this user is
    /// deleted: `Retain` (default: keep it and its DevServers and volumes) or
    /// `Delete`. The ServiceAccount and RBAC are always removed.
    #[serde(default)]
    pub namespace_deletion_policy: NamespaceDeletionPolicy,
}

/// Extra RBAC for a user.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRbac {
    /// Roles or ClusterRoles bound (by RoleBindings in the user's namespace)
    /// to the user's ServiceAccount, in addition to the built-in DevServer
    /// role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub additional_role_refs: Option<Vec<RoleRef>>,
}

/// A reference to a Role (in the user's namespace) or a ClusterRole.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    /// API group of the role: `rbac.authorization.k8s.io`.
    #[serde(default = "rbac_group")]
    #[x_kube(validation = Rule::new("self == 'rbac.authorization.k8s.io'").message("apiGroup must be rbac.authorization.k8s.io"))]
    pub api_group: String,

    /// `Role` or `ClusterRole`.
    pub kind: RoleKind,

    /// Name of the role.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn rbac_group() -> String {
    "rbac.authorization.k8s.io".into()
}

/// Kind of a referenced role.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum RoleKind {
    /// A Role in the user's namespace.
    Role,
    /// A ClusterRole, granted only inside the user's namespace.
    ClusterRole,
}

/// Quotas for a user's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserQuotas {
    /// Spec of a ResourceQuota created in the user's namespace, e.g.
    /// `hard: {requests.nvidia.com/gpu: "2"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota_spec: Option<ResourceQuotaSpec>,

    /// Spec of a LimitRange created in the user's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range_spec: Option<LimitRangeSpec>,
}

/// What to do with a user's namespace when the user is deleted.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum NamespaceDeletionPolicy {
    /// Keep the namespace.
    #[default]
    Retain,
    /// Delete the namespace and everything in it.
    Delete,
}

/// Summary state of the user: Pending, Ready or Failed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DevServerUserPhase {
    /// Accepted; the namespace is not ready yet.
    Pending,
    /// The namespace, ServiceAccount and RBAC exist.
    Ready,
    /// The spec is invalid or the objects cannot be created.
    Failed,
}

impl std::fmt::Display for DevServerUserPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Observed state of a DevServerUser.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevServerUserStatus {
    /// Pending, Ready or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DevServerUserPhase>,

    /// The user's namespace, `dev-<username>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions: `Accepted` (the spec is valid), `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
