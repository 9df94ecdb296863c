//! Pure readings of what the reconciler observes: the launcher pod's state,
//! the VM phase a launcher status means, live-migratability, and the usage
//! written to status.

use k8s_openapi::api::core::v1::Pod;
use novacron_launcher::api::{LauncherPhase, LauncherStatus};
use operator_core::conditions::ConditionUpdate;

use crate::build::launch::migratable_binding;
use crate::crd::{AccessMode, ResourceMetric, ResourceUsage, VirtualMachineSpec, VmPhase};

/// Condition: the VM runs and its launcher reports it running.
pub const READY: &str = "Ready";
/// Condition: the VM can be live-migrated (reason says why not).
pub const LIVE_MIGRATABLE: &str = "LiveMigratable";
/// Condition: the guest is paused.
pub const PAUSED: &str = "Paused";
/// Condition: the root disk holds the image.
pub const DISK_READY: &str = "DiskReady";
/// Condition: the lifecycle hooks ran successfully.
pub const HOOKS_SUCCEEDED: &str = "HooksSucceeded";

/// The launcher pod's state, from its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Being deleted.
    Terminating,
    /// Not scheduled yet (message: the scheduler's reason).
    Unschedulable(String),
    /// Scheduled, containers not ready (message: what it waits for).
    Starting(String),
    /// The launcher crashes repeatedly (message: its last words).
    CrashLooping(String),
    Ready,
    /// The launcher exited 0: the guest powered off.
    Succeeded,
    /// The pod failed (evicted, node lost, deadline).
    Failed(String),
}

/// Reads a launcher pod.
pub fn pod_state(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Terminating;
    }
    let status = pod.status.clone().unwrap_or_default();
    match status.phase.as_deref() {
        Some("Succeeded") => return PodState::Succeeded,
        Some("Failed") => {
            return PodState::Failed(
                status
                    .message
                    .or(status.reason)
                    .unwrap_or_else(|| "the launcher pod failed".into()),
            );
        }
        _ => {}
    }
    let conditions = status.conditions.unwrap_or_default();
    let cond = |t: &str| conditions.iter().find(|c| c.type_ == t);
    if let Some(c) = cond("PodScheduled")
        && c.status == "False"
    {
        return PodState::Unschedulable(
            c.message
                .clone()
                .unwrap_or_else(|| "waiting to be scheduled".into()),
        );
    }
    if cond("Ready").is_some_and(|c| c.status == "True") {
        return PodState::Ready;
    }
    for cs in status.container_statuses.unwrap_or_default() {
        let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(w) = waiting
            && w.reason.as_deref() == Some("CrashLoopBackOff")
        {
            let last = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.message.clone().or(t.reason.clone()))
                .unwrap_or_else(|| "the launcher keeps failing".into());
            return PodState::CrashLooping(last.trim().to_owned());
        }
        if let Some(w) = waiting {
            return PodState::Starting(format!(
                "launcher container waiting: {}",
                w.message.clone().or(w.reason.clone()).unwrap_or_default()
            ));
        }
    }
    PodState::Starting("the launcher pod is starting".into())
}

/// The VM phase and `Ready` reason a launcher status means.
pub fn phase_of(status: &LauncherStatus) -> (VmPhase, &'static str) {
    match status.phase {
        LauncherPhase::Starting => (VmPhase::Starting, "Booting"),
        LauncherPhase::Running => (VmPhase::Running, "Running"),
        LauncherPhase::Paused => (VmPhase::Running, "Paused"),
        LauncherPhase::ShuttingDown => (VmPhase::Stopping, "ShuttingDown"),
        LauncherPhase::Stopped => (VmPhase::Stopped, "GuestShutdown"),
        LauncherPhase::Failed => (VmPhase::Failed, "LauncherFailed"),
    }
}

