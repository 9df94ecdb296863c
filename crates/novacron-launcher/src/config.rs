//! `LaunchConfig`: everything the launcher needs to run one VM, already
//! resolved by the operator (sizes in bytes, paths inside the pod, rendered
//! cloud-init text, MAC addresses). The operator writes it as JSON (camelCase)
//! into a ConfigMap mounted at `/etc/novacron/launch.json`; the launcher never
//! talks to the Kubernetes API, so it needs no credentials.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the operator mounts the config in the launcher pod.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/novacron/launch.json";
/// Port of the launcher's control API (named `control` on the pod).
pub const CONTROL_PORT: u16 = 8100;
/// Name of the control port on the launcher pod.
pub const CONTROL_PORT_NAME: &str = "control";
/// Port the migration target's QEMU listens on (named `migration`).
pub const MIGRATION_PORT: u16 = 8101;
/// Name of the migration port on the launcher pod.
pub const MIGRATION_PORT_NAME: &str = "migration";
/// Where the operator mounts the migration TLS Secret (QEMU's file names:
/// `ca-cert.pem`, `server-cert.pem`, `server-key.pem`, `client-cert.pem`,
/// `client-key.pem`).
pub const DEFAULT_MIGRATION_TLS_DIR: &str = "/etc/novacron/migration-tls";
/// Default directory for the QMP socket, serial log and cloud-init seed.
pub const DEFAULT_RUN_DIR: &str = "/var/run/novacron";

/// The launch description of one virtual machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfig {
    /// VirtualMachine name (also the guest's default hostname).
    pub name: String,
    /// VirtualMachine namespace.
    pub namespace: String,
    /// VirtualMachine UID: the `vmID`, used as QEMU `-uuid` and cloud-init
    /// instance id.
    pub uid: String,
    /// Virtual CPUs (`-smp`).
    pub vcpus: u32,
    /// Guest memory in bytes (`-m`, rounded up to MiB).
    pub memory_bytes: u64,
    /// Disks in boot order; the first with `boot: true` gets boot index 1.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// cloud-init NoCloud data; the launcher builds the `cidata` seed ISO
    /// and attaches it as a read-only disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInitConfig>,
    /// Network interfaces; the pod network is usually the first.
    #[serde(default)]
    pub nics: Vec<NicConfig>,
    /// Host devices passed through with VFIO (GPUs, FPGAs).
    #[serde(default)]
    pub host_devices: Vec<HostDeviceConfig>,
    /// Lifecycle hooks run by the launcher.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// How long the guest gets to power off after ACPI power-down before
    /// QEMU is told to quit.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_seconds: u64,
    /// Accelerator: `auto` uses KVM when `/dev/kvm` opens read-write.
    #[serde(default)]
    pub accel: Accel,
    /// QEMU machine type.
    #[serde(default = "default_machine")]
    pub machine: String,
    /// CPU model; default `host` with KVM and `max` with TCG. Set a named
    /// model (e.g. `Skylake-Server`) to keep VMs migratable across hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Directory for the QMP socket, serial log and seed ISO (an emptyDir).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// QMP socket path; default `<runDir>/qmp.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qmp_socket: Option<PathBuf>,
    /// Serial console log; default `<runDir>/serial.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_log: Option<PathBuf>,
    /// Port of the control API.
    #[serde(default = "default_control_port")]
    pub control_port: u16,
    /// QEMU binary.
    #[serde(default = "default_qemu_binary")]
    pub qemu_binary: String,
    /// File the launcher writes its final message to (Kubernetes shows it in
    /// the container's termination state). Skipped when it cannot be written.
    #[serde(default = "default_termination_log")]
    pub termination_message_path: PathBuf,
    /// Set on a migration target: QEMU starts with `-incoming defer` and
    /// waits for the source instead of booting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming: Option<IncomingConfig>,
    /// Directory of the migration TLS certificates; default
    /// [`DEFAULT_MIGRATION_TLS_DIR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_tls_dir: Option<PathBuf>,
    /// Seconds after `POST /quiesce` when the launcher thaws or resumes the
    /// guest by itself if no release came (a lost operator must never leave
    /// a guest frozen); default [`DEFAULT_QUIESCE_RELEASE_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiesce_release_seconds: Option<u64>,
}

/// Default bound of a quiesce (see `quiesceReleaseSeconds`).
pub const DEFAULT_QUIESCE_RELEASE_SECONDS: u64 = 60;

