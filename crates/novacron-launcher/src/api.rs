//! The launcher's control API (plain HTTP on port 8100, reached by the
//! operator through a pod port-forward) and the importer's progress record.
//!
//! - `GET /healthz` -> `200 ok` while the launcher serves.
//! - `GET /status` -> [`LauncherStatus`] as JSON.
//! - `POST /shutdown` -> `202` with [`LauncherStatus`]; starts a graceful
//!   shutdown (preStop hook, ACPI power-down, `shutdownTimeoutSeconds`,
//!   then QEMU `quit`). Repeated calls are harmless.
//! - `POST /migrate` with a [`MigrateRequest`] (source side) -> `202` with
//!   [`MigrationStatus`]: sets QEMU's migration capabilities/parameters and
//!   starts streaming the VM to `target`. `400` for a bad request, `409`
//!   when the VM is not running (a target still waiting for its VM), or a
//!   migration is already in progress.
//! - `GET /migration` -> [`MigrationStatus`] (`404` before any migration).
//! - `POST /migrate/cancel` -> `202` with [`MigrationStatus`]: the source
//!   cancels (`migrate_cancel`; the VM keeps running here); a target gives
//!   up (QEMU quits, the launcher exits 4 with `IncomingMigrationCancelled`).
//! - `POST /quiesce` -> `200` with [`QuiesceStatus`]: makes the disks
//!   consistent for a snapshot: the guest's filesystems are frozen when its
//!   QEMU guest agent answers (`frozen`), otherwise the VM is paused
//!   (`paused`). The launcher undoes it by itself after a bound when no
//!   release comes. `409` when no VM runs or a migration is in progress.
//! - `POST /release` -> `200` with [`QuiesceStatus`] (`released`): thaws or
//!   resumes. Repeated calls are harmless.
//!
//! Errors are `{"error": "..."}` ([`ApiError`]).

use serde::{Deserialize, Serialize};

/// Path of the health endpoint.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the status endpoint.
pub const STATUS_PATH: &str = "/status";
/// Path of the shutdown endpoint.
pub const SHUTDOWN_PATH: &str = "/shutdown";
/// Path that starts an outgoing migration.
pub const MIGRATE_PATH: &str = "/migrate";
/// Path of the migration progress.
pub const MIGRATION_PATH: &str = "/migration";
/// Path that cancels the migration.
pub const MIGRATE_CANCEL_PATH: &str = "/migrate/cancel";
/// Path that makes the disks consistent for a snapshot.
pub const QUIESCE_PATH: &str = "/quiesce";
/// Path that undoes a quiesce.
pub const RELEASE_PATH: &str = "/release";

/// What the launcher reports about its VM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LauncherStatus {
    /// Launcher phase.
    pub phase: LauncherPhase,
    /// QEMU run state from QMP `query-status` (`running`, `paused`,
    /// `shutdown`, `prelaunch`, ...), when QMP is connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_status: Option<String>,
    /// Human-readable detail (failure cause, shutdown outcome).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Low-cardinality reason for `message` (e.g. `PreStartHookFailed`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// CPU used by the QEMU process, in cores (averaged over a few seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage_cores: Option<f64>,
    /// Resident memory of the QEMU process in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_usage_bytes: Option<u64>,
    /// Guest IP addresses, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// Block devices QEMU reports (QMP `query-block`): proves what is attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskStatus>,
    /// Accelerator in use (`kvm` or `tcg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// When QEMU reported running (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Outcome of the hooks run so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookStatus>,
    /// The current or last live migration of this launcher (source or
    /// target), the same document as `GET /migration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// Set while the disks are held consistent for a snapshot (`frozen` or
    /// `paused`); see `POST /quiesce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiesced: Option<QuiesceState>,
}

/// How the disks are held for a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuiesceState {
    /// The guest agent froze the guest's filesystems (application
    /// consistent as far as the guest's freeze hooks go).
    Frozen,
    /// The VM is paused (crash consistent, nothing in flight).
    Paused,
    /// Neither (anymore): the guest runs normally.
    Released,
}

impl QuiesceState {
    /// The name used in annotations and events.
    pub fn as_str(self) -> &'static str {
        match self {
            QuiesceState::Frozen => "frozen",
            QuiesceState::Paused => "paused",
            QuiesceState::Released => "released",
        }
    }
}

