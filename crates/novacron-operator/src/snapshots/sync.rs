//! One pass of the snapshot schedule for one VM: read its VolumeSnapshots,
//! take the due snapshot (disks made consistent first), prune by retention,
//! and say what `status.snapshots` is and when to look again.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use operator_core::cron::CronSchedule;

use super::plan::plan;
use super::retention::{Taken, to_delete};
use super::volume_snapshot::{self, SNAPSHOT_LABEL, api_resource, group, snapshot_name};
use crate::build::VM_LABEL;
use crate::crd::{SnapshotPhase, SnapshotPolicy, SnapshotStatus};

/// Makes a running VM's disks consistent for the moment of a snapshot.
pub trait Quiesce: Send + Sync {
    /// Freezes the guest's filesystems when its agent answers, otherwise
    /// pauses the VM; returns which (`frozen` or `paused`).
    fn quiesce(
        &self,
        namespace: &str,
        vm: &str,
    ) -> impl Future<Output = Result<String, String>> + Send;
    /// Undoes [`Quiesce::quiesce`].
    fn release(&self, namespace: &str, vm: &str)
    -> impl Future<Output = Result<(), String>> + Send;
}

/// What one pass did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `status.snapshots`, oldest first.
    pub snapshots: Vec<SnapshotStatus>,
    /// When to look again: the next tick, or soon while snapshots are
    /// pending.
    pub requeue_after: Option<Duration>,
    /// The next tick (none while the schedule is suspended).
    pub next: Option<DateTime<Utc>>,
    /// The snapshot taken in this pass.
    pub taken: Option<String>,
    /// Snapshots retention deleted in this pass.
    pub pruned: Vec<String>,
    /// Problems that did not stop the pass (for Warning events).
    pub warnings: Vec<String>,
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("invalid snapshot schedule: {0}")]
    Schedule(String),
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
}

/// The inputs of one pass.
pub struct VmDisks<'a> {
    pub namespace: &'a str,
    pub vm: &'a str,
    /// When the VM (or its policy) appeared: ticks before never count.
    pub since: DateTime<Utc>,
    /// Claims of every disk (root first).
    pub claims: &'a [String],
    /// Whether a VM instance runs (and must be quiesced).
    pub running: bool,
}

pub async fn sync(
    client: &Client,
    policy: &SnapshotPolicy,
    disks: &VmDisks<'_>,
    quiesce: &impl Quiesce,
    now: DateTime<Utc>,
) -> Result<Outcome, SyncError> {
    let schedule = CronSchedule::parse(&policy.schedule, policy.time_zone.as_deref())
        .map_err(|e| SyncError::Schedule(e.to_string()))?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), disks.namespace, &api_resource());
    let kube = |action: String| move |source| SyncError::Kube { action, source };
    let list = ListParams::default().labels(&format!("{VM_LABEL}={}", disks.vm));
    let mut objects = api
        .list(&list)
        .await
        .map_err(kube(format!("listing the VolumeSnapshots of {}", disks.vm)))?
        .items;

    let mut outcome = Outcome::default();
    let last_tick = objects
        .iter()
        .filter_map(volume_snapshot::scheduled_at)
        .max();
    let due = plan(&schedule, last_tick, disks.since, now);
    if let (Some(tick), false) = (due.take, policy.suspend) {
        let consistency = if disks.running {
            match quiesce.quiesce(disks.namespace, disks.vm).await {
                Ok(how) => Some(how),
                Err(e) => {
                    outcome.warnings.push(format!(
                        "could not quiesce {} before the snapshot ({e}); taking it crash-consistent",
                        disks.vm
                    ));
                    None
                }
            }
        } else {
            None
        };
        let label = consistency.as_deref().unwrap_or("crash-consistent");
        let mut created = Vec::new();
        let mut failure = None;
        for claim in disks.claims {
            let obj = volume_snapshot::build(
                disks.vm,
                disks.namespace,
                claim,
                tick,
                policy.volume_snapshot_class_name.as_deref(),
                label,
            );
            match api.create(&PostParams::default(), &obj).await {
                Ok(o) => created.push(o),
                // Taken by an earlier pass that did not get to record it.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Release as soon as every snapshot is cut, before anything else;
        // also after a failed quiesce (it may have timed out half-way).
        if disks.running
            && let Err(e) = quiesce.release(disks.namespace, disks.vm).await
            && consistency.is_some()
        {
            outcome.warnings.push(format!(
                "could not resume {} after the snapshot: {e}",
                disks.vm
            ));
        }
        if let Some(e) = failure {
            return Err(kube(format!("creating a VolumeSnapshot of {}", disks.vm))(
                e,
            ));
        }
        objects.extend(created);
        outcome.taken = Some(snapshot_name(disks.vm, tick));
    }

    let snapshots = group(disks.vm, &objects);
    let taken: Vec<Taken> = snapshots
        .iter()
        .map(|s| Taken {
            name: s.name.clone(),
            created_at: DateTime::from_timestamp(s.created_at.0.as_second(), 0).unwrap_or(now),
            phase: s.phase,
        })
        .collect();
    let doomed = to_delete(&taken, policy.retention.max(1) as usize);
    for name in &doomed {
        let tick = name.rsplit('-').next().unwrap_or_default();
        for obj in objects
            .iter()
            .filter(|o| o.labels().get(SNAPSHOT_LABEL).map(String::as_str) == Some(tick))
        {
            match api.delete(&obj.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(kube(format!("deleting VolumeSnapshot {}", obj.name_any()))(
                        e,
                    ));
                }
            }
        }
    }
    outcome.snapshots = snapshots
        .into_iter()
        .filter(|s| !doomed.contains(&s.name))
        .collect();
    outcome.pruned = doomed;
    outcome.next = due.next.filter(|_| !policy.suspend);
    // Pending snapshots: look again soon; otherwise at the next tick.
    let pending = outcome
        .snapshots
        .iter()
        .any(|s| s.phase == SnapshotPhase::Pending);
    let until_next = due
        .next
        .filter(|_| !policy.suspend)
        .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_millis(500));
    outcome.requeue_after = match (pending, until_next) {
        (true, Some(d)) => Some(d.min(Duration::from_secs(5))),
        (true, None) => Some(Duration::from_secs(5)),
        (false, d) => d,
    };
    Ok(outcome)
}