/// Whether the VM could be live-migrated, and if not why.
pub fn live_migratable(spec: &VirtualMachineSpec) -> ConditionUpdate {
    if !spec.migration_policy.allow_live_migration {
        return ConditionUpdate::false_(
            LIVE_MIGRATABLE,
            "MigrationDisabled",
            "migrationPolicy.allowLiveMigration is false",
        );
    }
    let Some(t) = &spec.template else {
        return ConditionUpdate::false_(LIVE_MIGRATABLE, "NoTemplate", "the VM has no template");
    };
    let t = &t.spec;
    if !t.devices.is_empty() {
        return ConditionUpdate::false_(
            LIVE_MIGRATABLE,
            "HostDeviceNotMigratable",
            "VMs with passthrough devices (GPUs, FPGAs) cannot be live-migrated",
        );
    }
    if let Some(n) = t.networks.iter().find(|n| !migratable_binding(n)) {
        return ConditionUpdate::false_(
            LIVE_MIGRATABLE,
            "InterfaceNotMigratable",
            format!(
                "network {:?} binds the pod network with type {}; only masquerade survives a migration",
                n.name,
                n.type_.as_str()
            ),
        );
    }
    let root_shared = t.root_disk_access_mode == Some(AccessMode::ReadWriteMany);
    let not_shared: Vec<String> = (!root_shared)
        .then(|| "rootdisk".to_owned())
        .into_iter()
        .chain(
            t.volumes
                .iter()
                .filter(|v| v.access_mode != Some(AccessMode::ReadWriteMany))
                .map(|v| v.name.clone()),
        )
        .collect();
    if not_shared.is_empty() {
        return ConditionUpdate::true_(
            LIVE_MIGRATABLE,
            "Migratable",
            "every disk is ReadWriteMany and every interface keeps its address",
        );
    }
    ConditionUpdate::false_(
        LIVE_MIGRATABLE,
        "DisksNotShared",
        format!(
            "disks {} are ReadWriteOnce; live migration needs ReadWriteMany disks",
            not_shared.join(", ")
        ),
    )
}

/// Rounded to 10m so small jitter does not rewrite the status.
fn round_cores(c: f64) -> f64 {
    (c * 100.0).round() / 100.0
}

/// Rounded down to 16Mi for the same reason.
fn round_mib(bytes: u64) -> u64 {
    (bytes >> 20) / 16 * 16
}

/// Usage for status from a launcher report and the VM's size.
pub fn usage(status: &LauncherStatus, vcpus: u32, memory_bytes: u64) -> Option<ResourceUsage> {
    if status.cpu_usage_cores.is_none() && status.memory_usage_bytes.is_none() {
        return None;
    }
    // Percentages from the rounded figures, to whole percents.
    let pct = |used: f64, total: f64| (used / total * 100.0).round();
    Some(ResourceUsage {
        cpu: status
            .cpu_usage_cores
            .map(round_cores)
            .map(|c| ResourceMetric {
                used: Some(format!("{}m", (c * 1000.0).round() as i64)),
                available: Some(vcpus.to_string()),
                percentage: Some(pct(c, f64::from(vcpus.max(1)))),
            }),
        memory: status
            .memory_usage_bytes
            .map(round_mib)
            .map(|m| ResourceMetric {
                used: Some(format!("{m}Mi")),
                available: Some(format!("{}Mi", memory_bytes >> 20)),
                percentage: Some(pct(m as f64, ((memory_bytes >> 20).max(1)) as f64)),
            }),
        disk: None,
    })
}

