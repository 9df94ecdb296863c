//! Building blocks for live migration (used by the next issue's migration
//! controller and launcher endpoints): pure builders of the QMP arguments
//! and QEMU options, and a parser of `query-migrate`.
//!
//! Flow (both launchers): the target starts QEMU with [`incoming_args`]
//! (`-incoming defer`) and the same command line, applies
//! [`capabilities`]/[`parameters`], then [`migrate_incoming`]; the source
//! applies the same capabilities/parameters and runs [`migrate`], polling
//! `query-migrate` ([`progress`]) until `completed`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Migration tuning, mirroring the VM's `migrationPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationOptions {
    /// Bandwidth cap in bytes per second (QEMU `max-bandwidth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bandwidth_bytes: Option<u64>,
    /// Compress pages with zstd over multifd channels.
    #[serde(default)]
    pub compression: bool,
    /// Parallel multifd channels (default 2 when compression is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multifd_channels: Option<u8>,
    /// Throttle the guest's vCPUs when the migration does not converge.
    #[serde(default)]
    pub auto_converge: bool,
    /// Allow switching to post-copy.
    #[serde(default)]
    pub post_copy: bool,
    /// Maximum pause at switch-over, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_limit_ms: Option<u64>,
    /// TLS: directory with `ca-cert.pem` and `client-cert.pem`/`client-key.pem`
    /// (source) or `server-cert.pem`/`server-key.pem` (target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_dir: Option<PathBuf>,
}

/// Which side of the migration a launcher is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

/// QEMU object id of the TLS credentials.
pub const TLS_CREDS_ID: &str = "migtls0";

/// `-incoming defer`: the target waits for `migrate-incoming`, so the
/// listening address and parameters can be set over QMP first.
pub fn incoming_args() -> Vec<String> {
    vec!["-incoming".into(), "defer".into()]
}

/// `-object tls-creds-x509,...` for the side (peer verification on).
pub fn tls_object_args(opts: &MigrationOptions, side: Side) -> Vec<String> {
    let Some(dir) = &opts.tls_dir else {
        return Vec::new();
    };
    let endpoint = match side {
        Side::Source => "client",
        Side::Target => "server",
    };
    vec![
        "-object".into(),
        format!(
            "tls-creds-x509,id={TLS_CREDS_ID},dir={},endpoint={endpoint},verify-peer=on",
            dir.to_string_lossy().replace(',', ",,")
        ),
    ]
}

/// Arguments of `migrate-set-capabilities` (same on both sides).
pub fn capabilities(opts: &MigrationOptions) -> Value {
    let caps = [
        (
            "multifd",
            opts.compression || opts.multifd_channels.is_some(),
        ),
        ("auto-converge", opts.auto_converge),
        ("postcopy-ram", opts.post_copy),
    ];
    json!({
        "capabilities": caps.iter().map(|(c, on)| json!({"capability": c, "state": on})).collect::<Vec<_>>()
    })
}

/// Arguments of `migrate-set-parameters` (same on both sides; the bandwidth
/// only matters on the source).
pub fn parameters(opts: &MigrationOptions) -> Value {
    let mut p = serde_json::Map::new();
    if let Some(bw) = opts.max_bandwidth_bytes {
        p.insert("max-bandwidth".into(), json!(bw));
    }
    if opts.compression || opts.multifd_channels.is_some() {
        p.insert(
            "multifd-channels".into(),
            json!(opts.multifd_channels.unwrap_or(2)),
        );
    }
    if opts.compression {
        p.insert("multifd-compression".into(), json!("zstd"));
    }
    if let Some(ms) = opts.downtime_limit_ms {
        p.insert("downtime-limit".into(), json!(ms));
    }
    if opts.tls_dir.is_some() {
        p.insert("tls-creds".into(), json!(TLS_CREDS_ID));
    }
    Value::Object(p)
}

/// `migrate-incoming` arguments for the target (`tcp:0.0.0.0:PORT`).
pub fn migrate_incoming(port: u16) -> Value {
    json!({ "uri": format!("tcp:0.0.0.0:{port}") })
}

/// `migrate` arguments for the source.
pub fn migrate(host: &str, port: u16) -> Value {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    json!({ "uri": format!("tcp:{host}:{port}") })
}

