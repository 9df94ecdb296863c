//! Shared by `tests/migration.rs` and `benches/migration.rs`: the operator
//! in-process on the local control plane (with the deploy manifests' RBAC),
//! fake nodes in pools, and real `novacron-launcher` processes running the
//! operator's launch configs under QEMU (software emulation) on loopback.
//!
//! How the pieces meet: KWOK runs no containers, so each launcher pod's
//! control port is routed by a KWOK `PortForward` to a local launcher, and
//! the operator reaches it exactly as in a cluster (the API server's pod
//! port-forward). The migration stream goes from the source launcher to
//! the target pod's IP on port 8101, as in a cluster; KWOK gives pods fake
//! IPs, so the test sets the target pod's `status.podIP` to a loopback
//! address (127.0.0.x, one per test) and starts the target launcher
//! listening there. Everything else (pod, ConfigMap, certificates, what the
//! source is asked) is the operator's own.
#![allow(dead_code)]

#[path = "../shipped_rbac/mod.rs"]
mod shipped_rbac;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use envtest::FakeNode;
use envtest::kwok::{ForwardTarget, forward_port};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use novacron_launcher::api::{LauncherStatus, MigrationStatus};
use novacron_launcher::config::{Accel, DiskFormat, LaunchConfig};
use novacron_operator::crd::{VirtualMachine, VmPhase};
use novacron_operator::settings::Settings;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const MANAGER: &str = "novacron-migration-tests";
pub const POOL_LABEL: &str = "novacron.io/test-pool";
/// Guest memory (the CRD's minimum).
pub const GUEST_MEMORY: u64 = 512 << 20;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pools of fake nodes: each test's VMs select one, so a cordon in one test
/// touches no other test's VMs.
fn nodes() -> Vec<FakeNode> {
    let mut n = Vec::new();
    for (pool, names) in [
        ("migration", &["mig-a", "mig-b", "mig-c"][..]),
        ("cancel", &["cancel-a", "cancel-b"][..]),
        ("drain", &["drain-a", "drain-b"][..]),
        ("bench", &["bench-a", "bench-b"][..]),
        ("postcopy", &["postcopy-a", "postcopy-b"][..]),
    ] {
        for name in names {
            n.push(FakeNode::new(name).label(POOL_LABEL, pool));
        }
    }
    n
}

/// Starts the CRDs, the fake node pools and the operator once per binary,
/// on a runtime of its own.
pub fn operator(max_parallel_migrations: u32) {
    static OP: OnceLock<()> = OnceLock::new();
    OP.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let admin = envtest::client().await.unwrap();
                let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../deploy/novacron-operator/crds");
                envtest::manifest::install_crd_dir(&admin, &dir)
                    .await
                    .unwrap();
                envtest::kwok::register_nodes(&admin, &nodes())
                    .await
                    .unwrap();
                let client = shipped_rbac::operator_client(&admin, &["rbac.yaml"]).await;
                let settings = Settings {
                    status_interval: Duration::from_secs(5),
                    max_parallel_migrations,
                    ..Settings::default()
                };
                let args = operator_core::cli::RunArgs {
                    metrics_addr: ([127, 0, 0, 1], free_port()).into(),
                    concurrency: 8,
                    ..Default::default()
                };
                let op = operator_core::Operator {
                    name: novacron_operator::controllers::OPERATOR,
                    version: env!("CARGO_PKG_VERSION"),
                    revision: "test",
                    crds: novacron_operator::crd::all,
                };
                let run = tokio::spawn(async move {
                    operator_core::runtime::run_with_client(
                        &op,
                        args,
                        client,
                        operator_core::metrics::Metrics::new(),
                        move |rt| novacron_operator::controllers::run_with(rt, settings),
                    )
                    .await
                });
                tx.send(()).unwrap();
                run.await.unwrap().unwrap();
            });
        });
        rx.recv_timeout(Duration::from_secs(180))
            .expect("the operator started");
    });
}