/// The first failed hook the launcher reports: (reason, message).
pub fn failed_hook(status: &LauncherStatus) -> Option<(String, String)> {
    status.hooks.iter().find(|h| !h.succeeded).map(|h| {
        let reason = match h.name.as_str() {
            "preStart" => "PreStartHookFailed",
            "preStop" => "PreStopHookFailed",
            _ => "HookFailed",
        };
        (
            reason.to_owned(),
            format!("{} hook failed: {}", h.name, h.message),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_launcher::api::HookStatus;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn pod_states() {
        assert_eq!(
            pod_state(&pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes have nvidia.com/gpu"}
            ]}))),
            PodState::Unschedulable("0/3 nodes have nvidia.com/gpu".into())
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}
            ]}))),
            PodState::Ready
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Running", "containerStatuses": [{
                "name": "compute", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "preStart hook failed: exit 3\n"}}
            }]}))),
            PodState::CrashLooping("preStart hook failed: exit 3".into())
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Succeeded"}))),
            PodState::Succeeded
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Failed", "reason": "Evicted"}))),
            PodState::Failed("Evicted".into())
        );
        assert!(matches!(
            pod_state(&pod(json!({"phase": "Pending"}))),
            PodState::Starting(_)
        ));
    }

    fn vm(v: serde_json::Value) -> VirtualMachineSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn live_migratability_reasons() {
        let base = json!({"template": {"spec": {
            "resources": {"cpu": 1, "memory": "1Gi", "disk": "1Gi"},
            "image": {"source": "marketplace://x"}
        }}});
        assert_eq!(
            live_migratable(&vm(base.clone())).reason,
            "MigrationDisabled"
        );
        let mut on = base.clone();
        on["migrationPolicy"] = json!({"allowLiveMigration": true});
        let c = live_migratable(&vm(on.clone()));
        assert_eq!(c.reason, "DisksNotShared");
        assert!(c.message.contains("rootdisk"), "{}", c.message);
        let mut shared = on.clone();
        shared["template"]["spec"]["rootDiskAccessMode"] = json!("ReadWriteMany");
        let c = live_migratable(&vm(shared));
        assert_eq!(c.status, operator_core::conditions::ConditionStatus::True);
        assert_eq!(c.reason, "Migratable");
        let mut gpu = on.clone();
        gpu["template"]["spec"]["devices"] = json!([{"type": "gpu", "vendor": "nvidia"}]);
        assert_eq!(live_migratable(&vm(gpu)).reason, "HostDeviceNotMigratable");
        let mut bridge = on;
        bridge["template"]["spec"]["networks"] = json!([{"name": "default", "type": "bridge"}]);
        let c = live_migratable(&vm(bridge));
        assert_eq!(c.reason, "InterfaceNotMigratable");
        assert!(c.message.contains("default"), "{}", c.message);
    }

    #[test]
    fn launcher_phases_and_hooks() {
        let mut s = LauncherStatus {
            phase: LauncherPhase::Running,
            ..LauncherStatus::default()
        };
        assert_eq!(phase_of(&s), (VmPhase::Running, "Running"));
        s.phase = LauncherPhase::Failed;
        assert_eq!(phase_of(&s).0, VmPhase::Failed);
        assert_eq!(failed_hook(&s), None);
        s.hooks = vec![
            HookStatus {
                name: "preStart".into(),
                succeeded: true,
                message: String::new(),
            },
            HookStatus {
                name: "preStop".into(),
                succeeded: false,
                message: "timed out after 5s".into(),
            },
        ];
        assert_eq!(
            failed_hook(&s),
            Some((
                "PreStopHookFailed".into(),
                "preStop hook failed: timed out after 5s".into()
            ))
        );
    }

    #[test]
    fn usage_is_rounded_so_jitter_does_not_write() {
        let s = |cpu: f64, mem: u64| LauncherStatus {
            cpu_usage_cores: Some(cpu),
            memory_usage_bytes: Some(mem),
            ..LauncherStatus::default()
        };
        let a = usage(&s(0.251, 300 << 20), 2, 1 << 30).unwrap();
        let b = usage(&s(0.249, 301 << 20), 2, 1 << 30).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.cpu.as_ref().unwrap().used.as_deref(), Some("250m"));
        assert_eq!(a.memory.as_ref().unwrap().used.as_deref(), Some("288Mi"));
        assert_eq!(
            a.memory.as_ref().unwrap().available.as_deref(),
            Some("1024Mi")
        );
        assert_eq!(a.memory.as_ref().unwrap().percentage, Some(28.0));
        assert_eq!(a.cpu.as_ref().unwrap().percentage, Some(13.0));
        assert!(usage(&LauncherStatus::default(), 1, 1).is_none());
    }
}
