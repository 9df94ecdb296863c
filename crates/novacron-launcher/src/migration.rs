//! Building blocks for live migration: pure builders of the QMP arguments
//! and QEMU options, and parsers of `query-migrate` and the read-back
//! capabilities/parameters. The launcher drives them in [`crate::migrator`].
//!
//! Flow (both launchers): the target starts QEMU with [`incoming_args`]
//! (`-incoming defer`) and the same command line, adds the TLS credentials
//! ([`tls_object_add`]), applies [`capabilities`]/[`parameters`], then
//! [`incoming_uri`]; the source does the same and runs [`migrate`],
//! polling `query-migrate` ([`progress`]) until `completed`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::api::{Compression, MigrationProgress, MigrationSettings};

/// `max-bandwidth` used when no cap is asked for: QEMU's default is a
/// 128 MiB/s cap, far below a datacenter link; 1 TiB/s means "none".
pub const UNLIMITED_BANDWIDTH: u64 = 1 << 40;

/// When the source switches a post-copy-enabled migration to post-copy:
/// once QEMU's `ram.dirty-sync-count` reaches this while the migration is
/// still `active`. QEMU syncs the dirty bitmap once at the start and again
/// each time a pass over memory ends; a second sync without completion
/// means all of memory went once and what the guest dirtied meanwhile does
/// not fit the downtime limit: pre-copy did not converge in its first pass
/// (libvirt's `--postcopy-after-precopy` rule). Switching later only adds
/// rounds that a guest dirtying faster than the link never wins.
pub const POSTCOPY_AFTER_SYNCS: u64 = 2;

/// Whether the source should issue `migrate-start-postcopy` now (see
/// [`POSTCOPY_AFTER_SYNCS`]).
pub fn postcopy_due(p: &MigrationProgress) -> bool {
    p.status == "active" && p.dirty_sync_count.unwrap_or(0) >= POSTCOPY_AFTER_SYNCS
}

/// Whether QEMU reports the post-copy phase (`postcopy-active`, or
/// `postcopy-paused`/`postcopy-recover` after a broken stream).
pub fn in_postcopy(status: &str) -> bool {
    status.starts_with("postcopy")
}

/// Migration tuning, mirroring the VM's `migrationPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationOptions {
    /// Bandwidth cap in bytes per second (QEMU `max-bandwidth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bandwidth_bytes: Option<u64>,
    /// Compress pages over multifd channels.
    #[serde(default)]
    pub compression: Compression,
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
    /// Name the server certificate must carry (source; default the host of
    /// the URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_hostname: Option<String>,
}