/// Answer of `POST /quiesce` and `POST /release`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuiesceStatus {
    /// The state after the call.
    pub state: QuiesceState,
    /// Filesystems the guest agent froze (`frozen` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_filesystems: Option<u64>,
    /// The launcher releases by itself after this many seconds when no
    /// release comes (`frozen`/`paused` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_release_seconds: Option<u64>,
    /// Detail: why the agent was not used, what was undone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Launcher phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LauncherPhase {
    /// Hooks, seed and QEMU start in progress.
    #[default]
    Starting,
    /// QEMU reports `running`.
    Running,
    /// QEMU is paused (QMP `stop`, I/O error, migration).
    Paused,
    /// Graceful shutdown in progress.
    ShuttingDown,
    /// QEMU exited after a shutdown request or guest power-off.
    Stopped,
    /// The launch failed or QEMU died; see `message`.
    Failed,
}

impl LauncherPhase {
    /// Whether the launcher is done (it exits right after).
    pub fn is_final(self) -> bool {
        matches!(self, LauncherPhase::Stopped | LauncherPhase::Failed)
    }
}

/// An error answer of the control API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What was wrong.
    pub error: String,
}

/// Page compression of a migration stream (QEMU `multifd-compression`;
/// compression implies multifd channels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Pages are sent as they are.
    #[default]
    None,
    /// zstd (fast, good ratio; what `migrationPolicy.compression` means).
    Zstd,
    /// zlib.
    Zlib,
}

impl Compression {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Zlib => "zlib",
        }
    }
}

/// `POST /migrate`: stream the running VM to a target launcher.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrateRequest {
    /// `host:port` of the target launcher's migration listener (in a
    /// cluster: the target pod IP and port 8101, `[v6]:port` for IPv6).
    pub target: String,
    /// Bandwidth cap in bytes per second (`max-bandwidth`); unset means
    /// no cap (QEMU's own 128 MiB/s default is lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_second: Option<u64>,
    /// Page compression; must match the target's `incoming.compression`.
    #[serde(default)]
    pub compression: Compression,
    /// multifd channels (default 2 when compressing); must match the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multifd_channels: Option<u8>,
    /// Encrypt with TLS using the certificates in the launcher's migration
    /// TLS directory (client side; the target must have `incoming.tls`).
    #[serde(default)]
    pub tls: bool,
    /// Name the target's server certificate must carry (QEMU
    /// `tls-hostname`); default: the host of `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_hostname: Option<String>,
    /// Throttle the guest's vCPUs when the migration does not converge.
    #[serde(default)]
    pub auto_converge: bool,
    /// Maximum pause at switch-over in milliseconds (QEMU default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_limit_ms: Option<u64>,
    /// Switch to post-copy when pre-copy does not converge (see
    /// [`crate::migration::POSTCOPY_AFTER_SYNCS`]): the VM then runs on the
    /// target and pulls its remaining pages from here; from that point the
    /// migration can no longer be cancelled. The target must have
    /// `incoming.postCopy`. Not with compression or multifd channels.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_copy: bool,
    /// The launcher cancels the migration after this many seconds (the VM
    /// keeps running here; phase `Failed`, reason `MigrationTimeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl MigrateRequest {
    /// Checks what QEMU would otherwise reject late or obscurely.
    pub fn check(&self) -> Result<(), String> {
        split_host_port(&self.target)?;
        if self.bandwidth_bytes_per_second == Some(0) {
            return Err(
                "bandwidthBytesPerSecond must be positive (leave it unset for no cap)".into(),
            );
        }
        if self.multifd_channels == Some(0) {
            return Err("multifdChannels must be at least 1".into());
        }
        if self.timeout_seconds == Some(0) {
            return Err("timeoutSeconds must be positive".into());
        }
        if let Some(h) = &self.tls_hostname
            && !self.tls
        {
            return Err(format!("tlsHostname {h:?} needs tls: true"));
        }
        if self.post_copy
            && (self.compression != Compression::None || self.multifd_channels.is_some())
        {
            return Err(format!(
                "postCopy cannot be combined with compression or multifdChannels: {POSTCOPY_MULTIFD}"
            ));
        }
        Ok(())
    }
}

/// Why post-copy is refused together with multifd (compression implies
/// multifd): QEMU 7.2 accepts both capabilities, but the target aborts
/// when the post-copy stream ends (`yank_unregister_instance: Assertion
/// QLIST_EMPTY(&entry->yankfns) failed`) and the VM is lost with it.
pub const POSTCOPY_MULTIFD: &str =
    "QEMU 7.2 aborts the target of a post-copy migration over multifd channels";

/// Splits `host:port` / `[v6]:port` (the host without brackets).
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let bad = || format!("{address:?} is not host:port (use [addr]:port for IPv6)");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Which side of a migration a launcher is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationRole {
    /// Streams its running VM away (`POST /migrate`).
    #[default]
    Source,
    /// Started with `incoming`: receives the VM.
    Target,
}

