//! Pure decisions of the migration controller: whether a VM may migrate now
//! (refusals and admission), what the launchers are asked (the policy's
//! parameters), and what a launcher's migration report means for the
//! VirtualMachineMigration's status. No I/O, no clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use novacron_launcher::api::{
    Compression, MigrateRequest, MigrationPhase as LauncherMigrationPhase, MigrationStatus,
};
use novacron_launcher::config::{IncomingConfig, MIGRATION_PORT};
use operator_core::conditions::ConditionStatus;

use crate::crd::{
    MigrationPhase, MigrationPolicy, VirtualMachine, VirtualMachineMigrationStatus, VmPhase,
};
use crate::observe::{LIVE_MIGRATABLE, live_migratable};

/// How long the target launcher pod may take to be placed and to listen.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(300);
/// Completion timeout per GiB of guest memory when the policy sets none.
pub const TIMEOUT_PER_GIB: Duration = Duration::from_secs(150);
/// Least completion timeout when the policy sets none.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(300);
/// multifd channels when compressing (the launcher's default too; stated so
/// both sides agree).
pub const MULTIFD_CHANNELS: u8 = 2;

/// Why a migration cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// CamelCase reason for the condition and the event.
    pub reason: String,
    pub message: String,
    /// `true`: the migration fails; `false`: it waits (`Pending`).
    pub fatal: bool,
}

impl Refusal {
    fn fatal(reason: &str, message: impl Into<String>) -> Self {
        Refusal {
            reason: reason.into(),
            message: message.into(),
            fatal: true,
        }
    }

    fn wait(reason: &str, message: impl Into<String>) -> Self {
        Refusal {
            reason: reason.into(),
            message: message.into(),
            fatal: false,
        }
    }
}

/// Whether `vm` (looked up by the migration's `vmName`) can be migrated:
/// it exists, its spec allows it (the reason of its `LiveMigratable`
/// condition otherwise) and it runs.
pub fn refusal(vm_name: &str, vm: Option<&VirtualMachine>) -> Option<Refusal> {
    let Some(vm) = vm else {
        return Some(Refusal::fatal(
            "VMNotFound",
            format!("VirtualMachine {vm_name} does not exist in this namespace"),
        ));
    };
    let migratable = live_migratable(&vm.spec);
    if migratable.status != ConditionStatus::True {
        return Some(Refusal::fatal(
            &migratable.reason,
            format!(
                "VirtualMachine {vm_name} is not live-migratable ({LIVE_MIGRATABLE}: {}): {}",
                migratable.reason, migratable.message
            ),
        ));
    }
    let phase = vm.status.as_ref().and_then(|s| s.phase);
    match phase {
        Some(VmPhase::Running) | Some(VmPhase::Migrating) => None,
        Some(VmPhase::Starting) => Some(Refusal::wait(
            "VMStarting",
            format!("waiting for VirtualMachine {vm_name} to run"),
        )),
        other => Some(Refusal::fatal(
            "VMNotRunning",
            format!(
                "VirtualMachine {vm_name} is not running (phase {}); only a running VM can be live-migrated",
                other.map_or("unknown".to_owned(), |p| format!("{p:?}"))
            ),
        )),
    }
}

/// What admission needs to know of a migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub namespace: String,
    pub name: String,
    pub vm: String,
    pub phase: Option<MigrationPhase>,
    pub created: Option<DateTime<Utc>>,
}

impl Queued {
    /// Past `Pending` and not finished: holding a slot.
    pub fn active(&self) -> bool {
        matches!(
            self.phase,
            Some(
                MigrationPhase::Scheduling
                    | MigrationPhase::PreparingTarget
                    | MigrationPhase::Running
            )
        )
    }

    fn waiting(&self) -> bool {
        matches!(self.phase, None | Some(MigrationPhase::Pending))
    }

    fn before(&self, other: &Queued) -> bool {
        (self.created, &self.namespace, &self.name) < (other.created, &other.namespace, &other.name)
    }
}

