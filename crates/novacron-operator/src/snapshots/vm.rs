//! The snapshot schedule as part of the VM reconcile: when to run a
//! [`sync`] pass for a VM, what it writes to the status
//! (`status.snapshots`, `status.nextSnapshotTime`, the
//! [`SNAPSHOT_SCHEDULE`] condition) and which events it publishes. A
//! problem here never fails the VM's own reconcile: it becomes the
//! condition, a Warning event when it first appears, and a calm requeue.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::{Client, ResourceExt};
use operator_core::conditions::{
    ConditionStatus, ConditionUpdate, find, from_k8s_time, is_true, remove_condition,
    set_condition, to_k8s_time,
};
use operator_core::cron::CronSchedule;
use operator_core::events::Events;

use super::sync::{Quiesce, SyncError, VmDisks, sync};
use crate::build::Names;
use crate::crd::{SnapshotPhase, VirtualMachine, VirtualMachineStatus, VmPhase};
use crate::observe::DISK_READY;
use crate::provider::LauncherProvider;

/// Condition: whether the snapshot schedule runs (reason and message say
/// why not, or when the next snapshot is due).
pub const SNAPSHOT_SCHEDULE: &str = "SnapshotSchedule";
/// How long to wait before looking again after the VolumeSnapshot API was
/// missing or a pass failed.
pub const RETRY: Duration = Duration::from_secs(300);
/// Retry after a transient API error.
pub const ERROR_RETRY: Duration = Duration::from_secs(30);

/// What a snapshot pass needs from the operator.
pub struct Deps<'a, Q> {
    pub client: &'a Client,
    pub events: &'a Events,
    pub quiesce: &'a Q,
}

