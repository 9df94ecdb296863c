//! `DevServer`: one development environment with SSH access.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use operator_core::duration::DURATION_PATTERN;
use serde::{Deserialize, Serialize};

use super::VolumeMount;

/// `mode: distributed` needs `distributed` settings.
pub const DEVSERVER_DISTRIBUTED_REQUIRED: &str =
    "!has(self.mode) || self.mode != 'distributed' || has(self.distributed)";
/// `distributed` settings only make sense with `mode: distributed`.
pub const DEVSERVER_DISTRIBUTED_ONLY: &str =
    "!has(self.distributed) || (has(self.mode) && self.mode == 'distributed')";
/// A persistent home and a volume at the home path would both mount there.
pub const DEVSERVER_HOME_CONFLICT: &str = "!has(self.persistentHomeSize) || !has(self.volumes) || !self.volumes.exists(v, v.mountPath == '/home/dev')";
/// The shared claim and a volume at `/shared` would both mount there.
pub const DEVSERVER_SHARED_CONFLICT: &str = "!has(self.sharedVolumeClaimName) || !has(self.volumes) || !self.volumes.exists(v, v.mountPath == '/shared')";
/// A duration (already matching [`DURATION_PATTERN`]) that is not all zeros.
pub const DURATION_POSITIVE: &str = "self.matches('[1-9]')";
/// A duration of at most 7 days (`168h`), with or without a day part.
pub const TTL_AT_MOST_7_DAYS: &str = "!self.matches('^[0-9]+d') ? duration(self) <= duration('168h') : (int(self.substring(0, self.indexOf('d'))) < 7 || (int(self.substring(0, self.indexOf('d'))) == 7 && !self.substring(self.indexOf('d') + 1).matches('[1-9]')))";
/// An int-or-string quantity greater than zero.
pub const POSITIVE_QUANTITY: &str = "type(self) == int ? self > 0 : (isQuantity(self) && quantity(self).isGreaterThan(quantity('0')))";

/// A development environment: a pod (or several, in distributed mode) running
/// the chosen image with an SSH server, the flavor's resources, a home
/// directory and the given volumes.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "devserver.io",
    version = "v1",
    kind = "DevServer",
    plural = "devservers",
    singular = "devserver",
    shortname = "dev",
    namespaced,
    status = "DevServerStatus",
    derive = "PartialEq",
    doc = "A development environment with SSH access, sized by a DevServerFlavor.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Summary of the server's state"
    ),
    printcolumn(
        name = "Flavor",
        type_ = "string",
        json_path = ".spec.flavor",
        description = "Requested flavor (empty: the default flavor)"
    ),
    printcolumn(
        name = "Owner",
        type_ = "string",
        json_path = ".spec.owner",
        description = "Who owns the server"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        priority = 1,
        description = "standalone or distributed"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        priority = 1,
        description = "Container image"
    ),
    printcolumn(
        name = "Expires",
        type_ = "date",
        json_path = ".status.expiresAt",
        description = "When the time to live runs out"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(DEVSERVER_DISTRIBUTED_REQUIRED).message("spec.distributed (with worldSize) is required when mode is distributed"),
    validation = Rule::new(DEVSERVER_DISTRIBUTED_ONLY).message("spec.distributed is only allowed when mode is distributed"),
    validation = Rule::new(DEVSERVER_HOME_CONFLICT).message("a volume cannot be mounted at /home/dev when persistentHomeSize is set (the persistent home is mounted there)"),
    validation = Rule::new(DEVSERVER_SHARED_CONFLICT).message("a volume cannot be mounted at /shared when sharedVolumeClaimName is set (the shared claim is mounted there)")
)]
pub struct DevServerSpec {
    /// Who owns the server: a DevServerUser's username or an e-mail address.
    /// When `ssh.publicKey` is empty, the owner's DevServerUser keys are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub owner: Option<String>,

    /// Name of the DevServerFlavor (cluster-scoped) that sets resources, node
    /// selector, tolerations and default volumes. When omitted, the flavor
    /// marked `default: true` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("flavor must be a DevServerFlavor name (lower-case letters, digits, '-' and '.')"))]
    pub flavor: Option<String>,