impl MigrationOptions {
    /// Whether multifd channels are used.
    pub fn multifd(&self) -> bool {
        self.compression != Compression::None || self.multifd_channels.is_some()
    }
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

/// `object-add` arguments of the TLS credentials for the side (added at
/// migration time, so certificates rotated in the mounted Secret are read
/// fresh), or None without TLS.
pub fn tls_object_add(opts: &MigrationOptions, side: Side) -> Option<Value> {
    let dir = opts.tls_dir.as_ref()?;
    let endpoint = match side {
        Side::Source => "client",
        Side::Target => "server",
    };
    Some(json!({
        "qom-type": "tls-creds-x509",
        "id": TLS_CREDS_ID,
        "dir": dir.to_string_lossy(),
        "endpoint": endpoint,
        "verify-peer": true,
    }))
}

/// The certificate files QEMU reads for the side (for a clear error
/// before QEMU's own).
pub fn tls_files(side: Side) -> [&'static str; 3] {
    match side {
        Side::Source => ["ca-cert.pem", "client-cert.pem", "client-key.pem"],
        Side::Target => ["ca-cert.pem", "server-cert.pem", "server-key.pem"],
    }
}

/// Arguments of `migrate-set-capabilities` (same on both sides).
pub fn capabilities(opts: &MigrationOptions) -> Value {
    let caps = [
        ("multifd", opts.multifd()),
        ("auto-converge", opts.auto_converge),
        ("postcopy-ram", opts.post_copy),
        // MIGRATION events let the target follow the stream without
        // polling QMP (polling the loading side stretches the downtime).
        ("events", true),
    ];
    json!({
        "capabilities": caps.iter().map(|(c, on)| json!({"capability": c, "state": on})).collect::<Vec<_>>()
    })
}

/// Arguments of `migrate-set-parameters` (same on both sides; the bandwidth
/// only matters on the source). Every setting is explicit, so a retry after
/// a TLS or compressed attempt does not inherit the previous one.
pub fn parameters(opts: &MigrationOptions) -> Value {
    let mut p = serde_json::Map::new();
    p.insert(
        "max-bandwidth".into(),
        json!(opts.max_bandwidth_bytes.unwrap_or(UNLIMITED_BANDWIDTH)),
    );
    if opts.multifd() {
        p.insert(
            "multifd-channels".into(),
            json!(opts.multifd_channels.unwrap_or(2)),
        );
    }
    p.insert(
        "multifd-compression".into(),
        json!(opts.compression.as_str()),
    );
    if let Some(ms) = opts.downtime_limit_ms {
        p.insert("downtime-limit".into(), json!(ms));
    }
    let tls = opts.tls_dir.is_some();
    p.insert(
        "tls-creds".into(),
        json!(if tls { TLS_CREDS_ID } else { "" }),
    );
    p.insert(
        "tls-hostname".into(),
        json!(opts.tls_hostname.as_deref().filter(|_| tls).unwrap_or("")),
    );
    Value::Object(p)
}

/// `migrate-incoming` arguments for the target (`tcp:0.0.0.0:PORT`).
pub fn migrate_incoming(port: u16) -> Value {
    json!({ "uri": format!("tcp:0.0.0.0:{port}") })
}

/// `migrate-incoming` arguments for a `host:port` listen address.
pub fn incoming_uri(listen: &str) -> Result<Value, String> {
    let (host, port) = crate::api::split_host_port(listen)?;
    Ok(migrate(&host, port))
}

/// `migrate` arguments for a `host:port` target.
pub fn migrate_to(target: &str) -> Result<Value, String> {
    let (host, port) = crate::api::split_host_port(target)?;
    Ok(migrate(&host, port))
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
        total_bytes: total,
        percent,
        // `mbps` is megabits per second.
        speed_bytes_per_second: ram["mbps"]
            .as_f64()
            .map(|mbps| (mbps * 1_000_000.0 / 8.0) as u64),
        total_time_ms: query_migrate["total-time"].as_u64(),
        setup_time_ms: query_migrate["setup-time"].as_u64(),
        downtime_ms: query_migrate["downtime"].as_u64(),
        expected_downtime_ms: query_migrate["expected-downtime"].as_u64(),
        error: query_migrate["error-desc"].as_str().map(String::from),
        dirty_sync_count: ram["dirty-sync-count"].as_u64(),
    }
}