/// Whether migration `me` may start now: one migration per VM at a time
/// (the oldest waiting one goes first) and at most `limit` in the cluster.
pub fn admit(me: &Queued, all: &[Queued], limit: u32) -> Result<(), Refusal> {
    let others = all
        .iter()
        .filter(|o| !(o.namespace == me.namespace && o.name == me.name));
    let mut active = 0u32;
    for o in others {
        let same_vm = o.namespace == me.namespace && o.vm == me.vm;
        if same_vm && (o.active() || (o.waiting() && o.before(me))) {
            return Err(Refusal::wait(
                "AnotherMigrationRunning",
                format!(
                    "VirtualMachine {} is already being migrated by {}; this migration waits its turn",
                    me.vm, o.name
                ),
            ));
        }
        if o.active() {
            active += 1;
        }
    }
    if active >= limit {
        return Err(Refusal::wait(
            "ConcurrencyLimit",
            format!(
                "{active} migrations are running in the cluster, the limit (NOVACRON_MAX_PARALLEL_MIGRATIONS) is {limit}; this one waits"
            ),
        ));
    }
    Ok(())
}

/// How long the transfer may take: the policy's `completionTimeout`, else
/// [`TIMEOUT_PER_GIB`] per GiB of guest memory, at least [`MIN_TIMEOUT`].
pub fn completion_timeout(policy: &MigrationPolicy, memory_bytes: u64) -> Duration {
    if let Some(d) = policy
        .completion_timeout
        .as_deref()
        .and_then(|t| operator_core::duration::parse_duration(t).ok())
        .filter(|d| !d.is_zero())
    {
        return d;
    }
    let gib = memory_bytes.div_ceil(1 << 30).max(1);
    (TIMEOUT_PER_GIB * u32::try_from(gib).unwrap_or(u32::MAX)).max(MIN_TIMEOUT)
}

fn compression(policy: &MigrationPolicy) -> (Compression, Option<u8>) {
    if policy.compression {
        (Compression::Zstd, Some(MULTIFD_CHANNELS))
    } else {
        (Compression::None, None)
    }
}

/// The name the target's server certificate carries and the source checks
/// (the pod IP is not known when the certificate is made).
pub fn tls_hostname(vm: &str, namespace: &str) -> String {
    format!("{vm}.{namespace}.migration.novacron.io")
}

/// The target launcher's `incoming`: listening on every address of its pod
/// on [`MIGRATION_PORT`], with what must match the source's request.
pub fn incoming(policy: &MigrationPolicy, timeout: Duration) -> IncomingConfig {
    let (compression, multifd_channels) = compression(policy);
    IncomingConfig {
        listen: format!("0.0.0.0:{MIGRATION_PORT}"),
        compression,
        multifd_channels,
        tls: policy.encrypted,
        // QEMU needs postcopy-ram on the target before the stream starts.
        post_copy: policy.post_copy,
        // The target gives up by itself when the VM never arrives (an
        // operator that vanished mid-way leaves no receiver behind forever).
        timeout_seconds: Some((PREPARE_TIMEOUT + timeout + Duration::from_secs(60)).as_secs()),
    }
}

/// The source launcher's request: migrate to `target_ip` with the policy's
/// bandwidth cap, compression, encryption, auto-converge and post-copy.
pub fn migrate_request(
    policy: &MigrationPolicy,
    target_ip: &str,
    tls_hostname: &str,
    timeout: Duration,
) -> Result<MigrateRequest, String> {
    let bandwidth = match &policy.bandwidth {
        Some(b) => Some(
            crate::bandwidth::parse(b).map_err(|e| format!("migrationPolicy.bandwidth: {e}"))?,
        ),
        None => None,
    };
    let (compression, multifd_channels) = compression(policy);
    let host = if target_ip.contains(':') {
        format!("[{target_ip}]")
    } else {
        target_ip.to_owned()
    };
    Ok(MigrateRequest {
        target: format!("{host}:{MIGRATION_PORT}"),
        bandwidth_bytes_per_second: bandwidth,
        compression,
        multifd_channels,
        tls: policy.encrypted,
        tls_hostname: policy.encrypted.then(|| tls_hostname.to_owned()),
        auto_converge: policy.auto_converge,
        post_copy: policy.post_copy,
        downtime_limit_ms: None,
        timeout_seconds: Some(timeout.as_secs().max(1)),
    })
}

/// What the launchers' reports mean while the transfer runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Still moving data.
    Continue,
    /// The VM runs on the target.
    Completed,
    /// Failed or cancelled at the launchers: the VM stays on the source.
    Failed { reason: String, message: String },
}

