//! The Workspace kind: a JVS repository on a PersistentVolumeClaim, its runner and workload pods,
//! retention and scheduled snapshots.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules;
use super::snapshot::SnapshotTemplate;
use super::{DNS_LABEL_PATTERN, MAX_TAG_LEN, MAX_TAGS, MAX_WORKSPACE_NAME_LEN};

/// Most workload pods.
pub const MAX_REPLICAS: i32 = 100;
/// Longest `retentionPolicy.keepMinAge`.
pub const MAX_KEEP_MIN_AGE: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Longest quiesce timeout.
pub const MAX_QUIESCE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most snapshots `autoSnapshot.maxSnapshots` and `retentionPolicy.keepMinSnapshots` may name.
pub const MAX_SNAPSHOT_COUNT: i32 = 10_000;

/// A Workspace: a JVS repository on a PersistentVolumeClaim, with workload pods mounting its
/// `main/` worktree, scheduled snapshots and retention.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "jvs.io",
    version = "v1alpha1",
    kind = "Workspace",
    plural = "workspaces",
    singular = "workspace",
    shortname = "jvs",
    namespaced,
    status = "WorkspaceStatus",
    doc = "A JVS workspace: a versioned directory on a PersistentVolumeClaim, with workload pods mounting its main/ worktree, scheduled snapshots and retention.",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Workload pods ready"),
    printcolumn(name = "Snapshots", type_ = "integer", json_path = ".status.snapshotCount", description = "Snapshots in the repository"),
    printcolumn(name = "Last Snapshot", type_ = "date", json_path = ".status.lastSnapshotTime", description = "When the newest snapshot was taken"),
    printcolumn(name = "Next Snapshot", type_ = "string", json_path = ".status.nextSnapshotTime", description = "When the next scheduled snapshot is due", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(format!("self.metadata.name.matches('{DNS_LABEL_PATTERN}') && size(self.metadata.name) <= {MAX_WORKSPACE_NAME_LEN}"))
        .message(Message::Message(format!("metadata.name must be a DNS label (lower-case letters, digits and '-') of at most {MAX_WORKSPACE_NAME_LEN} characters: it names the workspace's volume, runner and pods"))),
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// Number of workload pods that mount the workspace's main/ worktree (0 runs none).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = MAX_REPLICAS))]
    pub replicas: i32,

    /// Size of the PersistentVolumeClaim holding the repository (all snapshots and worktrees),
    /// e.g. 50Gi. It can grow (when the StorageClass allows expansion) but not shrink.
    #[serde(default = "default_storage")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = rules::quantity(),
        validation = rules::positive_quantity(),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage can grow but not shrink"),
    )]
    pub storage: String,

    /// StorageClass of the PersistentVolumeClaim; unset uses the cluster's default. Cannot be
    /// changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(
        validation = rules::optional_dns_subdomain("a StorageClass name such as fast-ssd"),
        validation = Rule::new("self == oldSelf").message("storageClassName cannot be changed: the volume already exists"),
    )]
    pub storage_class_name: Option<String>,

    /// How `jvs` copies the worktree into a snapshot: juicefs-clone (copy-on-write on a JuiceFS
    /// mount), reflink-copy (copy-on-write on XFS/Btrfs) or copy (plain copy, works everywhere).
    #[serde(default)]
    pub default_engine: SnapshotEngine,

    /// JuiceFS settings, when the volume is (or is mounted from) a JuiceFS file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub juice_fs_config: Option<JuiceFsConfig>,

    /// Which snapshots may be removed. Without it snapshots are never removed automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<RetentionPolicy>,

    /// Scheduled snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_snapshot: Option<AutoSnapshot>,

    /// The runner pod that holds the volume and runs `jvs` (and `juicefs`) for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<Runner>,

    /// The workload pods (replicas of them) that mount main/.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,

    /// How writers are stopped around snapshots and restores (JVS snapshots are not
    /// crash-consistent under live writes).
    #[serde(default)]
    pub quiesce: Quiesce,

    /// What happens to the PersistentVolumeClaim, and with it every snapshot's data, when the
    /// Workspace is deleted: Retain (default) keeps it, Delete removes it.
    #[serde(default)]
    pub storage_deletion_policy: StorageDeletionPolicy,
}

/// A `jvs` snapshot engine.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotEngine {
    /// `juicefs clone`: copy-on-write on a JuiceFS mount.
    JuicefsClone,
    /// Reflink copies: copy-on-write on XFS or Btrfs.
    ReflinkCopy,
    /// A plain recursive copy.
    #[default]
    Copy,
}

impl SnapshotEngine {
    /// The API string, which is also `jvs`'s engine name.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotEngine::JuicefsClone => "juicefs-clone",
            SnapshotEngine::ReflinkCopy => "reflink-copy",
            SnapshotEngine::Copy => "copy",
        }
    }
}