/// The receiving side of a live migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingConfig {
    /// `host:port` QEMU listens on for the migration stream.
    #[serde(default = "default_incoming_listen")]
    pub listen: String,
    /// Page compression; must match the source's request.
    #[serde(default)]
    pub compression: crate::api::Compression,
    /// multifd channels (default 2 when compressing); must match the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multifd_channels: Option<u8>,
    /// Require TLS (server certificate from the migration TLS directory,
    /// client certificates verified against its CA).
    #[serde(default)]
    pub tls: bool,
    /// Accept a post-copy migration (QEMU `postcopy-ram`, which must be
    /// set on both sides before the stream starts); must match the
    /// source's request. Not with compression or multifd channels.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_copy: bool,
    /// Give up (QEMU quits, exit 4, `IncomingMigrationTimeout`) when the VM
    /// has not arrived within this many seconds of QEMU's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl Default for IncomingConfig {
    fn default() -> Self {
        IncomingConfig {
            listen: default_incoming_listen(),
            compression: crate::api::Compression::None,
            multifd_channels: None,
            tls: false,
            post_copy: false,
            timeout_seconds: None,
        }
    }
}

fn default_incoming_listen() -> String {
    format!("0.0.0.0:{MIGRATION_PORT}")
}

impl LaunchConfig {
    /// A config with defaults for everything but identity and size.
    pub fn new(name: &str, namespace: &str, uid: &str, vcpus: u32, memory_bytes: u64) -> Self {
        LaunchConfig {
            name: name.to_string(),
            namespace: namespace.to_string(),
            uid: uid.to_string(),
            vcpus,
            memory_bytes,
            disks: Vec::new(),
            cloud_init: None,
            nics: Vec::new(),
            host_devices: Vec::new(),
            hooks: HooksConfig::default(),
            shutdown_timeout_seconds: default_shutdown_timeout(),
            accel: Accel::Auto,
            machine: default_machine(),
            cpu_model: None,
            run_dir: default_run_dir(),
            qmp_socket: None,
            serial_log: None,
            control_port: CONTROL_PORT,
            qemu_binary: default_qemu_binary(),
            termination_message_path: default_termination_log(),
            incoming: None,
            migration_tls_dir: None,
            quiesce_release_seconds: None,
        }
    }