/// Judges the source's report (`None`: unreachable or no migration) and,
/// when read, the target's.
pub fn step(source: Option<&MigrationStatus>, target: Option<&MigrationStatus>) -> Step {
    if target.is_some_and(|t| t.phase == LauncherMigrationPhase::Completed) {
        return Step::Completed;
    }
    if let Some(s) = source {
        match s.phase {
            LauncherMigrationPhase::Failed | LauncherMigrationPhase::Cancelled => {
                return Step::Failed {
                    reason: if s.reason.is_empty() {
                        format!("Migration{:?}", s.phase)
                    } else {
                        s.reason.clone()
                    },
                    message: if s.message.is_empty() {
                        format!("the source launcher reports the migration {:?}", s.phase)
                    } else {
                        s.message.clone()
                    },
                };
            }
            // Completed at the source: wait for the target to confirm.
            _ => {}
        }
    }
    if let Some(t) = target
        && t.phase == LauncherMigrationPhase::Failed
    {
        return Step::Failed {
            reason: "TargetFailed".into(),
            message: format!("the target launcher reports: {}", t.message),
        };
    }
    Step::Continue
}

/// Whether either launcher reports post-copy under way: the VM runs on the
/// target while part of its memory is still on the source, so the
/// migration must neither be cancelled nor timed out (either would lose
/// the VM); it is waited for until the target reports `Completed`.
pub fn in_post_copy(source: Option<&MigrationStatus>, target: Option<&MigrationStatus>) -> bool {
    let going = |m: &MigrationStatus| m.postcopy && !m.phase.is_final();
    source.is_some_and(going) || target.is_some_and(going)
}

/// Copies a launcher's progress into the migration status.
pub fn record_progress(status: &mut VirtualMachineMigrationStatus, m: &MigrationStatus) {
    let Some(p) = &m.progress else {
        return;
    };
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    if p.total_bytes > 0 {
        status.data_total_bytes = Some(clamp(p.total_bytes));
        status.data_remaining_bytes = Some(clamp(p.remaining_bytes));
        // Whole percent, rounded down: 100 only once nothing remains.
        let done = p.total_bytes.saturating_sub(p.remaining_bytes);
        status.progress = Some(i32::try_from(done * 100 / p.total_bytes).unwrap_or(100));
    }
    if let Some(s) = p.speed_bytes_per_second {
        status.speed_bytes_per_second = Some(clamp(s));
    }
    if let Some(d) = p.downtime_ms {
        status.downtime_milliseconds = Some(clamp(d));
    }
}