/// Fails (never skips) when a tool is missing.
pub fn require_tools() {
    for tool in ["qemu-system-x86_64", "qemu-img", "genisoimage"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: install qemu-system-x86, qemu-utils and genisoimage (hack/test.sh does)"
        );
    }
}

/// The workspace's launcher binary (see tests/vms.rs: built by `cargo build
/// -p novacron-launcher`, and not older than its sources).
pub fn launcher_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    let bin = target.join("debug/novacron-launcher");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build it with `cargo build -p novacron-launcher` (cargo test --workspace does)",
                bin.display()
            )
        });
    let sources = workspace.join("crates/novacron-launcher/src");
    for entry in std::fs::read_dir(&sources).unwrap() {
        let path = entry.unwrap().path();
        let changed = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(
            changed <= built,
            "{} is older than {}: rebuild it with `cargo build -p novacron-launcher`",
            bin.display(),
            path.display()
        );
    }
    bin
}

/// A tiny x86 guest (a boot sector, as in the launcher's tests) that fills
/// its RAM with pseudo-random data, prints `F`, then a `.` heartbeat from
/// its timer interrupt: migrated memory is real data, and the guest's code
/// visibly keeps running after the switch.
pub fn fill_guest_disk(path: &Path, memory_bytes: u64) {
    #[rustfmt::skip]
    let mut code: Vec<u8> = vec![
        0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xe4, 0x92, 0x0c, 0x02, 0xe6, 0x92, 0x66,
        0x0f, 0x01, 0x16, 0xc0, 0x7c, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01,
        0x0f, 0x22, 0xc0, 0x66, 0xea, 0x23, 0x7c, 0x00, 0x00, 0x08, 0x00, 0x66,
        0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x70,
        0x00, 0x00, 0xbf, 0x00, 0x00, 0x10, 0x00, 0x8b, 0x0d, 0xcc, 0x7c, 0x00,
        0x00, 0xb8, 0xb9, 0x79, 0x37, 0x9e, 0x89, 0xc3, 0xc1, 0xe3, 0x0d, 0x31,
        0xd8, 0x89, 0xc3, 0xc1, 0xeb, 0x11, 0x31, 0xd8, 0x89, 0xc3, 0xc1, 0xe3,
        0x05, 0x31, 0xd8, 0xab, 0x49, 0x75, 0xe7, 0x66, 0xba, 0xf8, 0x03, 0xb0,
        0x46, 0xee, 0xbf, 0x00, 0x80, 0x00, 0x00, 0xb9, 0x00, 0x01, 0x00, 0x00,
        0xb8, 0x9b, 0x7c, 0x08, 0x00, 0xab, 0xb8, 0x00, 0x8e, 0x00, 0x00, 0xab,
        0x49, 0x75, 0xf1, 0x0f, 0x01, 0x1d, 0xc6, 0x7c, 0x00, 0x00, 0xb0, 0xfe,
        0xe6, 0x21, 0xb0, 0xff, 0xe6, 0xa1, 0x31, 0xdb, 0xfb, 0xf4, 0x43, 0x83,
        0xfb, 0x09, 0x72, 0xf9, 0x31, 0xdb, 0xb0, 0x2e, 0xee, 0xeb, 0xf2, 0x50,
        0xb0, 0x20, 0xe6, 0x20, 0x58, 0xcf, 0x8d, 0xb6, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00,
        0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
        0x17, 0x00, 0xa8, 0x7c, 0x00, 0x00, 0xff, 0x07, 0x00, 0x80, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(code.len(), 208);
    let count = (memory_bytes.saturating_sub(2 << 20) / 4) as u32;
    code[204..].copy_from_slice(&count.to_le_bytes());
    boot_disk(path, &code);
}

/// A guest (a boot sector) that rewrites its RAM from 1 MiB up with
/// xorshift32 data pass after pass, printing `.` after each: it dirties
/// memory far faster than a capped link copies it, so pre-copy cannot
/// converge. A copy of the launcher's `dirty_guest_disk`
/// (crates/novacron-launcher/tests/common/mod.rs, with its assembly
/// source): that module cannot be included here (it needs the launcher
/// crate's own `CARGO_BIN_EXE_*`), and these 140 bytes are all it takes.
pub fn dirty_guest_disk(path: &Path, memory_bytes: u64) {
    #[rustfmt::skip]
    let mut code: Vec<u8> = vec![
        0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xe4, 0x92, 0x0c, 0x02, 0xe6, 0x92, 0x66,
        0x0f, 0x01, 0x16, 0x80, 0x7c, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01,
        0x0f, 0x22, 0xc0, 0x66, 0xea, 0x23, 0x7c, 0x00, 0x00, 0x08, 0x00, 0x66,
        0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x70,
        0x00, 0x00, 0xb8, 0xb9, 0x79, 0x37, 0x9e, 0x66, 0xba, 0xf8, 0x03, 0xbf,
        0x00, 0x00, 0x10, 0x00, 0x8b, 0x0d, 0x88, 0x7c, 0x00, 0x00, 0x89, 0xc3,
        0xc1, 0xe3, 0x0d, 0x31, 0xd8, 0x89, 0xc3, 0xc1, 0xeb, 0x11, 0x31, 0xd8,
        0x89, 0xc3, 0xc1, 0xe3, 0x05, 0x31, 0xd8, 0xab, 0x49, 0x75, 0xe7, 0x89,
        0xc3, 0xb0, 0x2e, 0xee, 0x89, 0xd8, 0xeb, 0xd3, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
        0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0x17, 0x00, 0x68, 0x7c,
        0x00, 0x00, 0x66, 0x90, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(code.len(), 140);
    let count = (memory_bytes.saturating_sub(2 << 20) / 4) as u32;
    code[136..].copy_from_slice(&count.to_le_bytes());
    boot_disk(path, &code);
}

/// A 1 MiB raw disk booting `code`.
fn boot_disk(path: &Path, code: &[u8]) {
    let mut disk = vec![0u8; 1 << 20];
    disk[..code.len()].copy_from_slice(code);
    disk[510] = 0x55;
    disk[511] = 0xAA;
    std::fs::write(path, disk).unwrap();
}

/// One HTTP/1.1 exchange with a local launcher's control port.
pub async fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("launcher on {port}: {e}"));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    novacron_operator::provider::parse_response(&raw).unwrap()
}