/// Progress of a migration from `query-migrate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationProgress {
    /// QEMU status: `setup`, `active`, `postcopy-active`, `completed`, `failed`, ...
    pub status: String,
    /// RAM bytes transferred.
    pub transferred_bytes: u64,
    /// RAM bytes remaining.
    pub remaining_bytes: u64,
    /// Percent of RAM transferred (0-100).
    pub percent: f64,
    /// Switch-over pause in ms, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// Error text when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MigrationProgress {
    /// Whether the migration ended (completed, failed or cancelled).
    pub fn is_done(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

/// Parses the `query-migrate` return value.
pub fn progress(query_migrate: &Value) -> MigrationProgress {
    let ram = &query_migrate["ram"];
    let transferred = ram["transferred"].as_u64().unwrap_or(0);
    let remaining = ram["remaining"].as_u64().unwrap_or(0);
    let total = ram["total"].as_u64().unwrap_or(0);
    let status = query_migrate["status"]
        .as_str()
        .unwrap_or("none")
        .to_string();
    let percent = if status == "completed" {
        100.0
    } else if total > 0 {
        ((total.saturating_sub(remaining)) as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
    } else {
        0.0
    };
    MigrationProgress {
        status,
        transferred_bytes: transferred,
        remaining_bytes: remaining,
        percent,
        downtime_ms: query_migrate["downtime"].as_u64(),
        error: query_migrate["error-desc"].as_str().map(String::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> MigrationOptions {
        MigrationOptions {
            max_bandwidth_bytes: Some(64 << 20),
            compression: true,
            multifd_channels: None,
            auto_converge: true,
            post_copy: false,
            downtime_limit_ms: Some(300),
            tls_dir: Some("/etc/novacron/migration-tls".into()),
        }
    }

    #[test]
    fn capabilities_and_parameters() {
        let o = full();
        assert_eq!(
            capabilities(&o),
            json!({"capabilities": [
                {"capability": "multifd", "state": true},
                {"capability": "auto-converge", "state": true},
                {"capability": "postcopy-ram", "state": false},
            ]})
        );
        assert_eq!(
            parameters(&o),
            json!({"max-bandwidth": 67108864, "multifd-channels": 2, "multifd-compression": "zstd",
                   "downtime-limit": 300, "tls-creds": "migtls0"})
        );
        assert_eq!(parameters(&MigrationOptions::default()), json!({}));
    }

    #[test]
    fn tls_objects_and_uris() {
        let o = full();
        assert_eq!(
            tls_object_args(&o, Side::Target),
            [
                "-object",
                "tls-creds-x509,id=migtls0,dir=/etc/novacron/migration-tls,endpoint=server,verify-peer=on"
            ]
        );
        assert!(tls_object_args(&o, Side::Source)[1].contains("endpoint=client"));
        assert!(tls_object_args(&MigrationOptions::default(), Side::Source).is_empty());
        assert_eq!(incoming_args(), ["-incoming", "defer"]);
        assert_eq!(migrate_incoming(4444), json!({"uri": "tcp:0.0.0.0:4444"}));
        assert_eq!(
            migrate("10.0.0.5", 4444),
            json!({"uri": "tcp:10.0.0.5:4444"})
        );
        assert_eq!(
            migrate("fd00::5", 4444),
            json!({"uri": "tcp:[fd00::5]:4444"})
        );
    }

    #[test]
    fn progress_parsing() {
        let p = progress(
            &json!({"status": "active", "ram": {"transferred": 100, "remaining": 300, "total": 400}}),
        );
        assert_eq!(
            (p.status.as_str(), p.percent, p.is_done()),
            ("active", 25.0, false)
        );
        let p = progress(
            &json!({"status": "completed", "downtime": 42, "ram": {"transferred": 400, "remaining": 0, "total": 400}}),
        );
        assert_eq!(
            (p.percent, p.downtime_ms, p.is_done()),
            (100.0, Some(42), true)
        );
        let p = progress(&json!({"status": "failed", "error-desc": "boom"}));
        assert_eq!(p.error.as_deref(), Some("boom"));
    }
}