/// JuiceFS settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.source) || (has(self.secretsRef) && has(self.secretsRef.keys) && 'source' in self.secretsRef.keys)")
        .message("juiceFsConfig needs source, or secretsRef.keys.source naming the Secret key that holds it"),
)]
pub struct JuiceFsConfig {
    /// Metadata engine URL of the file system, e.g. redis://redis:6379/0. Put URLs with
    /// passwords in the Secret instead (secretsRef.keys.source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9+.-]*://')").message("must be a JuiceFS metadata URL such as redis://redis:6379/0"))]
    pub source: Option<String>,
    /// Directory for JuiceFS metadata backups (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must be an absolute path"))]
    pub meta_dir: Option<String>,
    /// Local cache directory of the JuiceFS client (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must be an absolute path"))]
    pub cache_dir: Option<String>,
    /// Secret with the credentials of the file system. They are passed to the runner as
    /// environment variables and never appear in status, events or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_ref: Option<JuiceFsSecretsRef>,
}

/// A Secret holding JuiceFS credentials.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct JuiceFsSecretsRef {
    /// Name of the Secret, in the Workspace's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = rules::dns_subdomain("a Secret name"))]
    pub name: String,
    /// Which key of the Secret holds each setting, e.g. source: REDIS_URL (settings: source,
    /// accessKey, secretKey, token).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "secret_keys_schema")]
    pub keys: BTreeMap<String, String>,
}

/// Which snapshots retention may remove. A snapshot is kept when any rule protects it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// The newest this many Ready snapshots are always kept (failed ones do not count).
    #[serde(default = "default_keep_min_snapshots")]
    #[schemars(range(min = 0, max = MAX_SNAPSHOT_COUNT))]
    pub keep_min_snapshots: i32,
    /// Snapshots younger than this are always kept (a duration such as 48h or 7d; 0s keeps none
    /// for their age).
    #[serde(default = "default_keep_min_age")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration_format(), validation = rules::max_duration(MAX_KEEP_MIN_AGE))]
    pub keep_min_age: String,
    /// Snapshots carrying any of these tags are always kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_TAGS), inner(length(min = 1, max = MAX_TAG_LEN)))]
    #[x_kube(validation = Rule::new("self.all(t, t.matches('^[a-zA-Z0-9._-]+$'))").message("tags may contain only letters, digits, '.', '_' and '-' (what jvs accepts)"))]
    pub keep_tags: Vec<String>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_min_snapshots: default_keep_min_snapshots(),
            keep_min_age: default_keep_min_age(),
            keep_tags: Vec::new(),
        }
    }
}

/// Scheduled snapshots: Snapshot objects created from a template on a cron schedule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.enabled || has(self.schedule)").message("autoSnapshot.schedule is required when autoSnapshot is enabled"),
)]
pub struct AutoSnapshot {
    /// Whether scheduled snapshots are taken.
    #[serde(default)]
    pub enabled: bool,
    /// When: 5 cron fields "minute hour day-of-month month day-of-week" (e.g. "0 */4 * * *") or
    /// a macro (@hourly, @daily, @weekly, @monthly, @yearly), in timeZone. After downtime, one
    /// missed snapshot is taken, not a burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(r"self.matches('^\\s*@[a-z]+\\s*$') || self.matches('^\\s*\\S+(\\s+\\S+){4}\\s*$')").message("must be a cron schedule: 5 fields \"minute hour day-of-month month day-of-week\" (e.g. \"0 */4 * * *\") or a macro such as @daily"))]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in, e.g. Europe/Berlin. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][-A-Za-z0-9_+]*(/[-A-Za-z0-9_+]+)*$')").message("must be an IANA time zone such as Europe/Berlin or UTC"))]
    pub time_zone: Option<String>,
    /// Template of the scheduled snapshots (note, tags and compression); default checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SnapshotTemplate>,
    /// Most scheduled snapshots kept; older ones are removed, subject to retentionPolicy.
    #[serde(default = "default_max_snapshots")]
    #[schemars(range(min = 1, max = MAX_SNAPSHOT_COUNT))]
    pub max_snapshots: i32,
}

/// The runner pod.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Runner {
    /// Image with the `jvs` binary (and `juicefs` for JuiceFS); unset uses the operator's
    /// default runner image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(r"self.matches('^\\S+$')").message("must be an image reference without spaces"))]
    pub image: Option<String>,
    /// CPU and memory of the runner container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// The workload pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Where main/ is mounted in every container of the workload pods (absolute path).
    #[serde(default = "default_mount_path")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must be an absolute path"))]
    pub mount_path: String,
    /// Pod template (metadata and spec, as in a Deployment) of the workload pods. Unset: the
    /// pods run the runner image idle, for `kubectl exec`. The pod spec is checked by the API
    /// server when the operator creates the pods (the CRD does not repeat its large schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    pub template: Option<PodTemplateSpec>,
}