    /// How long a quiesce lasts at most without a release.
    pub fn quiesce_release_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.quiesce_release_seconds
                .unwrap_or(DEFAULT_QUIESCE_RELEASE_SECONDS),
        )
    }

    /// The QEMU guest agent's channel (a unix socket QEMU listens on,
    /// wired to the guest's `org.qemu.guest_agent.0` virtio-serial port).
    pub fn guest_agent_socket_path(&self) -> PathBuf {
        self.run_dir.join("qga.sock")
    }

    /// The migration TLS directory.
    pub fn migration_tls_dir(&self) -> PathBuf {
        self.migration_tls_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_MIGRATION_TLS_DIR.into())
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        let config: LaunchConfig = serde_json::from_str(&text).map_err(ConfigError::Parse)?;
        config.check()?;
        Ok(config)
    }

    /// Checks what the launcher relies on (the operator's admission
    /// validation has already checked the user's spec).
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.vcpus == 0 {
            return bad("vcpus must be at least 1".into());
        }
        if self.memory_bytes < 16 << 20 {
            return bad(format!("memoryBytes {} is below 16MiB", self.memory_bytes));
        }
        let mut names = std::collections::BTreeSet::new();
        for d in &self.disks {
            if !is_id(&d.name) || !names.insert(format!("disk/{}", d.name)) {
                return bad(format!(
                    "disk name {:?} must be unique, [a-z0-9-], at most 63 chars",
                    d.name
                ));
            }
        }
        for n in &self.nics {
            if !is_id(&n.name) || !names.insert(format!("nic/{}", n.name)) {
                return bad(format!(
                    "nic name {:?} must be unique, [a-z0-9-], at most 63 chars",
                    n.name
                ));
            }
            if !is_mac(&n.mac) {
                return bad(format!(
                    "nic {:?}: mac {:?} is not a unicast MAC like 52:54:00:12:34:56",
                    n.name, n.mac
                ));
            }
            match n.kind {
                NicKind::Tap if n.tap_device.is_none() => {
                    return bad(format!("nic {:?}: kind tap needs tapDevice", n.name));
                }
                NicKind::Bridge if n.bridge.is_none() => {
                    return bad(format!("nic {:?}: kind bridge needs bridge", n.name));
                }
                _ => {}
            }
        }
        for h in &self.host_devices {
            if !is_id(&h.name) || !names.insert(format!("hostdev/{}", h.name)) {
                return bad(format!(
                    "host device name {:?} must be unique, [a-z0-9-], at most 63 chars",
                    h.name
                ));
            }
            if h.pci_address.is_none() && h.resource_env.is_none() {
                return bad(format!(
                    "host device {:?} needs pciAddress or resourceEnv",
                    h.name
                ));
            }
        }
        for (what, hook) in [
            ("preStart", &self.hooks.pre_start),
            ("preStop", &self.hooks.pre_stop),
        ] {
            if let Some(h) = hook
                && h.exec.is_none() == h.http_get.is_none()
            {
                return bad(format!("{what} hook needs exactly one of exec or httpGet"));
            }
            if let Some(HookConfig { exec: Some(e), .. }) = hook
                && e.command.is_empty()
            {
                return bad(format!("{what} hook exec.command is empty"));
            }
        }
        if let Some(inc) = &self.incoming {
            crate::api::split_host_port(&inc.listen)
                .map_err(|e| ConfigError::Invalid(format!("incoming.listen: {e}")))?;
            if inc.multifd_channels == Some(0) {
                return bad("incoming.multifdChannels must be at least 1".into());
            }
            if inc.timeout_seconds == Some(0) {
                return bad("incoming.timeoutSeconds must be positive".into());
            }
            if inc.post_copy
                && (inc.compression != crate::api::Compression::None
                    || inc.multifd_channels.is_some())
            {
                return bad(format!(
                    "incoming.postCopy cannot be combined with compression or multifdChannels: {}",
                    crate::api::POSTCOPY_MULTIFD
                ));
            }
        }
        if self.quiesce_release_seconds == Some(0) {
            return bad("quiesceReleaseSeconds must be positive".into());
        }
        Ok(())
    }

    /// The QMP socket path.
    pub fn qmp_socket_path(&self) -> PathBuf {
        self.qmp_socket
            .clone()
            .unwrap_or_else(|| self.run_dir.join("qmp.sock"))
    }

    /// The serial console log path.
    pub fn serial_log_path(&self) -> PathBuf {
        self.serial_log
            .clone()
            .unwrap_or_else(|| self.run_dir.join("serial.log"))
    }

    /// Where the launcher writes the cloud-init seed ISO.
    pub fn seed_iso_path(&self) -> PathBuf {
        self.run_dir.join("cidata.iso")
    }

    /// Marker written after the VM migrated away: the run directory (an
    /// emptyDir) outlives a container restart, and a restarted source must
    /// not boot the VM a second time next to the target (same disks).
    pub fn migrated_marker_path(&self) -> PathBuf {
        self.run_dir.join("migrated-away")
    }
}

/// Errors reading a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read launch config {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("launch config is not valid JSON for LaunchConfig: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("invalid launch config: {0}")]
    Invalid(String),
}

/// One disk of the VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskConfig {
    /// Disk name (the VM volume name; `root` for the image disk).
    pub name: String,
    /// Path inside the pod: an image file on a filesystem PVC
    /// (`/disks/root/disk.img`) or a block device (`/dev/disks/root`).
    pub path: PathBuf,
    /// Image format of the file.
    #[serde(default)]
    pub format: DiskFormat,
    /// The path is a block device (PVC `volumeMode: Block`).
    #[serde(default)]
    pub block: bool,
    /// Attach read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Boot from this disk.
    #[serde(default)]
    pub boot: bool,
    /// Serial seen by the guest (`/dev/disk/by-id/virtio-<serial>`);
    /// default the disk name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// Disk image format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    #[default]
    Qcow2,
    Raw,
}

impl DiskFormat {
    /// The QEMU driver / `qemu-img -f` name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

impl std::str::FromStr for DiskFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "qcow2" => Ok(DiskFormat::Qcow2),
            "raw" => Ok(DiskFormat::Raw),
            other => Err(format!(
                "unknown disk format {other:?} (expected qcow2 or raw)"
            )),
        }
    }
}