/// A `novacron-launcher` process running an operator-made launch config
/// with its pod paths moved into `dir`.
pub struct LocalLauncher {
    pub child: tokio::process::Child,
    pub port: u16,
    pub dir: PathBuf,
    pub config: LaunchConfig,
}

impl LocalLauncher {
    /// Starts the launcher with its control API on `127.0.0.1:port`.
    pub async fn start(config: LaunchConfig, dir: &Path, port: u16) -> LocalLauncher {
        std::fs::create_dir_all(&config.run_dir).unwrap();
        let path = dir.join("launch.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.join("launcher.log")).unwrap();
        let child = tokio::process::Command::new(launcher_binary())
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        LocalLauncher {
            child,
            port,
            dir: dir.to_owned(),
            config,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("launcher.log")).unwrap_or_default()
    }

    pub fn serial(&self) -> String {
        std::fs::read_to_string(self.config.run_dir.join("serial.log")).unwrap_or_default()
    }

    /// `None` once the process is gone.
    pub async fn status(&self) -> Option<LauncherStatus> {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await;
        if s.is_err() {
            return None;
        }
        let (code, body) = http(self.port, "GET", "/status", None).await;
        (code == 200).then(|| serde_json::from_slice(&body).unwrap())
    }

    pub async fn migration(&self) -> Option<MigrationStatus> {
        self.status().await.and_then(|s| s.migration)
    }

    /// Waits until the guest's serial log shows `n` heartbeats (`.`).
    pub async fn wait_heartbeats(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.serial().matches('.').count() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} guest heartbeats in {within:?}: {:?}\nlauncher log:\n{}",
                self.serial(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the guest has filled its RAM (its serial log says `F`).
    pub async fn wait_filled(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.serial().contains('F') {
            assert!(
                Instant::now() < deadline,
                "the guest did not fill its memory; launcher log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The operator's launch config with pod paths moved into `dir`: the shared
/// raw disk (like a ReadWriteMany claim both launchers see), the run
/// directory, and the certificates the operator issued (from its Secret).
pub fn localize(
    mut config: LaunchConfig,
    dir: &Path,
    disk: &Path,
    tls: Option<&Path>,
) -> LaunchConfig {
    config.disks[0].path = disk.to_owned();
    config.disks[0].format = DiskFormat::Raw;
    config.run_dir = dir.join("run");
    config.termination_message_path = dir.join("termination-log");
    config.accel = Accel::Tcg;
    if config.migration_tls_dir.is_some() {
        config.migration_tls_dir = tls.map(Path::to_owned);
    }
    config
}

/// Writes the operator's migration Secret into `dir` (QEMU's file names).
pub async fn write_tls(client: &Client, ns: &str, vm: &str, dir: &Path) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = format!("{vm}-migration-tls");
    let s = envtest::eventually(
        "migration certificates",
        Duration::from_secs(60),
        || async { secrets.get_opt(&name).await.ok()? },
    )
    .await;
    std::fs::create_dir_all(dir).unwrap();
    for (k, v) in s.data.unwrap() {
        std::fs::write(dir.join(k), v.0).unwrap();
    }
}

/// The launch config in the ConfigMap a pod mounts.
pub async fn pod_config(client: &Client, ns: &str, pod: &Pod) -> LaunchConfig {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "launch"))
        .and_then(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
        .expect("a launch volume");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = envtest::eventually("launch ConfigMap", Duration::from_secs(60), || async {
        cms.get_opt(&name).await.ok()?
    })
    .await;
    serde_json::from_str(&cm.data.unwrap()["launch.json"]).unwrap()
}

/// A VM of `pool` whose root disk (pre-created, ReadWriteMany) is a
/// boot-sector [`Guest`], running under a local launcher.
pub struct RunningVm {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub tls: PathBuf,
    pub source: LocalLauncher,
    pub node: String,
}

pub fn vm_manifest(name: &str, pool: &str, policy: Value) -> Value {
    json!({
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "running": true,
            "migrationPolicy": policy,
            "template": {"spec": {
                "resources": {"cpu": 1, "memory": "512Mi", "disk": "1Gi"},
                "image": {"source": "https://images.example.com/fill.img", "pullPolicy": "Never"},
                "rootDiskAccessMode": "ReadWriteMany",
                "nodeSelector": {POOL_LABEL: pool},
                "terminationGracePeriodSeconds": 3,
            }},
        },
    })
}

/// The root disk claim `pullPolicy: Never` expects (KWOK binds it).
pub async fn root_disk_claim(client: &Client, ns: &str, vm: &str) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": format!("{vm}-rootdisk")},
        "spec": {"accessModes": ["ReadWriteMany"], "volumeMode": "Filesystem",
                 "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &pvc).await.unwrap();
}

/// The boot-sector guest a VM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// [`fill_guest_disk`]: fills its RAM once, then a timer heartbeat.
    Fill,
    /// [`dirty_guest_disk`]: rewrites all of its RAM pass after pass (a `.`
    /// each), far faster than a capped link copies it.
    Dirty,
}

pub async fn start_vm(
    client: &Client,
    ns: &str,
    name: &str,
    pool: &str,
    policy: Value,
) -> RunningVm {
    start_vm_with(client, ns, name, pool, policy, Guest::Fill).await
}

/// [`start_vm`] with the guest to boot; returns once the guest's RAM holds
/// its data (filled, or one full dirtying pass done).
pub async fn start_vm_with(
    client: &Client,
    ns: &str,
    name: &str,
    pool: &str,
    policy: Value,
    guest: Guest,
) -> RunningVm {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("guest.img");
    match guest {
        Guest::Fill => fill_guest_disk(&disk, GUEST_MEMORY),
        Guest::Dirty => dirty_guest_disk(&disk, GUEST_MEMORY),
    }
    let tls = dir.path().join("tls");
    let port = free_port();
    forward_port(
        client,
        ns,
        &format!("{name}-launcher"),
        8100,
        ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port,
        },
    )
    .await
    .unwrap();
    root_disk_claim(client, ns, name).await;
    let manifest = vm_manifest(name, pool, policy);
    envtest::manifest::apply_yaml(client, &manifest.to_string(), ns, MANAGER)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{manifest:#}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = envtest::eventually("launcher pod", Duration::from_secs(90), || async {
        pods.get_opt(&format!("{name}-launcher")).await.ok()?
    })
    .await;
    let encrypted = policy_encrypted(&manifest);
    if encrypted {
        write_tls(client, ns, name, &tls).await;
    }
    let config = pod_config(client, ns, &pod).await;
    let source_dir = dir.path().join("source");
    std::fs::create_dir_all(&source_dir).unwrap();
    let config = localize(
        config,
        &source_dir,
        &disk,
        encrypted.then_some(tls.as_path()),
    );
    // The launcher listens where the port-forward leads.
    let source = LocalLauncher::start(config, &source_dir, port).await;
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(120);
    let vm = loop {
        let vm = vms.get(name).await.unwrap();
        if vm.status.as_ref().and_then(|s| s.phase) == Some(VmPhase::Running) {
            break vm;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not Running: {:#?}\nlauncher log:\n{}",
            vm.status,
            source.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    match guest {
        Guest::Fill => source.wait_filled().await,
        Guest::Dirty => source.wait_heartbeats(1, Duration::from_secs(60)).await,
    }
    let node = vm.status.unwrap().node_name.expect("a node");
    RunningVm {
        name: name.into(),
        dir,
        disk,
        tls,
        source,
        node,
    }
}

fn policy_encrypted(manifest: &Value) -> bool {
    let p = &manifest["spec"]["migrationPolicy"];
    p["allowLiveMigration"].as_bool() == Some(true) && p["encrypted"].as_bool() != Some(false)
}

/// Routes the target pod of `migration_uid` to a local port (before the
/// pod exists), then, once the operator created and KWOK started the pod,
/// gives it the loopback address `ip`, and starts the target launcher from
/// the pod's own launch config, listening on `ip:8101`.
pub async fn receive(
    client: &Client,
    ns: &str,
    vm: &RunningVm,
    target_pod: &str,
    ip: &str,
) -> LocalLauncher {
    let port = free_port();
    forward_port(
        client,
        ns,
        target_pod,
        8100,
        ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port,
        },
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = envtest::eventually("target pod running", Duration::from_secs(90), || async {
        let p = pods.get_opt(target_pod).await.ok()??;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    pods.patch_status(
        target_pod,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}})),
    )
    .await
    .unwrap();
    let mut config = pod_config(client, ns, &pod).await;
    let incoming = config
        .incoming
        .as_mut()
        .expect("the target config receives");
    assert_eq!(incoming.listen, "0.0.0.0:8101");
    incoming.listen = format!("{ip}:8101");
    let dir = vm.dir.path().join(target_pod);
    std::fs::create_dir_all(&dir).unwrap();
    let tls = vm.dir.path().join("tls");
    let config = localize(config, &dir, &vm.disk, Some(&tls));
    LocalLauncher::start(config, &dir, port).await
}

pub fn phase(vm: &VirtualMachine) -> Option<VmPhase> {
    vm.status.as_ref().and_then(|s| s.phase)
}

pub fn pod_names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}
