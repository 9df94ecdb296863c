//! The launcher's control API (plain HTTP on port 8100, reached by the
//! operator through a pod port-forward) and the importer's progress record.
//!
//! - `GET /healthz` -> `200 ok` while the launcher serves.
//! - `GET /status` -> [`LauncherStatus`] as JSON.
//! - `POST /shutdown` -> `202` with [`LauncherStatus`]; starts a graceful
//!   shutdown (preStop hook, ACPI power-down, `shutdownTimeoutSeconds`,
//!   then QEMU `quit`). Repeated calls are harmless.
//!
//! Migration endpoints (`/migrate/...`) come with the live-migration issue.

use serde::{Deserialize, Serialize};

/// Path of the health endpoint.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the status endpoint.
pub const STATUS_PATH: &str = "/status";
/// Path of the shutdown endpoint.
pub const SHUTDOWN_PATH: &str = "/shutdown";

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
}