/// Runs the VM's snapshot schedule (when `spec.snapshotPolicy` is set and
/// the VM is `Running` or `Stopped` with its disks made) and updates
/// `status`; returns when to look again.
pub async fn reconcile_vm<Q: Quiesce>(
    deps: &Deps<'_, Q>,
    vm: &VirtualMachine,
    phase: VmPhase,
    status: &mut VirtualMachineStatus,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let Some(policy) = &vm.spec.snapshot_policy else {
        // The VolumeSnapshots stay (user data); only the schedule's view goes.
        remove_condition(&mut status.conditions, SNAPSHOT_SCHEDULE);
        status.next_snapshot_time = None;
        status.snapshots.clear();
        return None;
    };
    let running = match phase {
        VmPhase::Running => true,
        VmPhase::Stopped if is_true(&status.conditions, DISK_READY) => false,
        // Starting, stopping, migrating, or disks not made yet: a due tick
        // waits (and is caught up once) until the VM settles. The first
        // tick is recorded now so that a new VM's early ticks count.
        _ => {
            if status.next_snapshot_time.is_none()
                && !policy.suspend
                && let Ok(schedule) =
                    CronSchedule::parse(&policy.schedule, policy.time_zone.as_deref())
            {
                status.next_snapshot_time = schedule.next_after(now).map(to_k8s_time);
            }
            return None;
        }
    };
    let name = vm.name_any();
    let namespace = vm.namespace().unwrap_or_default();
    let names = Names::of(&name);
    let claims: Vec<String> = std::iter::once(names.root_disk())
        .chain(
            vm.spec
                .template
                .iter()
                .flat_map(|t| &t.spec.volumes)
                .map(|v| names.volume(&v.name)),
        )
        .collect();
    // Ticks before the recorded next one were never due: the first pass
    // (policy just added or resumed) takes nothing for the past.
    let since = status
        .next_snapshot_time
        .as_ref()
        .map_or(now, |t| from_k8s_time(t) - chrono::Duration::seconds(1));
    let disks = VmDisks {
        namespace: &namespace,
        vm: &name,
        since,
        claims: &claims,
        running,
    };
    let previous = std::mem::take(&mut status.snapshots);
    let outcome = match sync(deps.client, policy, &disks, deps.quiesce, now).await {
        Ok(o) => o,
        Err(e) => {
            status.snapshots = previous;
            let (reason, message, retry) = failure(&e);
            report(
                deps,
                vm,
                status,
                ConditionUpdate::false_(SNAPSHOT_SCHEDULE, reason, &message),
                now,
            )
            .await;
            return Some(retry);
        }
    };
    if let Some(taken) = &outcome.taken {
        deps.events
            .normal(
                vm,
                "SnapshotTaken",
                "Snapshot",
                format!("snapshot {taken} of {} disk(s) requested", claims.len()),
            )
            .await;
    }
    for w in &outcome.warnings {
        deps.events
            .warning(vm, "SnapshotNotQuiesced", "Snapshot", w)
            .await;
    }
    for s in &outcome.snapshots {
        let was_failed = previous
            .iter()
            .any(|p| p.name == s.name && p.phase == SnapshotPhase::Failed);
        if s.phase == SnapshotPhase::Failed && !was_failed {
            let why = s
                .message
                .as_deref()
                .unwrap_or("the CSI driver reported an error");
            deps.events
                .warning(
                    vm,
                    "SnapshotFailed",
                    "Snapshot",
                    format!("snapshot {} failed: {why}", s.name),
                )
                .await;
        }
    }
    if !outcome.pruned.is_empty() {
        deps.events
            .normal(
                vm,
                "SnapshotPruned",
                "Snapshot",
                format!(
                    "retention {} deleted {}",
                    policy.retention,
                    outcome.pruned.join(", ")
                ),
            )
            .await;
    }
    status.snapshots = outcome.snapshots;
    status.snapshots.reverse();
    status.next_snapshot_time = outcome.next.map(to_k8s_time);
    let condition = match outcome.next {
        Some(next) => ConditionUpdate::true_(
            SNAPSHOT_SCHEDULE,
            "Scheduled",
            format!(
                "next snapshot at {}",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        None if policy.suspend => ConditionUpdate::false_(
            SNAPSHOT_SCHEDULE,
            "Suspended",
            "snapshotPolicy.suspend is set; existing snapshots are kept",
        ),
        None => ConditionUpdate::false_(
            SNAPSHOT_SCHEDULE,
            "NoNextTick",
            format!("the schedule {:?} never fires again", policy.schedule),
        ),
    };
    report(deps, vm, status, condition, now).await;
    outcome.requeue_after
}

/// Reason, message and retry delay of a failed pass.
fn failure(e: &SyncError) -> (&'static str, String, Duration) {
    match e {
        SyncError::Kube {
            source: kube::Error::Api(s),
            ..
        } if s.code == 404 => (
            "VolumeSnapshotAPIMissing",
            "the VolumeSnapshot API (snapshot.storage.k8s.io/v1) is not installed: install the CSI external-snapshotter CRDs and controller; the VM runs without snapshots".into(),
            RETRY,
        ),
        SyncError::Kube {
            source: kube::Error::Api(s),
            action,
        } if s.code == 403 => (
            "SnapshotForbidden",
            format!("{action}: the operator may not manage VolumeSnapshots ({})", s.message),
            RETRY,
        ),
        SyncError::Schedule(_) => ("InvalidSnapshotPolicy", e.to_string(), RETRY),
        SyncError::Kube { .. } => ("SnapshotError", e.to_string(), ERROR_RETRY),
    }
}

/// Sets the condition; a Warning event when a failure first appears (not
/// on every retry).
async fn report<Q>(
    deps: &Deps<'_, Q>,
    vm: &VirtualMachine,
    status: &mut VirtualMachineStatus,
    condition: ConditionUpdate,
    now: DateTime<Utc>,
) {
    let before =
        find(&status.conditions, SNAPSHOT_SCHEDULE).map(|c| (c.status.clone(), c.reason.clone()));
    let failed = condition.status == ConditionStatus::False && condition.reason != "Suspended";
    let changed = before.as_ref().map(|(s, r)| (s.as_str(), r.as_str()))
        != Some((condition.status.as_str(), condition.reason.as_str()));
    if failed && changed {
        deps.events
            .warning(vm, &condition.reason, "Snapshot", &condition.message)
            .await;
    }
    set_condition(
        &mut status.conditions,
        condition.observed_generation(vm.metadata.generation),
        now,
    );
}

/// Quiescing a VM through its launcher pod.
impl Quiesce for LauncherProvider {
    async fn quiesce(&self, namespace: &str, vm: &str) -> Result<String, String> {
        LauncherProvider::quiesce(self, namespace, &Names::of(vm).pod())
            .await
            .map(|s| s.state.as_str().to_owned())
            .map_err(|e| e.to_string())
    }

    async fn release(&self, namespace: &str, vm: &str) -> Result<(), String> {
        LauncherProvider::release(self, namespace, &Names::of(vm).pod())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> SyncError {
        SyncError::Kube {
            action: "listing the VolumeSnapshots of web".into(),
            source: kube::Error::Api(
                kube::core::Status::failure(
                    "the server could not find the requested resource",
                    "NotFound",
                )
                .with_code(code)
                .boxed(),
            ),
        }
    }

    #[test]
    fn failures_become_calm_conditions() {
        let (reason, message, retry) = failure(&api_error(404));
        assert_eq!(reason, "VolumeSnapshotAPIMissing");
        assert!(message.contains("snapshot.storage.k8s.io/v1"), "{message}");
        assert_eq!(retry, RETRY);
        assert_eq!(failure(&api_error(403)).0, "SnapshotForbidden");
        let (reason, _, retry) = failure(&api_error(500));
        assert_eq!((reason, retry), ("SnapshotError", ERROR_RETRY));
        let (reason, _, _) = failure(&SyncError::Schedule("bad".into()));
        assert_eq!(reason, "InvalidSnapshotPolicy");
    }
}