/// Phase of a migration as one launcher sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationPhase {
    /// Target: QEMU listens and waits for the source.
    #[default]
    WaitingForMigration,
    /// The stream is running.
    Migrating,
    /// Source: the VM now runs on the target (this launcher stops QEMU and
    /// exits 0 with reason `Migrated`). Target: the VM runs here.
    Completed,
    /// Failed or timed out (source: the VM keeps running here; target: the
    /// launcher exits 4).
    Failed,
    /// Cancelled on request (source: the VM keeps running here).
    Cancelled,
}

impl MigrationPhase {
    /// Whether the migration ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MigrationPhase::Completed | MigrationPhase::Failed | MigrationPhase::Cancelled
        )
    }
}

/// A launcher's view of its migration (`GET /migration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// Source or target.
    pub role: MigrationRole,
    /// Phase.
    pub phase: MigrationPhase,
    /// Source: the target address; target: the listen address.
    pub address: String,
    /// Low-cardinality reason (`MigrationFailed`, `MigrationTimeout`,
    /// `Cancelled`, `IncomingMigrationFailed`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail (QEMU's error text on failure).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the migration started (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// QEMU `query-migrate`, last poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<MigrationProgress>,
    /// Capabilities and parameters as QEMU reports them after the
    /// launcher set them (`query-migrate-capabilities/-parameters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<MigrationSettings>,
    /// Post-copy was entered: the source issued `migrate-start-postcopy`
    /// (QEMU reports `postcopy-active` a moment later) or QEMU reported it
    /// (target). The VM ran on the target while the rest of its memory
    /// followed; no cancelling since.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub postcopy: bool,
}

/// Migration settings read back from QEMU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSettings {
    /// Enabled capabilities (`multifd`, `auto-converge`, ...).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// `max-bandwidth` in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bandwidth_bytes: Option<u64>,
    /// `multifd-channels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multifd_channels: Option<u64>,
    /// `multifd-compression` (`none`, `zstd`, `zlib`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub compression: String,
    /// `tls-creds` (empty: no TLS).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls_creds: String,
    /// `tls-hostname`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls_hostname: String,
    /// `downtime-limit` in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_limit_ms: Option<u64>,
}

/// Progress of a migration from QMP `query-migrate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationProgress {
    /// QEMU status: `setup`, `active`, `postcopy-active`, `device`,
    /// `completed`, `failed`, `cancelling`, `cancelled`, ...
    pub status: String,
    /// RAM bytes transferred.
    pub transferred_bytes: u64,
    /// RAM bytes remaining.
    pub remaining_bytes: u64,
    /// Guest RAM size in bytes.
    #[serde(default)]
    pub total_bytes: u64,
    /// Percent of RAM transferred (0-100).
    pub percent: f64,
    /// Current transfer speed in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_bytes_per_second: Option<u64>,
    /// Milliseconds since the migration started (final once completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_time_ms: Option<u64>,
    /// Milliseconds spent in setup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_time_ms: Option<u64>,
    /// Switch-over pause in ms, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// QEMU's estimate of the pause while still active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_downtime_ms: Option<u64>,
    /// Error text when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// QEMU `ram.dirty-sync-count`: 1 during the first pass over memory,
    /// one more at the end of each further pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_sync_count: Option<u64>,
}