    /// Container image of the development environment, e.g. `ubuntu:24.04`.
    /// It needs no SSH server: the operator injects one. Default: the
    /// flavor's `defaultImage`, else the operator's default image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.matches('\\\\s')").message("image must not contain whitespace"))]
    pub image: Option<String>,

    /// `standalone` (one pod) or `distributed` (`distributed.worldSize` pods
    /// that can run a PyTorch-style distributed job together).
    #[serde(default)]
    pub mode: DevServerMode,

    /// Settings for `mode: distributed`; required in that mode and not
    /// allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedSpec>,

    /// SSH access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSpec>,

    /// Size of a persistent home directory (`/home/dev`), e.g. `100Gi`,
    /// provisioned from the default StorageClass and kept when the server is
    /// stopped or recreated. When omitted the home is ephemeral (emptyDir)
    /// unless a volume is mounted at `/home/dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bounded_quantity")]
    #[x_kube(validation = Rule::new(POSITIVE_QUANTITY).message("persistentHomeSize must be a positive quantity such as 100Gi"))]
    pub persistent_home_size: Option<Quantity>,

    /// What happens to the persistent home (the claim `<name>-home`) when
    /// the DevServer is deleted: `Retain` (default: keep it, and a new
    /// DevServer of the same name mounts it again) or `Delete`. Stopping
    /// (`running: false`) never deletes it.
    #[serde(default)]
    pub home_deletion_policy: HomeDeletionPolicy,

    /// Name of an existing (usually ReadWriteMany) PersistentVolumeClaim in
    /// the same namespace, mounted at `/shared`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("sharedVolumeClaimName must be a valid PersistentVolumeClaim name"))]
    pub shared_volume_claim_name: Option<String>,

    /// Existing PersistentVolumeClaims to mount (docker-style
    /// `-v claim:/path[:ro]` in devctl). Merged with the flavor's volumes;
    /// on the same `mountPath` the server's entry wins. Each `mountPath` may
    /// appear only once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(super::DISTINCT_MOUNT_PATHS).message("volumes must not repeat a mountPath: each path can be mounted only once"))]
    pub volumes: Option<Vec<VolumeMount>>,

    /// Automatic expiry and idle shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleSpec>,

    /// Whether the server should run. `false` stops it (scales to zero) and
    /// keeps its persistent home and volumes; `true` starts it again.
    #[serde(default = "default_true")]
    pub running: bool,
}

/// An int-or-string quantity with a bounded length (so CEL rules on it have
/// a bounded cost).
fn bounded_quantity(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": super::MAX_QUANTITY_LEN,
    })
}

fn default_true() -> bool {
    true
}

/// What to do with a DevServer's persistent home when it is deleted.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum HomeDeletionPolicy {
    /// Keep the claim.
    #[default]
    Retain,
    /// Delete the claim with the DevServer.
    Delete,
}

/// How many pods a DevServer runs.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DevServerMode {
    /// One pod.
    #[default]
    Standalone,
    /// `distributed.worldSize` pods with rank, world size and master address.
    Distributed,
}

/// Settings of a distributed DevServer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedSpec {
    /// Number of pods (nodes) in the group; each gets a stable rank
    /// (`RANK`/`NODE_RANK`) and the group's `WORLD_SIZE` and `MASTER_ADDR`.
    #[schemars(range(min = 1, max = 256))]
    pub world_size: i32,

    /// Processes per pod, usually one per GPU (`NPROC_PER_NODE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub nprocs_per_node: Option<i32>,

    /// Collective communication backend (`nccl` for GPUs, `gloo` for CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<DistributedBackend>,

    /// Extra NCCL settings passed as environment variables, e.g.
    /// `NCCL_DEBUG: INFO`. Keys must be environment variable names; values
    /// are strings (quote numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$') && k.size() <= 128)").message("ncclSettings keys must be environment variable names such as NCCL_DEBUG"))]
    pub nccl_settings: Option<BTreeMap<String, String>>,
}

