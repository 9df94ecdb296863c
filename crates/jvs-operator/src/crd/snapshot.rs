//! The Snapshot kind: one `jvs snapshot` of a Workspace's main/ worktree, optionally restored into
//! a new worktree.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules;
use super::{MAX_TAG_LEN, MAX_TAGS};

/// Longest snapshot note.
pub const MAX_NOTE_LEN: usize = 4096;
/// The gzip levels `jvs snapshot --compress` offers: fast, default and max.
pub const JVS_GZIP_LEVELS: [i32; 3] = [1, 6, 9];

/// A Snapshot: one `jvs snapshot` of a Workspace's main/ worktree. Its spec cannot change once
/// created; create another Snapshot instead.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "jvs.io",
    version = "v1alpha1",
    kind = "Snapshot",
    plural = "snapshots",
    singular = "snapshot",
    shortname = "jvssnap",
    namespaced,
    status = "SnapshotStatus",
    doc = "A snapshot of a JVS Workspace's main/ worktree, taken with the jvs CLI, optionally restored into a new worktree.",
    printcolumn(
        name = "Workspace",
        type_ = "string",
        json_path = ".spec.workspace",
        description = "The Workspace snapshotted"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "SnapshotID",
        type_ = "string",
        json_path = ".status.snapshotID",
        description = "The full jvs snapshot id"
    ),
    printcolumn(
        name = "Tags",
        type_ = "string",
        json_path = ".spec.tags",
        description = "Tags given in the spec",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self == oldSelf").message("the spec of a Snapshot cannot be changed; create a new Snapshot instead"),
    validation = Rule::new("!has(self.restoreWorktree) || self.restoreOnCreate")
        .message("restoreWorktree is used only with restoreOnCreate: true"),
)]
pub struct SnapshotSpec {
    /// Name of the Workspace (in the same namespace) to snapshot.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = rules::dns_subdomain("the name of a Workspace"))]
    pub workspace: String,

    /// Free-text note stored with the snapshot (default: the template's note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_NOTE_LEN))]
    pub note: Option<String>,

    /// Tags stored with the snapshot (added to the template's), used by retention's keepTags.
    /// Letters, digits, '.', '_' and '-'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_TAGS), inner(length(min = 1, max = MAX_TAG_LEN)))]
    #[x_kube(
        validation = Rule::new("self.all(t, t.matches('^[a-zA-Z0-9._-]+$'))").message("tags may contain only letters, digits, '.', '_' and '-' (what jvs accepts)"),
        merge_strategy = ListMerge::Set,
    )]
    pub tags: Vec<String>,

    /// A preset of note, tags and compression: pre-experiment (experiment, checkpoint),
    /// pre-deploy (pre-deploy, release), checkpoint (checkpoint), work (wip), release (release,
    /// stable), archive (archive, maximum compression). Explicit fields take precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SnapshotTemplate>,

    /// Compression of the snapshot's files. jvs compresses with gzip at level 1 (fast),
    /// 6 (default) or 9 (max).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,

    /// Restore the snapshot into a new worktree (restoreWorktree) once it is taken.
    #[serde(default)]
    pub restore_on_create: bool,

    /// Name of the worktree to create on restore (default: the Snapshot's name); it must not
    /// exist yet, and cannot be main.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = rules::jvs_name("restoreWorktree"),
        validation = Rule::new("self != 'main' && !self.contains('..')").message("restoreWorktree cannot be main or contain '..'"),
    )]
    pub restore_worktree: Option<String>,
}

/// A snapshot preset, expanded by the operator into note, tags and compression.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotTemplate {
    /// Before an experiment: tags experiment, checkpoint.
    PreExperiment,
    /// Before a deployment: tags pre-deploy, release.
    PreDeploy,
    /// A checkpoint: tag checkpoint.
    Checkpoint,
    /// Work in progress: tag wip.
    Work,
    /// A release: tags release, stable.
    Release,
    /// An archive: tag archive, maximum compression.
    Archive,
}

impl SnapshotTemplate {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotTemplate::PreExperiment => "pre-experiment",
            SnapshotTemplate::PreDeploy => "pre-deploy",
            SnapshotTemplate::Checkpoint => "checkpoint",
            SnapshotTemplate::Work => "work",
            SnapshotTemplate::Release => "release",
            SnapshotTemplate::Archive => "archive",
        }
    }
}

/// Compression settings, limited to what `jvs` can do.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'gzip' || !has(self.level) || self.level in [1, 6, 9]")
        .message("jvs compresses with gzip at level 1 (fast), 6 (default) or 9 (max) only"),
    validation = Rule::new("self.type != 'none' || !has(self.level) || self.level == 0")
        .message("level must be omitted (or 0) when type is none"),
)]
pub struct Compression {
    /// Algorithm: gzip (the only one jvs implements) or none.
    #[serde(default, rename = "type")]
    #[schemars(with = "String")]
    #[x_kube(validation = Rule::new("self in ['gzip', 'none']").message("jvs compresses snapshots with gzip only: type must be gzip or none"))]
    pub type_: CompressionType,
    /// gzip level: 1 (fast), 6 (default when omitted) or 9 (max).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9))]
    pub level: Option<i32>,
}

/// A compression algorithm `jvs` implements.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CompressionType {
    /// gzip.
    #[default]
    Gzip,
    /// No compression.
    None,
}

/// The observed state of a Snapshot.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary of the lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SnapshotPhase>,
    /// The full snapshot id reported by `jvs snapshot`, e.g. 1700000000000-abcdef12.
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// When `jvs` created the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// When the operator finished with the snapshot (taken and, if asked, restored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Integrity state reported by `jvs` (e.g. verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_state: Option<String>,
    /// Checksum of the snapshot's descriptor, as reported by `jvs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor_checksum: Option<String>,
    /// Root hash of the snapshot's payload, as reported by `jvs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_root_hash: Option<String>,
    /// Progress of the restore into restoreWorktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_status: Option<RestoreStatus>,
    /// Conditions: Accepted (the spec is valid), Ready, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The lifecycle phase of a Snapshot.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SnapshotPhase {
    /// Waiting (for its Workspace to be Ready).
    Pending,
    /// `jvs snapshot` (or the restore) is running.
    InProgress,
    /// `jvs` reported the snapshot (and the restore, if asked) done.
    Ready,
    /// `jvs` failed (see the conditions), or the Workspace is gone.
    Failed,
}

/// Progress of a restore into a new worktree.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The worktree created from the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree_name: Option<String>,
    /// Phase of the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// When the restore started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the restore completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Why the restore failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The phase of a restore.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestorePhase {
    /// Waiting for the snapshot.
    Pending,
    /// `jvs worktree create` is running.
    InProgress,
    /// The worktree exists.
    Completed,
    /// `jvs` failed (see message).
    Failed,
}