impl MigrationProgress {
    /// Whether the migration ended (completed, failed or cancelled).
    pub fn is_done(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// One block device attached to the VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskStatus {
    /// QEMU node name / device id.
    pub name: String,
    /// Backing file.
    pub file: String,
    /// Read-only attachment.
    #[serde(default)]
    pub read_only: bool,
}

/// A hook's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookStatus {
    /// `preStart` or `preStop`.
    pub name: String,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Detail (exit code, HTTP status, timeout).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Progress of an image import (`novacron-launcher import`), written as JSON
/// to the progress file and, when done, to the termination message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportProgress {
    /// Phase of the import.
    pub phase: ImportPhase,
    /// Bytes copied so far.
    pub bytes: u64,
    /// Total bytes, when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Percent of the download (0-100), when the total is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Detail (error text when `Failed`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Prefix of the importer's progress lines on stdout.
pub const IMPORT_PROGRESS_PREFIX: &str = "import-progress ";

impl ImportProgress {
    /// The stdout line the importer prints for this record.
    pub fn to_log_line(&self) -> String {
        format!(
            "{IMPORT_PROGRESS_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// Parses one importer log line (None for other lines).
    pub fn from_log_line(line: &str) -> Option<ImportProgress> {
        serde_json::from_str(line.trim().strip_prefix(IMPORT_PROGRESS_PREFIX)?).ok()
    }

    /// The latest progress in a chunk of importer logs (e.g. the tail of
    /// the Job pod's log).
    pub fn latest_in_log(log: &str) -> Option<ImportProgress> {
        log.lines().rev().find_map(ImportProgress::from_log_line)
    }
}

/// Import phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportPhase {
    #[default]
    Downloading,
    Verifying,
    Converting,
    Succeeded,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_shape_is_stable() {
        let s = LauncherStatus {
            phase: LauncherPhase::ShuttingDown,
            qemu_status: Some("running".into()),
            cpu_usage_cores: Some(0.25),
            memory_usage_bytes: Some(1 << 20),
            started_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"phase": "ShuttingDown", "qemuStatus": "running", "cpuUsageCores": 0.25,
                "memoryUsageBytes": 1048576, "startedAt": "2026-01-01T00:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<LauncherStatus>(v).unwrap(), s);
        // A minimal document (older or newer launcher) still parses.
        let min: LauncherStatus = serde_json::from_str(r#"{"phase":"Failed"}"#).unwrap();
        assert!(min.phase.is_final());
        let p: ImportProgress =
            serde_json::from_str(r#"{"phase":"Downloading","bytes":5}"#).unwrap();
        assert_eq!((p.phase, p.bytes), (ImportPhase::Downloading, 5));
        let line = ImportProgress {
            percent: Some(50.0),
            ..p.clone()
        }
        .to_log_line();
        assert!(line.starts_with("import-progress {"), "{line}");
        let log = format!("noise\n{}\n{line}\nmore noise\n", p.to_log_line());
        assert_eq!(
            ImportProgress::latest_in_log(&log).unwrap().percent,
            Some(50.0)
        );
        assert_eq!(ImportProgress::from_log_line("import-progress {bad"), None);
    }

    #[test]
    fn migrate_request_json_and_checks() {
        let r: MigrateRequest = serde_json::from_str(
            r#"{"target":"10.0.0.7:8101","bandwidthBytesPerSecond":1250000000,"compression":"zstd","tls":true,"timeoutSeconds":600}"#,
        )
        .unwrap();
        assert_eq!(r.compression, Compression::Zstd);
        r.check().unwrap();
        let min: MigrateRequest = serde_json::from_str(r#"{"target":"[fd00::7]:8101"}"#).unwrap();
        min.check().unwrap();
        assert_eq!(
            split_host_port("[fd00::7]:8101").unwrap(),
            ("fd00::7".into(), 8101)
        );
        for bad in ["10.0.0.7", "fd00::7:8101", ":8101", "h:0", "h:x", "a,b:1"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
        let bad = |f: fn(&mut MigrateRequest)| {
            let mut r = min.clone();
            f(&mut r);
            r.check().unwrap_err()
        };
        assert!(bad(|r| r.bandwidth_bytes_per_second = Some(0)).contains("bandwidth"));
        assert!(bad(|r| r.multifd_channels = Some(0)).contains("multifdChannels"));
        assert!(bad(|r| r.timeout_seconds = Some(0)).contains("timeoutSeconds"));
        assert!(bad(|r| r.tls_hostname = Some("x".into())).contains("tls"));
        // Post-copy: off unless asked (older operators send no field); never
        // over multifd, which QEMU 7.2 cannot finish.
        assert!(!min.post_copy);
        let pc: MigrateRequest =
            serde_json::from_str(r#"{"target":"h:1","postCopy":true,"tls":true}"#).unwrap();
        assert!(pc.post_copy);
        pc.check().unwrap();
        let mut both = pc.clone();
        both.compression = Compression::Zstd;
        assert!(
            both.check()
                .unwrap_err()
                .contains("postCopy cannot be combined")
        );
        both.compression = Compression::None;
        both.multifd_channels = Some(2);
        assert!(both.check().unwrap_err().contains("multifd"));
        assert!(
            serde_json::to_value(&min)
                .unwrap()
                .get("postCopy")
                .is_none()
        );
        assert!(
            serde_json::from_str::<MigrateRequest>(r#"{"target":"h:1","compression":"lz4"}"#)
                .is_err()
        );
        let s = MigrationStatus {
            role: MigrationRole::Target,
            phase: MigrationPhase::WaitingForMigration,
            address: "0.0.0.0:8101".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"role": "Target", "phase": "WaitingForMigration", "address": "0.0.0.0:8101"})
        );
        assert!(!s.phase.is_final() && MigrationPhase::Cancelled.is_final());
    }
}