/// Whether a phase is final.
pub fn finished(phase: Option<MigrationPhase>) -> bool {
    matches!(
        phase,
        Some(MigrationPhase::Succeeded | MigrationPhase::Failed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_launcher::api::{MigrationProgress, MigrationRole};
    use serde_json::json;

    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    fn vm(spec: serde_json::Value, phase: Option<&str>) -> VirtualMachine {
        let mut v = json!({
            "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachine",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"running": true, "template": {"spec": {
                "resources": {"cpu": 1, "memory": "1Gi", "disk": "10Gi"},
                "image": {"source": "marketplace://cirros"},
                "rootDiskAccessMode": "ReadWriteMany",
            }}, "migrationPolicy": {"allowLiveMigration": true}},
        });
        merge(&mut v["spec"], &spec);
        if let Some(p) = phase {
            v["status"] = json!({"phase": p});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_shared_root_disk_is_claimed_read_write_many_and_others_unchanged() {
        use crate::build::disks::{RootSource, root_disk};
        let source = RootSource::Import {
            url: "https://x/y.img".into(),
            checksum: None,
        };
        let vm = vm(json!({}), None);
        let spec = &vm.spec.template.as_ref().unwrap().spec;
        let pvc = root_disk("web", "prod", spec, &source, false);
        assert_eq!(
            pvc.spec.unwrap().access_modes,
            Some(vec!["ReadWriteMany".to_owned()])
        );
        let mut plain = spec.clone();
        plain.root_disk_access_mode = None;
        let pvc = root_disk("web", "prod", &plain, &source, false);
        assert_eq!(
            pvc.spec.unwrap().access_modes,
            Some(vec!["ReadWriteOnce".to_owned()])
        );
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(refusal("web", None).unwrap().reason, "VMNotFound");
        let off = vm(
            json!({"migrationPolicy": {"allowLiveMigration": false}}),
            Some("Running"),
        );
        let r = refusal("web", Some(&off)).unwrap();
        assert_eq!((r.reason.as_str(), r.fatal), ("MigrationDisabled", true));
        assert!(
            r.message.contains("allowLiveMigration is false"),
            "{}",
            r.message
        );
        let rwo = vm(
            json!({"template": {"spec": {"rootDiskAccessMode": "ReadWriteOnce"}}}),
            Some("Running"),
        );
        assert_eq!(refusal("web", Some(&rwo)).unwrap().reason, "DisksNotShared");
        let gpu = vm(
            json!({"template": {"spec": {"devices": [{"type": "gpu", "vendor": "nvidia"}]}}}),
            Some("Running"),
        );
        assert_eq!(
            refusal("web", Some(&gpu)).unwrap().reason,
            "HostDeviceNotMigratable"
        );
        let bridge = vm(
            json!({"template": {"spec": {"networks": [{"name": "default", "type": "bridge"}]}}}),
            Some("Running"),
        );
        assert_eq!(
            refusal("web", Some(&bridge)).unwrap().reason,
            "InterfaceNotMigratable"
        );
        let stopped = vm(json!({}), Some("Stopped"));
        assert_eq!(
            refusal("web", Some(&stopped)).unwrap().reason,
            "VMNotRunning"
        );
        let starting = vm(json!({}), Some("Starting"));
        assert!(!refusal("web", Some(&starting)).unwrap().fatal);
        assert_eq!(refusal("web", Some(&vm(json!({}), Some("Running")))), None);
    }

    fn q(name: &str, vm: &str, phase: Option<MigrationPhase>, at: i64) -> Queued {
        Queued {
            namespace: "prod".into(),
            name: name.into(),
            vm: vm.into(),
            phase,
            created: DateTime::from_timestamp(at, 0),
        }
    }

    #[test]
    fn one_per_vm_and_a_cluster_limit() {
        let me = q("m2", "web", Some(MigrationPhase::Pending), 20);
        // Alone: go.
        assert_eq!(admit(&me, std::slice::from_ref(&me), 2), Ok(()));
        // The same VM migrating already: wait.
        let running = q("m1", "web", Some(MigrationPhase::Running), 10);
        let r = admit(&me, &[running, me.clone()], 2).unwrap_err();
        assert_eq!(
            (r.reason.as_str(), r.fatal),
            ("AnotherMigrationRunning", false)
        );
        // An older waiting migration of the same VM goes first...
        let older = q("m1", "web", Some(MigrationPhase::Pending), 10);
        assert!(admit(&me, &[older.clone(), me.clone()], 2).is_err());
        // ...and it is not held back by the younger one.
        assert_eq!(admit(&older, &[older.clone(), me.clone()], 2), Ok(()));
        // Finished migrations hold no slot.
        let done = q("m0", "web", Some(MigrationPhase::Succeeded), 1);
        assert_eq!(admit(&me, &[done, me.clone()], 2), Ok(()));
        // The cluster limit counts other VMs' active migrations.
        let a = q("a", "db", Some(MigrationPhase::Running), 1);
        let b = q("b", "cache", Some(MigrationPhase::PreparingTarget), 2);
        let r = admit(&me, &[a.clone(), b, me.clone()], 2).unwrap_err();
        assert_eq!(r.reason, "ConcurrencyLimit");
        assert!(r.message.contains("limit"), "{}", r.message);
        assert_eq!(admit(&me, &[a, me.clone()], 2), Ok(()));
    }

    #[test]
    fn timeouts_from_the_policy_or_the_memory_size() {
        let mut p = MigrationPolicy::default();
        assert_eq!(completion_timeout(&p, 1 << 30), MIN_TIMEOUT);
        assert_eq!(completion_timeout(&p, 8 << 30), Duration::from_secs(1200));
        p.completion_timeout = Some("90s".into());
        assert_eq!(completion_timeout(&p, 8 << 30), Duration::from_secs(90));
    }

    #[test]
    fn the_policy_reaches_both_launchers_alike() {
        let p = MigrationPolicy {
            allow_live_migration: true,
            compression: true,
            encrypted: true,
            bandwidth: Some("800Mbps".into()),
            auto_converge: true,
            ..MigrationPolicy::default()
        };
        let t = Duration::from_secs(600);
        let r = migrate_request(&p, "10.1.2.3", "web.prod.migration.novacron.io", t).unwrap();
        assert_eq!(r.target, "10.1.2.3:8101");
        assert_eq!(r.bandwidth_bytes_per_second, Some(100_000_000));
        assert_eq!(
            (r.compression, r.multifd_channels),
            (Compression::Zstd, Some(2))
        );
        assert!(r.tls && r.auto_converge);
        assert_eq!(
            r.tls_hostname.as_deref(),
            Some("web.prod.migration.novacron.io")
        );
        assert_eq!(r.timeout_seconds, Some(600));
        r.check().unwrap();
        let i = incoming(&p, t);
        assert_eq!(
            (i.compression, i.multifd_channels, i.tls),
            (r.compression, r.multifd_channels, r.tls)
        );
        assert_eq!(i.listen, "0.0.0.0:8101");
        assert!(i.timeout_seconds.unwrap() > 600);
        // Post-copy is off unless the policy asks, and then on both sides
        // (QEMU needs postcopy-ram on the target before the stream starts).
        assert!(!r.post_copy && !i.post_copy);
        let pc = MigrationPolicy {
            allow_live_migration: true,
            post_copy: true,
            ..MigrationPolicy::default()
        };
        let r = migrate_request(&pc, "10.1.2.3", "web.prod.migration.novacron.io", t).unwrap();
        let i = incoming(&pc, t);
        assert!(r.post_copy && i.post_copy && r.tls && i.tls);
        assert_eq!(
            (r.compression, i.compression),
            (Compression::None, Compression::None)
        );
        r.check().unwrap();
        // IPv6 targets are bracketed; plain policies send plain streams.
        let plain = MigrationPolicy {
            encrypted: false,
            ..MigrationPolicy::default()
        };
        let r = migrate_request(&plain, "fd00::5", "x", t).unwrap();
        assert_eq!(r.target, "[fd00::5]:8101");
        assert!(!r.tls && r.tls_hostname.is_none() && r.bandwidth_bytes_per_second.is_none());
        r.check().unwrap();
        let bad = MigrationPolicy {
            bandwidth: Some("0bps".into()),
            ..MigrationPolicy::default()
        };
        assert!(
            migrate_request(&bad, "10.1.2.3", "x", t)
                .unwrap_err()
                .contains("bandwidth")
        );
    }

    fn report(role: MigrationRole, phase: LauncherMigrationPhase) -> MigrationStatus {
        MigrationStatus {
            role,
            phase,
            ..MigrationStatus::default()
        }
    }

    #[test]
    fn launcher_reports_drive_the_phase() {
        use LauncherMigrationPhase as L;
        let src = |p| report(MigrationRole::Source, p);
        let dst = |p| report(MigrationRole::Target, p);
        assert_eq!(step(Some(&src(L::Migrating)), None), Step::Continue);
        // The source may already be gone; the target's word decides.
        assert_eq!(step(None, Some(&dst(L::Completed))), Step::Completed);
        assert_eq!(
            step(Some(&src(L::Completed)), Some(&dst(L::Migrating))),
            Step::Continue
        );
        let mut failed = src(L::Failed);
        failed.reason = "MigrationTimeout".into();
        failed.message = "no completion within 60s".into();
        assert_eq!(
            step(Some(&failed), None),
            Step::Failed {
                reason: "MigrationTimeout".into(),
                message: "no completion within 60s".into()
            }
        );
        assert!(matches!(
            step(Some(&src(L::Cancelled)), None),
            Step::Failed { .. }
        ));
        assert!(matches!(
            step(None, Some(&dst(L::Failed))),
            Step::Failed { .. }
        ));
    }

    #[test]
    fn post_copy_under_way_is_never_cancelled() {
        use LauncherMigrationPhase as L;
        let pc = |role, phase| MigrationStatus {
            postcopy: true,
            ..report(role, phase)
        };
        let src = pc(MigrationRole::Source, L::Migrating);
        let dst = pc(MigrationRole::Target, L::Migrating);
        assert!(in_post_copy(Some(&src), None));
        assert!(in_post_copy(None, Some(&dst)));
        // Ended, or never switched: the usual rules apply.
        assert!(!in_post_copy(
            Some(&pc(MigrationRole::Source, L::Completed)),
            None
        ));
        assert!(!in_post_copy(
            Some(&report(MigrationRole::Source, L::Migrating)),
            None
        ));
        assert!(!in_post_copy(None, None));
    }

    #[test]
    fn progress_in_status() {
        let mut s = VirtualMachineMigrationStatus::default();
        let mut m = report(MigrationRole::Source, LauncherMigrationPhase::Migrating);
        record_progress(&mut s, &m);
        assert_eq!(s, VirtualMachineMigrationStatus::default());
        m.progress = Some(MigrationProgress {
            status: "active".into(),
            transferred_bytes: 300,
            remaining_bytes: 250,
            total_bytes: 1000,
            speed_bytes_per_second: Some(42),
            downtime_ms: Some(7),
            ..MigrationProgress::default()
        });
        record_progress(&mut s, &m);
        assert_eq!(
            (
                s.progress,
                s.data_total_bytes,
                s.data_remaining_bytes,
                s.speed_bytes_per_second,
                s.downtime_milliseconds
            ),
            (Some(75), Some(1000), Some(250), Some(42), Some(7))
        );
    }
}
