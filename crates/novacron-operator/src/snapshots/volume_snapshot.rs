//! CSI VolumeSnapshots (`snapshot.storage.k8s.io/v1`) of a VM's disks: one
//! per disk claim and tick, grouped into one VM snapshot by a label. They
//! carry no owner reference on purpose: snapshots are user data and outlive
//! the VM (a new VM can start from one); only retention or the user deletes
//! them.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use crate::build::VM_LABEL;
use crate::crd::{SnapshotPhase, SnapshotStatus};

/// Label grouping the VolumeSnapshots of one VM snapshot: the tick as
/// `YYYYMMDDHHMM` (UTC).
pub const SNAPSHOT_LABEL: &str = "novacron.io/snapshot";
/// Annotation with the tick the snapshot was scheduled for (RFC 3339).
pub const SCHEDULED_AT_ANNOTATION: &str = "novacron.io/scheduled-at";
/// Annotation saying how the disks were made consistent: `frozen` (guest
/// filesystems frozen by the guest agent), `paused` (the VM paused) or
/// `crash-consistent` (neither was possible: the VM was not running).
pub const CONSISTENCY_ANNOTATION: &str = "novacron.io/consistency";

/// The VolumeSnapshot kind.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshot"),
        "volumesnapshots",
    )
}

/// The group id of a tick.
pub fn tick_id(tick: DateTime<Utc>) -> String {
    tick.format("%Y%m%d%H%M").to_string()
}

/// The VM snapshot's name, as listed in `status.snapshots`.
pub fn snapshot_name(vm: &str, tick: DateTime<Utc>) -> String {
    format!("{vm}-{}", tick_id(tick))
}

/// The VolumeSnapshot of disk claim `claim` for `tick`.
pub fn build(
    vm: &str,
    namespace: &str,
    claim: &str,
    tick: DateTime<Utc>,
    class: Option<&str>,
    consistency: &str,
) -> DynamicObject {
    let mut spec = json!({ "source": { "persistentVolumeClaimName": claim } });
    if let Some(class) = class {
        spec["volumeSnapshotClassName"] = json!(class);
    }
    let mut obj = DynamicObject::new(&format!("{claim}-{}", tick_id(tick)), &api_resource())
        .within(namespace)
        .data(json!({ "spec": spec }));
    obj.metadata.labels = Some(BTreeMap::from([
        (VM_LABEL.to_string(), vm.to_string()),
        (SNAPSHOT_LABEL.to_string(), tick_id(tick)),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "novacron-operator".to_string(),
        ),
    ]));
    obj.metadata.annotations = Some(BTreeMap::from([
        (
            SCHEDULED_AT_ANNOTATION.to_string(),
            tick.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
        (CONSISTENCY_ANNOTATION.to_string(), consistency.to_string()),
    ]));
    obj
}

/// The tick a VolumeSnapshot of ours was taken for.
pub fn scheduled_at(obj: &DynamicObject) -> Option<DateTime<Utc>> {
    obj.metadata
        .annotations
        .as_ref()?
        .get(SCHEDULED_AT_ANNOTATION)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Groups the VolumeSnapshots of one VM into its snapshots, oldest first:
/// Failed if any disk's snapshot reports an error, Ready when every one is
/// ready to use, Pending otherwise.
pub fn group(vm: &str, objects: &[DynamicObject]) -> Vec<SnapshotStatus> {
    let mut by_tick: BTreeMap<DateTime<Utc>, Vec<&DynamicObject>> = BTreeMap::new();
    for obj in objects {
        if let Some(tick) = scheduled_at(obj) {
            by_tick.entry(tick).or_default().push(obj);
        }
    }
    by_tick
        .into_iter()
        .map(|(tick, parts)| {
            let error = parts.iter().find_map(|p| {
                p.data["status"]["error"]["message"]
                    .as_str()
                    .map(|m| format!("{}: {m}", p.metadata.name.as_deref().unwrap_or("")))
            });
            let ready = parts
                .iter()
                .all(|p| p.data["status"]["readyToUse"] == json!(true));
            let phase = match (&error, ready) {
                (Some(_), _) => SnapshotPhase::Failed,
                (None, true) => SnapshotPhase::Ready,
                (None, false) => SnapshotPhase::Pending,
            };
            let bytes: Option<u64> = parts
                .iter()
                .map(|p| {
                    p.data["status"]["restoreSize"]
                        .as_str()
                        .and_then(|s| operator_core::quantity::parse_bytes(s).ok())
                })
                .sum();
            let mut names: Vec<String> = parts
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            names.sort();
            SnapshotStatus {
                name: snapshot_name(vm, tick),
                created_at: Time(to_timestamp(tick)),
                size: bytes.map(|b| Quantity(b.to_string())),
                phase,
                volume_snapshots: names,
                message: error,
            }
        })
        .collect()
}

fn to_timestamp(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn tick(m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, m, 0).unwrap()
    }

    fn with_status(mut obj: DynamicObject, status: serde_json::Value) -> DynamicObject {
        obj.data["status"] = status;
        obj
    }

    #[test]
    fn builds_a_labelled_snapshot_of_one_claim() {
        let obj = build(
            "web",
            "prod",
            "web-rootdisk",
            tick(5),
            Some("csi-snap"),
            "frozen",
        );
        assert_eq!(
            obj.metadata.name.as_deref(),
            Some("web-rootdisk-202611231005")
        );
        assert_eq!(obj.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(
            obj.data["spec"]["source"]["persistentVolumeClaimName"],
            "web-rootdisk"
        );
        assert_eq!(obj.data["spec"]["volumeSnapshotClassName"], "csi-snap");
        let labels = obj.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[VM_LABEL], "web");
        assert_eq!(labels[SNAPSHOT_LABEL], "202611231005");
        assert_eq!(scheduled_at(&obj), Some(tick(5)));
        assert!(
            obj.metadata.owner_references.is_none(),
            "snapshots outlive the VM"
        );
        let without_class = build("web", "prod", "web-rootdisk", tick(5), None, "paused");
        assert!(
            without_class.data["spec"]
                .get("volumeSnapshotClassName")
                .is_none()
        );
    }

    #[test]
    fn groups_disks_into_snapshots_with_one_phase() {
        let ready = |claim: &str, t| {
            with_status(
                build("web", "ns", claim, tick(t), None, "paused"),
                json!({"readyToUse": true, "restoreSize": "1Gi"}),
            )
        };
        let objects = vec![
            ready("web-rootdisk", 1),
            ready("web-data", 1),
            ready("web-rootdisk", 2),
            with_status(
                build("web", "ns", "web-data", tick(2), None, "paused"),
                json!({}),
            ),
            ready("web-rootdisk", 3),
            with_status(
                build("web", "ns", "web-data", tick(3), None, "paused"),
                json!({"readyToUse": false, "error": {"message": "driver failed"}}),
            ),
        ];
        let groups = group("web", &objects);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].name, "web-202611231001");
        assert_eq!(groups[0].phase, SnapshotPhase::Ready);
        assert_eq!(groups[0].size, Some(Quantity((2u64 << 30).to_string())));
        assert_eq!(
            groups[0].volume_snapshots,
            ["web-data-202611231001", "web-rootdisk-202611231001"]
        );
        assert_eq!(groups[1].phase, SnapshotPhase::Pending);
        assert_eq!(groups[2].phase, SnapshotPhase::Failed);
        assert!(
            groups[2]
                .message
                .as_deref()
                .unwrap()
                .contains("driver failed")
        );
    }
}