/// Rendered cloud-init NoCloud data (see [`crate::cloudinit::render`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitConfig {
    /// `user-data` text (inline, already size-checked by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// `user-data` read from a file at start (a mounted Secret key), for
    /// data too large or too sensitive for the config. Wins over `userData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_file: Option<PathBuf>,
    /// `meta-data` text (instance-id, local-hostname).
    pub meta_data: String,
    /// `network-config` text (version 2), if any interface needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<String>,
}

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicConfig {
    /// Interface name (the VM network name).
    pub name: String,
    /// QEMU NIC model.
    #[serde(default = "default_nic_model")]
    pub model: String,
    /// Stable MAC address chosen by the operator.
    pub mac: String,
    /// How the NIC reaches the outside.
    #[serde(default)]
    pub kind: NicKind,
    /// Tap device in the pod (kind `tap`), created by the CNI plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_device: Option<String>,
    /// Bridge in the pod (kind `bridge`; QEMU's bridge helper adds a tap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Guest TCP ports reachable on the pod IP (kind `pod`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_ports: Vec<u16>,
}

/// NIC backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicKind {
    /// The pod network through QEMU user-mode networking (NAT, like
    /// KubeVirt's masquerade binding; keeps the VM migratable).
    #[default]
    Pod,
    /// An existing tap device (Multus bridge/ovs/macvlan attachments).
    Tap,
    /// A Linux bridge in the pod.
    Bridge,
}

/// A host PCI device passed through with VFIO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostDeviceConfig {
    /// Device name (e.g. `gpu-0`).
    pub name: String,
    /// Device class.
    pub kind: HostDeviceKind,
    /// Fixed PCI address (`0000:65:00.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// Environment variable set by the device plugin with the allocated PCI
    /// addresses, comma separated (e.g. `PCI_RESOURCE_NVIDIA_COM_GPU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_env: Option<String>,
}

/// Host device class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostDeviceKind {
    Gpu,
    Fpga,
}

/// Lifecycle hooks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HooksConfig {
    /// Runs before QEMU starts; failure fails the launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_start: Option<HookConfig>,
    /// Runs before the guest is powered down; failure is reported, the
    /// shutdown continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<HookConfig>,
}

/// One hook: exactly one of `exec` or `httpGet`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookConfig {
    /// Command run in the launcher container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHook>,
    /// HTTP GET; any 2xx/3xx status is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetHook>,
    /// Time limit; the hook fails when exceeded.
    #[serde(default = "default_hook_timeout")]
    pub timeout_seconds: u64,
}

/// An exec hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecHook {
    /// argv (not run through a shell).
    pub command: Vec<String>,
}

/// An HTTP GET hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetHook {
    /// Host; default `127.0.0.1` (the pod itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port.
    pub port: u16,
    /// Path.
    #[serde(default = "default_path")]
    pub path: String,
    /// `http` or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

impl HttpGetHook {
    /// The URL the hook requests.
    pub fn url(&self) -> String {
        let host = self.host.as_deref().unwrap_or("127.0.0.1");
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!(
            "{}://{}:{}{}",
            self.scheme.to_ascii_lowercase(),
            host,
            self.port,
            path
        )
    }
}

/// Accelerator choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when `/dev/kvm` opens read-write, else TCG.
    #[default]
    Auto,
    /// KVM (fails when unavailable).
    Kvm,
    /// Software emulation.
    Tcg,
}

fn default_shutdown_timeout() -> u64 {
    60
}
fn default_machine() -> String {
    "q35".into()
}
fn default_run_dir() -> PathBuf {
    DEFAULT_RUN_DIR.into()
}
fn default_control_port() -> u16 {
    CONTROL_PORT
}
fn default_qemu_binary() -> String {
    "qemu-system-x86_64".into()
}
fn default_termination_log() -> PathBuf {
    "/dev/termination-log".into()
}
fn default_nic_model() -> String {
    "virtio-net-pci".into()
}
fn default_hook_timeout() -> u64 {
    30
}
fn default_path() -> String {
    "/".into()
}
fn default_scheme() -> String {
    "http".into()
}