/// How writers are stopped around snapshots and restores.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode != 'Exec' || (has(self.preSnapshot) && size(self.preSnapshot) > 0)")
        .message("quiesce mode Exec needs preSnapshot: the command run in each workload pod before a snapshot"),
)]
pub struct Quiesce {
    /// ScaleDown (default) stops the workload pods for the snapshot and starts them again;
    /// Exec runs preSnapshot/postSnapshot in each workload pod; None snapshots live
    /// (best effort, possibly inconsistent).
    #[serde(default)]
    pub mode: QuiesceMode,
    /// Command run in each workload pod's first container before a snapshot (mode Exec), e.g.
    /// ["sh", "-c", "sync"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub pre_snapshot: Vec<String>,
    /// Command run in each workload pod's first container after a snapshot (mode Exec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub post_snapshot: Vec<String>,
    /// How long quiescing may take before the snapshot fails (a duration such as 5m).
    #[serde(default = "default_quiesce_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = rules::duration_format(),
        validation = rules::positive_duration(),
        validation = rules::max_duration(MAX_QUIESCE_TIMEOUT),
    )]
    pub timeout: String,
}

impl Default for Quiesce {
    fn default() -> Self {
        Self {
            mode: QuiesceMode::default(),
            pre_snapshot: Vec::new(),
            post_snapshot: Vec::new(),
            timeout: default_quiesce_timeout(),
        }
    }
}

/// How writers are stopped.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum QuiesceMode {
    /// Scale the workload pods to zero for the snapshot, then back.
    #[default]
    ScaleDown,
    /// Run preSnapshot / postSnapshot commands in the workload pods.
    Exec,
    /// Do not quiesce (best effort).
    None,
}

/// What happens to the volume when the Workspace is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum StorageDeletionPolicy {
    /// Keep the PersistentVolumeClaim (and the data) after the Workspace is deleted.
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaim with the Workspace.
    Delete,
}

/// The observed state of a Workspace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary of the lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkspacePhase>,
    /// Snapshots in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<i32>,
    /// Full id of the snapshot main/ is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_snapshot: Option<String>,
    /// When the newest snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot_time: Option<Time>,
    /// When the next scheduled snapshot is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_snapshot_time: Option<Time>,
    /// Workload pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Snapshots (object names) the retention policy would remove now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prune_candidates: Vec<String>,
    /// Conditions: Accepted (the spec is valid), Ready, Progressing, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The lifecycle phase of a Workspace.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkspacePhase {
    /// Accepted, waiting to be provisioned.
    Pending,
    /// The volume, runner and repository are being created.
    Creating,
    /// The repository is initialised (confirmed by `jvs info`) and the workload pods run.
    Ready,
    /// A change is being rolled out.
    Updating,
    /// Cannot be provisioned (see the conditions).
    Failed,
    /// Being deleted.
    Terminating,
}

/// The schema of `juiceFsConfig.secretsRef.keys`: a bounded map (so its CEL rule has a bounded
/// cost) of settings to Secret keys.
fn secret_keys_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": { "type": "string", "maxLength": 253 },
        "x-kubernetes-validations": [{
            "rule": "self.all(k, self[k].matches('^[-._a-zA-Z0-9]+$'))",
            "message": "values must be Secret keys (letters, digits, '-', '_' and '.')"
        }]
    })
}

/// The schema of `workload.template`: typed labels and annotations, the pod spec kept as given.
/// The full PodSpec schema would make the CRD over 500 KB, too large for client-side
/// `kubectl apply` (its last-applied annotation is limited to 256 KB).
fn pod_template_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "properties": {
            "metadata": {
                "description": "Labels and annotations of the workload pods.",
                "type": "object",
                "properties": {
                    "labels": {
                        "description": "Labels of the pods (the operator adds its own).",
                        "type": "object",
                        "additionalProperties": { "type": "string" }
                    },
                    "annotations": {
                        "description": "Annotations of the pods.",
                        "type": "object",
                        "additionalProperties": { "type": "string" }
                    }
                }
            },
            "spec": {
                "description": "A core/v1 PodSpec; the operator adds the volume holding main/ and mounts it in every container at mountPath.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true
            }
        }
    })
}

fn default_replicas() -> i32 {
    1
}
fn default_storage() -> String {
    "10Gi".into()
}
fn default_keep_min_snapshots() -> i32 {
    10
}
fn default_keep_min_age() -> String {
    "24h".into()
}
fn default_max_snapshots() -> i32 {
    30
}
fn default_mount_path() -> String {
    "/workspace".into()
}
fn default_quiesce_timeout() -> String {
    "5m".into()
}
