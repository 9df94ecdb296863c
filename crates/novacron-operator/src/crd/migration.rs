//! `novacron.io/v1alpha1` VirtualMachineMigration: a request to live-migrate
//! one VM to another node, with the progress of that migration.

// `printcolumn(type_ = "string", ...)` repeated per column is not a duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request to live-migrate the VirtualMachine `vmName` (in the same
/// namespace) to another node. Deleting the object before it succeeds
/// cancels the migration: the VM keeps running on its source node.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "novacron.io",
    version = "v1alpha1",
    kind = "VirtualMachineMigration",
    plural = "virtualmachinemigrations",
    singular = "virtualmachinemigration",
    namespaced,
    shortname = "vmim",
    category = "novacron",
    status = "VirtualMachineMigrationStatus",
    doc = "A live migration of a NovaCron VirtualMachine to another node.",
    printcolumn(
        name = "VM",
        type_ = "string",
        json_path = ".spec.vmName",
        description = "The VM being migrated"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Phase of the migration"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".status.sourceNode",
        description = "Node the VM migrates from"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".status.targetNode",
        description = "Node the VM migrates to"
    ),
    printcolumn(
        name = "Progress",
        type_ = "integer",
        json_path = ".status.progress",
        description = "Percent of memory transferred"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.vmName"
)]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("the spec of a migration cannot change: delete it and create a new one"))]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineMigrationSpec {
    /// Name of the VirtualMachine to migrate, in the migration's namespace.
    /// It must allow live migration (`spec.migrationPolicy.allowLiveMigration`)
    /// and be running.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub vm_name: String,

    /// Node labels the target node must have, in addition to the VM's own
    /// placement rules (e.g. `kubernetes.io/hostname: node-2`). The target is
    /// always a different node than the source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_node_selector: BTreeMap<String, String>,
}

/// Phases of a live migration.
///
/// `Pending` (accepted, waiting for its turn: one migration per VM, a
/// cluster-wide limit), `Scheduling` (target launcher pod being placed),
/// `PreparingTarget` (QEMU starting on the target to receive), `Running`
/// (memory being transferred), `Succeeded` (the VM runs on the target),
/// `Failed` (the VM still runs on the source; see the message).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MigrationPhase {
    Pending,
    Scheduling,
    PreparingTarget,
    Running,
    Succeeded,
    Failed,
}

/// The observed state of a migration.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineMigrationStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Phase: Pending, Scheduling, PreparingTarget, Running, Succeeded or
    /// Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,

    /// Node the VM migrates from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_node: Option<String>,

    /// Node the VM migrates to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,

    /// The launcher pod receiving the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pod: Option<String>,

    /// When the transfer started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the migration ended (succeeded or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Progress in percent of the memory transferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub progress: Option<i32>,

    /// Total bytes to transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_total_bytes: Option<i64>,

    /// Bytes still to transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_remaining_bytes: Option<i64>,

    /// Current transfer speed in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_bytes_per_second: Option<i64>,

    /// How long the guest was paused for the switch-over, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_milliseconds: Option<i64>,

    /// Conditions: `Accepted` (the spec is valid and the VM migratable),
    /// `Ready` (finished), and the reason of a failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