/// Config names: DNS labels, as the operator validates VM network and
/// volume names (QEMU ids are positional, so length is not an issue).
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `aa:bb:cc:dd:ee:ff`, unicast (lowest bit of the first octet clear).
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_uses_camel_case_and_defaults() {
        let json = r#"{"name":"web","namespace":"ns","uid":"u1","vcpus":2,"memoryBytes":1073741824,
            "disks":[{"name":"root","path":"/disks/root/disk.img","boot":true}],
            "nics":[{"name":"default","mac":"52:54:00:00:00:01"}],
            "hooks":{"preStart":{"exec":{"command":["true"]}}}}"#;
        let c: LaunchConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.disks[0].format, DiskFormat::Qcow2);
        assert_eq!(c.nics[0].kind, NicKind::Pod);
        assert_eq!(c.nics[0].model, "virtio-net-pci");
        assert_eq!(c.hooks.pre_start.as_ref().unwrap().timeout_seconds, 30);
        assert_eq!(c.shutdown_timeout_seconds, 60);
        assert_eq!(c.control_port, 8100);
        assert_eq!(
            c.qmp_socket_path(),
            PathBuf::from("/var/run/novacron/qmp.sock")
        );
        c.check().unwrap();
        let back = serde_json::to_value(&c).unwrap();
        assert!(back.get("memoryBytes").is_some() && back.get("shutdownTimeoutSeconds").is_some());
        assert_eq!(serde_json::from_value::<LaunchConfig>(back).unwrap(), c);
    }

    #[test]
    fn check_rejects_what_the_launcher_cannot_run() {
        let base = LaunchConfig::new("vm", "ns", "u", 1, 512 << 20);
        let mut c = base.clone();
        c.vcpus = 0;
        assert!(c.check().unwrap_err().to_string().contains("vcpus"));
        let mut c = base.clone();
        c.nics.push(NicConfig {
            name: "a".into(),
            model: default_nic_model(),
            mac: "01:00:00:00:00:01".into(),
            kind: NicKind::Pod,
            tap_device: None,
            bridge: None,
            forward_ports: vec![],
        });
        assert!(c.check().unwrap_err().to_string().contains("unicast"));
        c.nics[0].mac = "02:00:00:00:00:01".into();
        c.nics[0].kind = NicKind::Tap;
        assert!(c.check().unwrap_err().to_string().contains("tapDevice"));
        let mut c = base.clone();
        c.hooks.pre_stop = Some(HookConfig {
            exec: None,
            http_get: None,
            timeout_seconds: 1,
        });
        assert!(c.check().unwrap_err().to_string().contains("exactly one"));
        let mut c = base;
        c.host_devices.push(HostDeviceConfig {
            name: "gpu-0".into(),
            kind: HostDeviceKind::Gpu,
            pci_address: None,
            resource_env: None,
        });
        assert!(c.check().unwrap_err().to_string().contains("pciAddress"));
    }

    #[test]
    fn incoming_defaults_and_checks() {
        let json = r#"{"name":"web","namespace":"ns","uid":"u1","vcpus":1,"memoryBytes":268435456,
            "incoming":{"tls":true,"compression":"zstd"}}"#;
        let c: LaunchConfig = serde_json::from_str(json).unwrap();
        let inc = c.incoming.as_ref().unwrap();
        assert_eq!(inc.listen, "0.0.0.0:8101");
        assert_eq!(inc.compression, crate::api::Compression::Zstd);
        assert_eq!(
            c.migration_tls_dir(),
            PathBuf::from("/etc/novacron/migration-tls")
        );
        c.check().unwrap();
        let mut bad = c.clone();
        bad.incoming.as_mut().unwrap().listen = "8101".into();
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("incoming.listen")
        );
        // Post-copy over multifd (compression) is refused (QEMU 7.2 aborts).
        let mut pc = c.clone();
        pc.incoming.as_mut().unwrap().post_copy = true;
        assert!(pc.check().unwrap_err().to_string().contains("postCopy"));
        pc.incoming.as_mut().unwrap().compression = crate::api::Compression::None;
        pc.check().unwrap();
        // A config without the new fields serializes as before.
        let plain = serde_json::to_value(LaunchConfig::new("a", "b", "c", 1, 1 << 30)).unwrap();
        assert!(plain.get("incoming").is_none() && plain.get("migrationTlsDir").is_none());
    }

    #[test]
    fn http_hook_url() {
        let h = HttpGetHook {
            host: None,
            port: 8080,
            path: "ready".into(),
            scheme: "HTTP".into(),
        };
        assert_eq!(h.url(), "http://127.0.0.1:8080/ready");
    }

    #[test]
    fn mac_check() {
        assert!(is_mac("52:54:00:ab:CD:01"));
        assert!(!is_mac("52:54:00:ab:cd"));
        assert!(!is_mac("03:54:00:ab:cd:01"));
    }
}