/// Settings as QEMU reports them (`query-migrate-capabilities` and
/// `query-migrate-parameters` return values).
pub fn settings(capabilities: &Value, parameters: &Value) -> MigrationSettings {
    let str_of = |k: &str| parameters[k].as_str().unwrap_or_default().to_string();
    MigrationSettings {
        capabilities: capabilities
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["state"].as_bool() == Some(true))
            .filter_map(|c| c["capability"].as_str().map(String::from))
            .collect(),
        max_bandwidth_bytes: parameters["max-bandwidth"].as_u64(),
        multifd_channels: parameters["multifd-channels"].as_u64(),
        compression: str_of("multifd-compression"),
        tls_creds: str_of("tls-creds"),
        tls_hostname: str_of("tls-hostname"),
        downtime_limit_ms: parameters["downtime-limit"].as_u64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> MigrationOptions {
        MigrationOptions {
            max_bandwidth_bytes: Some(64 << 20),
            compression: Compression::Zstd,
            multifd_channels: None,
            auto_converge: true,
            post_copy: false,
            downtime_limit_ms: Some(300),
            tls_dir: Some("/etc/novacron/migration-tls".into()),
            tls_hostname: Some("migration.novacron".into()),
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
                {"capability": "events", "state": true},
            ]})
        );
        assert_eq!(
            parameters(&o),
            json!({"max-bandwidth": 67108864, "multifd-channels": 2, "multifd-compression": "zstd",
                   "downtime-limit": 300, "tls-creds": "migtls0", "tls-hostname": "migration.novacron"})
        );
        // Everything explicit: no cap, no compression, no TLS.
        assert_eq!(
            parameters(&MigrationOptions::default()),
            json!({"max-bandwidth": UNLIMITED_BANDWIDTH, "multifd-compression": "none",
                   "tls-creds": "", "tls-hostname": ""})
        );
        let zlib = MigrationOptions {
            compression: Compression::Zlib,
            multifd_channels: Some(4),
            ..Default::default()
        };
        assert_eq!(parameters(&zlib)["multifd-channels"], 4);
        assert_eq!(parameters(&zlib)["multifd-compression"], "zlib");
        assert_eq!(capabilities(&zlib)["capabilities"][0]["state"], true);
    }

    #[test]
    fn tls_object_add_and_settings_read_back() {
        assert_eq!(
            tls_object_add(&full(), Side::Source).unwrap(),
            json!({"qom-type": "tls-creds-x509", "id": "migtls0", "dir": "/etc/novacron/migration-tls",
                   "endpoint": "client", "verify-peer": true})
        );
        assert_eq!(
            tls_object_add(&full(), Side::Target).unwrap()["endpoint"],
            "server"
        );
        assert_eq!(
            tls_object_add(&MigrationOptions::default(), Side::Source),
            None
        );
        assert_eq!(tls_files(Side::Target)[1], "server-cert.pem");
        let s = settings(
            &json!([{"capability": "multifd", "state": true}, {"capability": "xbzrle", "state": false},
                    {"capability": "auto-converge", "state": true}]),
            &json!({"max-bandwidth": 1048576, "multifd-channels": 2, "multifd-compression": "zstd",
                    "tls-creds": "migtls0", "tls-hostname": "", "downtime-limit": 300}),
        );
        assert_eq!(s.capabilities, ["multifd", "auto-converge"]);
        assert_eq!(
            (
                s.max_bandwidth_bytes,
                s.multifd_channels,
                s.compression.as_str(),
                s.tls_creds.as_str()
            ),
            (Some(1048576), Some(2), "zstd", "migtls0")
        );
        assert_eq!(
            incoming_uri("0.0.0.0:8101").unwrap(),
            json!({"uri": "tcp:0.0.0.0:8101"})
        );
        assert_eq!(
            migrate_to("[fd00::1]:8101").unwrap(),
            json!({"uri": "tcp:[fd00::1]:8101"})
        );
        assert!(migrate_to("nope").is_err());
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
            &json!({"status": "completed", "downtime": 42, "total-time": 900, "setup-time": 3,
                    "ram": {"transferred": 400, "remaining": 0, "total": 400, "mbps": 800.0}}),
        );
        assert_eq!(
            (p.percent, p.downtime_ms, p.is_done()),
            (100.0, Some(42), true)
        );
        assert_eq!(
            (
                p.speed_bytes_per_second,
                p.total_time_ms,
                p.setup_time_ms,
                p.total_bytes
            ),
            (Some(100_000_000), Some(900), Some(3), 400)
        );
        let p = progress(&json!({"status": "failed", "error-desc": "boom"}));
        assert_eq!(p.error.as_deref(), Some("boom"));
    }

    #[test]
    fn postcopy_after_the_first_pass() {
        let at = |status: &str, syncs: u64| {
            progress(&json!({"status": status, "ram": {"dirty-sync-count": syncs}}))
        };
        // First pass: keep pre-copying.
        assert!(!postcopy_due(&at("active", 1)));
        assert!(!postcopy_due(&progress(&json!({"status": "active"}))));
        // The first pass ended without completing: switch.
        assert!(postcopy_due(&at("active", 2)));
        assert!(postcopy_due(&at("active", 5)));
        // Only from `active` (not setup, not once switched or ended).
        for s in ["setup", "postcopy-active", "completed", "cancelling"] {
            assert!(!postcopy_due(&at(s, 3)), "{s}");
        }
        assert!(in_postcopy("postcopy-active") && in_postcopy("postcopy-paused"));
        assert!(!in_postcopy("active"));
        let mut o = MigrationOptions {
            post_copy: true,
            ..Default::default()
        };
        assert_eq!(
            capabilities(&o)["capabilities"][2],
            json!({"capability": "postcopy-ram", "state": true})
        );
        o.post_copy = false;
        assert_eq!(capabilities(&o)["capabilities"][2]["state"], false);
    }
}