/// Collective communication backend of `torch.distributed`: `nccl` for
/// GPUs, `gloo` for CPUs, `mpi` or `ucc`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DistributedBackend {
    /// NVIDIA NCCL (GPUs).
    Nccl,
    /// Gloo (CPUs).
    Gloo,
    /// MPI.
    Mpi,
    /// Unified Collective Communication.
    Ucc,
}

/// SSH access to a DevServer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshSpec {
    /// OpenSSH public key(s) allowed to log in as user `dev`, in
    /// `authorized_keys` format (`ssh-ed25519 AAAA... comment`), one per
    /// line. When empty, the owner's DevServerUser keys are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub public_key: Option<String>,

    /// How the SSH Service is exposed: `ClusterIP` (reach it through
    /// `devctl ssh`, which tunnels over the API server) or `NodePort`.
    /// Default: ClusterIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<SshServiceType>,
}

/// How the SSH Service is exposed: `ClusterIP` (the default; reach it
/// through `devctl ssh`, which tunnels over the API server) or `NodePort`.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum SshServiceType {
    /// Cluster-internal address only.
    #[default]
    ClusterIP,
    /// Also a port on every node.
    NodePort,
}

/// Automatic expiry and idle shutdown. Durations use `d`, `h`, `m`, `s`
/// parts in that order, e.g. `2h30m` or `1d`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleSpec {
    /// How long the server lives, counted from its creation (greater than
    /// zero, at most 7 days). Editing it moves `status.expiresAt`. A warning
    /// event is published before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    #[x_kube(
        validation = Rule::new(DURATION_POSITIVE).message("timeToLive must be greater than zero"),
        validation = Rule::new(TTL_AT_MOST_7_DAYS).message("timeToLive must be at most 7 days (7d or 168h)")
    )]
    pub time_to_live: Option<String>,

    /// Stop the server (keeping its home) when no SSH session has been
    /// active for this long, e.g. `2h`. The operator asks the pod for
    /// established SSH connections shortly before the deadline (a Warning
    /// event when there are none) and at it; an idle stop sets `running` to
    /// false and `status.stopReason` to `Idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new(DURATION_POSITIVE).message("idleTimeout must be greater than zero"))]
    pub idle_timeout: Option<String>,
}

/// Summary state, derived from the real pod state: Pending, Starting,
/// Running, Stopping, Stopped, Expired or Failed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DevServerPhase {
    /// Accepted; nothing is running yet (or waiting for a flavor).
    Pending,
    /// Pods are being created or are not ready yet.
    Starting,
    /// Every pod is ready and SSH is reachable.
    Running,
    /// Scaling to zero.
    Stopping,
    /// Stopped (`running: false` or an idle stop); the home is kept.
    Stopped,
    /// The time to live ran out.
    Expired,
    /// The spec is invalid or the pods cannot run.
    Failed,
}

impl std::fmt::Display for DevServerPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Observed state of a DevServer.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevServerStatus {
    /// Summary state: Pending, Starting, Running, Stopping, Stopped, Expired
    /// or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DevServerPhase>,

    /// Why the server is stopped: `Idle` (no SSH session for
    /// `idleTimeout`; `running` was set to false), `Expired` or
    /// `Requested` (`running: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,

    /// Human-readable detail about the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The flavor in use: `spec.flavor`, or the default flavor's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,

    /// When the time to live runs out (creation time + `timeToLive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// Last time the server was seen active: when it became Running, or
    /// when an idle check (at the idle warning time and deadline) found an
    /// established SSH connection in the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Time>,

    /// How to connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConnection>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions: `Accepted` (the spec is valid), `FlavorResolved` (the
    /// flavor exists, or exactly one default does), `Ready` (every pod is
    /// ready for SSH) and, with a time to live, `Expiring`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Where the DevServer's SSH server can be reached.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshConnection {
    /// Name of the SSH Service in the DevServer's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Service port of the SSH server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Node port, when the Service is a NodePort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
    /// A command that opens a shell, e.g. `devctl ssh <name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The server's SSH host key (`ssh-ed25519 AAAA...`, public half only),
    /// for clients to pin: it stays the same across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_public_key: Option<String>,
}
