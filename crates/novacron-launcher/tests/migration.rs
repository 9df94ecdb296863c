//! Live migration against real QEMU (software emulation).
//!
//! - The building blocks with bare QEMU: a source VM migrates to a
//!   `-incoming defer` target (zstd multifd, bandwidth cap, auto-converge;
//!   and over TLS with x509 certificates made by rcgen).
//! - Two launcher PROCESSES (the real binary) on loopback: a running VM
//!   whose guest filled its RAM with incompressible data migrates from one
//!   to the other with TLS, zstd compression and a bandwidth cap, all read
//!   back from QEMU; the guest runs on the target, the source exits
//!   `Migrated`. A guest that dirties its memory faster than the capped
//!   link copies it migrates with post-copy (over TLS): the source switches
//!   after the first pass, the guest runs on the target. Failure paths (nobody listening, target killed mid-way,
//!   timeout, a target that gives up) and cancellation leave the VM
//!   running on the source.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    Launcher, dirty_guest_disk, fill_guest_disk, free_port, guest_filled, guest_heartbeats, http,
    http_json, require, vm_config,
};
use novacron_launcher::api::{
    Compression, LauncherPhase, LauncherStatus, MigrationPhase, MigrationRole, MigrationStatus,
};
use novacron_launcher::config::{DiskFormat, IncomingConfig, LaunchConfig};
use novacron_launcher::migration::{self, MigrationOptions, Side};
use novacron_launcher::migrator::EXIT_MIGRATION_FAILED;
use novacron_launcher::qemu::{self, HostFacts, ResolvedAccel};
use novacron_launcher::qmp::Qmp;
use serde_json::json;

#[tokio::test]
async fn a_vm_migrates_live_to_a_deferred_incoming_target() {
    let dir = tempfile::tempdir().unwrap();
    let opts = MigrationOptions {
        max_bandwidth_bytes: Some(512 << 20),
        compression: Compression::Zstd,
        multifd_channels: Some(2),
        auto_converge: true,
        post_copy: false,
        downtime_limit_ms: Some(500),
        tls_dir: None,
        tls_hostname: None,
    };
    migrate_locally(dir.path(), &opts).await;
}

#[tokio::test]
async fn a_vm_migrates_live_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    write_tls_files(&tls);
    let opts = MigrationOptions {
        tls_dir: Some(tls),
        ..Default::default()
    };
    migrate_locally(dir.path(), &opts).await;
}

/// CA, server (127.0.0.1) and client certificates in QEMU's file layout.
fn write_tls_files(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "novacron migration CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    std::fs::write(dir.join("ca-cert.pem"), ca_cert.pem()).unwrap();
    let server_sans = vec!["127.0.0.1".to_string(), "localhost".into()];
    let client_sans = vec!["novacron-launcher".to_string()];
    for (name, sans, usage) in [
        ("server", server_sans, ExtendedKeyUsagePurpose::ServerAuth),
        ("client", client_sans, ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}-cert.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

async fn migrate_locally(dir: &Path, opts: &MigrationOptions) {
    require(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
    ]);
    let mut source = vm_config(dir, "mig");
    source.run_dir = dir.join("source");
    let mut target = source.clone();
    target.run_dir = dir.join("target");

    let spawn = |config: &novacron_launcher::config::LaunchConfig, extra: Vec<String>| {
        std::fs::create_dir_all(&config.run_dir).unwrap();
        let mut args = qemu::command_line(
            config,
            &HostFacts {
                accel: ResolvedAccel::Tcg,
                seed_iso: None,
                pci: &[],
            },
        );
        args.extend(extra);
        tokio::process::Command::new("qemu-system-x86_64")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut src_proc = spawn(&source, migration::tls_object_args(opts, Side::Source));
    let mut target_extra = migration::tls_object_args(opts, Side::Target);
    target_extra.extend(migration::incoming_args());
    let mut dst_proc = spawn(&target, target_extra);
    let src = Qmp::connect_with_retry(&source.qmp_socket_path(), Duration::from_secs(30))
        .await
        .unwrap();
    let dst = Qmp::connect_with_retry(&target.qmp_socket_path(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(src.query_status().await.unwrap(), "running");
    assert_eq!(dst.query_status().await.unwrap(), "inmigrate");

    // QEMU accepts the built capabilities and parameters on both sides.
    for q in [&src, &dst] {
        q.execute(
            "migrate-set-capabilities",
            Some(migration::capabilities(opts)),
        )
        .await
        .unwrap();
        q.execute("migrate-set-parameters", Some(migration::parameters(opts)))
            .await
            .unwrap();
    }
    let params = src.execute("query-migrate-parameters", None).await.unwrap();
    if let Some(bw) = opts.max_bandwidth_bytes {
        assert_eq!(params["max-bandwidth"], bw);
    }
    if opts.compression == Compression::Zstd {
        assert_eq!(params["multifd-compression"], "zstd");
    }
    if opts.tls_dir.is_some() {
        assert_eq!(params["tls-creds"], migration::TLS_CREDS_ID);
    }

    let port = free_port();
    dst.execute("migrate-incoming", Some(migration::migrate_incoming(port)))
        .await
        .unwrap();
    src.execute("migrate", Some(migration::migrate("127.0.0.1", port)))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let p = migration::progress(&src.execute("query-migrate", None).await.unwrap());
        if p.is_done() {
            break p;
        }
        assert!(Instant::now() < deadline, "migration did not finish: {p:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.status, "completed", "{done:?}");
    assert_eq!(done.percent, 100.0);
    assert!(done.transferred_bytes > 0);

    let deadline = Instant::now() + Duration::from_secs(30);
    while dst.query_status().await.unwrap() != "running" {
        assert!(Instant::now() < deadline, "target did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(src.query_status().await.unwrap(), "postmigrate");

    for q in [&src, &dst] {
        let _ = q.execute("quit", None).await;
    }
    let _ = src_proc.wait().await;
    let _ = dst_proc.wait().await;
}

const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
];

/// Guest RAM of the launcher tests: filled by the guest, so at a 4 MiB/s
/// cap a migration takes ~30 s (time to cancel or kill mid-way).
const GUEST_MEMORY: u64 = 128 << 20;
const SLOW: u64 = 4 << 20;

/// A source launcher running the fill guest, and a config for its target.
struct Pair {
    root: tempfile::TempDir,
    source_config: LaunchConfig,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_guest(fill_guest_disk)
    }

    /// `guest` writes the boot disk for a guest of the given RAM size.
    fn with_guest(guest: fn(&Path, u64)) -> Pair {
        require(TOOLS);
        let root = tempfile::tempdir().unwrap();
        let mut c = vm_config(root.path(), "mig");
        c.memory_bytes = GUEST_MEMORY;
        // The shared disk (both launchers see it, like an RWX PVC).
        let disk = root.path().join("fill.img");
        guest(&disk, GUEST_MEMORY);
        c.disks[0].path = disk;
        c.disks[0].format = DiskFormat::Raw;
        let tls = root.path().join("tls");
        write_tls_files(&tls);
        c.migration_tls_dir = Some(tls);
        Pair {
            root,
            source_config: c,
        }
    }

    fn launcher(&self, name: &str, incoming: Option<IncomingConfig>) -> Launcher {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = self.source_config.clone();
        c.run_dir = dir.join("run");
        c.termination_message_path = dir.join("termination-log");
        c.incoming = incoming;
        Launcher::start(&c, &dir)
    }

    /// A source whose guest has filled its RAM.
    fn running_source(&self) -> Launcher {
        let source = self.launcher("source", None);
        source.wait_status("source Running", Duration::from_secs(60), |s| {
            s.phase == LauncherPhase::Running
        });
        let serial = source.dir.join("run/serial.log");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !guest_filled(&serial) {
            assert!(
                Instant::now() < deadline,
                "the guest did not fill its memory"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        source
    }

    /// A target waiting on a fresh loopback port.
    fn waiting_target(&self, name: &str, incoming: IncomingConfig) -> (Launcher, String) {
        let listen = format!("127.0.0.1:{}", free_port());
        let target = self.launcher(
            name,
            Some(IncomingConfig {
                listen: listen.clone(),
                ..incoming
            }),
        );
        target.wait_status("target waiting", Duration::from_secs(60), |s| {
            migration_of(s).is_some_and(|m| m.phase == MigrationPhase::WaitingForMigration)
        });
        (target, listen)
    }
}

fn migration_of(s: &LauncherStatus) -> Option<&MigrationStatus> {
    s.migration.as_ref()
}

fn get_migration(l: &Launcher) -> Option<MigrationStatus> {
    l.status().and_then(|s| s.migration)
}

fn post_migrate(l: &Launcher, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (code, body) = http_json("POST", l.port, "/migrate", &body).unwrap();
    (
        code,
        serde_json::from_str(&body).unwrap_or(json!({ "raw": body })),
    )
}

/// Waits until the source's migration is moving data.
fn wait_streaming(source: &Launcher) -> MigrationStatus {
    let s = source.wait_status("data moving", Duration::from_secs(60), |s| {
        migration_of(s).is_some_and(|m| {
            m.phase == MigrationPhase::Migrating
                && m.progress.as_ref().is_some_and(|p| p.transferred_bytes > 0)
        })
    });
    s.migration.unwrap()
}

fn assert_source_keeps_running(source: &Launcher) {
    let s = source.status().expect("source still serving");
    assert_eq!(s.phase, LauncherPhase::Running, "{s:?}");
    assert_eq!(s.qemu_status.as_deref(), Some("running"), "{s:?}");
}

#[test]
fn a_running_vm_migrates_between_two_launchers_with_tls_compression_and_a_bandwidth_cap() {
    let pair = Pair::new();
    let mut source = pair.running_source();
    let (mut target, listen) = pair.waiting_target(
        "target",
        IncomingConfig {
            compression: Compression::Zstd,
            multifd_channels: Some(2),
            tls: true,
            ..Default::default()
        },
    );
    // The target set what must match before listening; QEMU confirms.
    let t = get_migration(&target).unwrap();
    assert_eq!(t.role, MigrationRole::Target);
    let ts = t.settings.unwrap();
    assert!(ts.capabilities.contains(&"multifd".to_string()), "{ts:?}");
    assert_eq!(
        (ts.compression.as_str(), ts.multifd_channels),
        ("zstd", Some(2))
    );
    assert_eq!(ts.tls_creds, migration::TLS_CREDS_ID);
    assert_eq!(target.status().unwrap().phase, LauncherPhase::Starting);
    assert_eq!(
        target.status().unwrap().qemu_status.as_deref(),
        Some("inmigrate")
    );

    let cap: u64 = 48 << 20;
    let (code, started) = post_migrate(
        &source,
        json!({"target": listen, "bandwidthBytesPerSecond": cap, "compression": "zstd",
               "multifdChannels": 2, "tls": true, "tlsHostname": "localhost",
               "autoConverge": true, "downtimeLimitMs": 400, "timeoutSeconds": 240}),
    );
    assert_eq!(code, 202, "{started}");
    let started: MigrationStatus = serde_json::from_value(started).unwrap();
    assert_eq!(
        (started.role, started.phase),
        (MigrationRole::Source, MigrationPhase::Migrating)
    );
    // What QEMU reports after the launcher set it (query-migrate-parameters
    // and -capabilities), not what was asked.
    let s = started.settings.unwrap();
    assert_eq!(s.max_bandwidth_bytes, Some(cap));
    assert_eq!(s.compression, "zstd");
    assert_eq!(s.multifd_channels, Some(2));
    assert_eq!(s.tls_creds, migration::TLS_CREDS_ID);
    assert_eq!(s.tls_hostname, "localhost");
    assert_eq!(s.downtime_limit_ms, Some(400));
    for cap in ["multifd", "auto-converge"] {
        assert!(s.capabilities.contains(&cap.to_string()), "{cap}: {s:?}");
    }
    // A second migration of the same VM is refused while one runs.
    let (code, again) = post_migrate(&source, json!({"target": listen}));
    assert_eq!(code, 409, "{again}");

    // Progress while streaming: the guest's 128 MiB of data at the cap.
    let mut seen_progress = None;
    let deadline = Instant::now() + Duration::from_secs(240);
    let code = loop {
        if let Some(code) = source.child.try_wait().unwrap() {
            break code;
        }
        if let Some(m) = get_migration(&source)
            && let Some(p) = &m.progress
            && p.status == "active"
            && p.transferred_bytes > 0
        {
            seen_progress = Some(p.clone());
        }
        assert!(
            Instant::now() < deadline,
            "migration did not finish; log:\n{}",
            source.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        code.success(),
        "source exit {code:?}; log:\n{}",
        source.log()
    );
    let term = source.termination();
    assert_eq!(
        (term["phase"].as_str(), term["reason"].as_str()),
        (Some("Stopped"), Some("Migrated")),
        "{term}"
    );
    let message = term["message"].as_str().unwrap();
    assert!(message.contains(&listen), "{term}");
    // The guest's filled RAM really moved (not just zero pages).
    let mib: u64 = message
        .split(", ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no transferred MiB in {message:?}"));
    assert!(mib >= (GUEST_MEMORY >> 20) * 3 / 4, "{message}");
    // The cap holds (loosely: QEMU allows bursts at each 100 ms slot).
    let ms: f64 = message
        .split(" in ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        ms / 1000.0 >= mib as f64 / (cap >> 20) as f64 * 0.5,
        "{message}"
    );
    println!("source: {message}");
    // Restarted in the same pod (same run directory), the source does not
    // boot the VM a second time next to the target.
    let mut again = pair.launcher("source", None);
    assert!(
        again.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        again.log()
    );
    assert_eq!(again.termination()["reason"], "MigratedAway");
    assert!(!again.log().contains("starting QEMU"), "{}", again.log());
    let p = seen_progress.expect("progress was reported while active");
    assert!(
        p.total_bytes >= GUEST_MEMORY && p.remaining_bytes > 0,
        "{p:?}"
    );
    assert!(p.speed_bytes_per_second.is_some(), "{p:?}");

    // The guest runs on the target now.
    let t = target.wait_status("target Running", Duration::from_secs(30), |s| {
        s.phase == LauncherPhase::Running
            && migration_of(s).is_some_and(|m| m.phase == MigrationPhase::Completed)
    });
    assert_eq!(t.qemu_status.as_deref(), Some("running"));
    // The guest's code runs there: its timer-driven heartbeat (with the
    // PIT, PIC and CPU state carried over) keeps printing on the target's
    // serial port, which only existed after the switch.
    let serial = target.dir.join("run/serial.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while guest_heartbeats(&serial) < 3 {
        assert!(
            Instant::now() < deadline,
            "no guest output on the target: {:?}",
            std::fs::read_to_string(&serial)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !std::fs::read_to_string(&serial).unwrap().contains('F'),
        "the target did not boot the guest anew"
    );
    assert_eq!(
        target.status().unwrap().qemu_status.as_deref(),
        Some("running")
    );

    // The launcher that received the VM can send it on (no TLS this time).
    let (mut next, listen) = pair.waiting_target("next", IncomingConfig::default());
    let (code, r) = post_migrate(&target, json!({"target": listen}));
    assert_eq!(code, 202, "{r}");
    assert!(
        target.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        target.log()
    );
    assert_eq!(target.termination()["reason"], "Migrated");
    next.wait_status("next Running", Duration::from_secs(30), |s| {
        s.phase == LauncherPhase::Running
    });
    let (code, _) = http("POST", next.port, "/shutdown").unwrap();
    assert_eq!(code, 202);
    assert!(next.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn a_guest_that_dirties_memory_faster_than_the_link_migrates_with_post_copy() {
    let pair = Pair::with_guest(dirty_guest_disk);
    let mut source = pair.launcher("source", None);
    source.wait_status("source Running", Duration::from_secs(60), |s| {
        s.phase == LauncherPhase::Running
    });
    // The guest rewrites all of its RAM pass after pass.
    let serial = source.dir.join("run/serial.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while guest_heartbeats(&serial) < 2 {
        assert!(
            Instant::now() < deadline,
            "the guest does not run its passes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut target, listen) = pair.waiting_target(
        "target",
        IncomingConfig {
            post_copy: true,
            tls: true,
            ..Default::default()
        },
    );
    // QEMU confirms postcopy-ram on the target before the stream starts.
    let ts = get_migration(&target).unwrap().settings.unwrap();
    assert!(
        ts.capabilities.contains(&"postcopy-ram".to_string()),
        "{ts:?}"
    );

    // Post-copy over multifd is refused up front (QEMU 7.2 aborts the
    // target of such a migration).
    let (code, err) = post_migrate(
        &source,
        json!({"target": listen, "postCopy": true, "compression": "zstd"}),
    );
    assert_eq!(code, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("postCopy"), "{err}");

    // 32 MiB/s: the first pass over 128 MiB takes ~4 s while the guest
    // dirties hundreds of MiB/s, so pre-copy cannot converge.
    let cap: u64 = 32 << 20;
    let started_at = Instant::now();
    let (code, started) = post_migrate(
        &source,
        json!({"target": listen, "postCopy": true, "tls": true, "tlsHostname": "localhost",
               "bandwidthBytesPerSecond": cap, "timeoutSeconds": 120}),
    );
    assert_eq!(code, 202, "{started}");
    let started: MigrationStatus = serde_json::from_value(started).unwrap();
    let s = started.settings.unwrap();
    assert!(
        s.capabilities.contains(&"postcopy-ram".to_string()),
        "{s:?}"
    );
    assert_eq!(
        (s.max_bandwidth_bytes, s.tls_creds.as_str()),
        (Some(cap), migration::TLS_CREDS_ID)
    );
    assert!(!started.postcopy);

    // Follow the source until it exits: it reports the switch (QEMU's
    // `postcopy-active`) after the first full pass.
    let mut switched = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    let code = loop {
        if let Some(code) = source.child.try_wait().unwrap() {
            break code;
        }
        if let Some(m) = get_migration(&source)
            && m.postcopy
            && switched.is_none()
        {
            switched = Some(m);
        }
        assert!(
            Instant::now() < deadline,
            "migration did not finish; log:\n{}",
            source.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started_at.elapsed();
    assert!(
        code.success(),
        "source exit {code:?}; log:\n{}",
        source.log()
    );
    let term = source.termination();
    assert_eq!(term["reason"], "Migrated", "{term}");
    let message = term["message"].as_str().unwrap();
    assert!(message.contains("post-copy"), "{term}");
    let log = source.log();
    assert!(log.contains("switched to post-copy"), "{log}");
    // QEMU's own word (its MIGRATION event).
    assert!(log.contains("postcopy-active"), "{log}");
    // When /status first showed the switch, the first pass was over (the
    // rule); QEMU's status may still say `active` for a moment.
    if let Some(m) = &switched {
        let p = m.progress.as_ref().unwrap();
        assert!(p.dirty_sync_count.unwrap_or(0) >= 2, "{p:?}");
        assert!(
            ["active", "postcopy-active", "completed"].contains(&p.status.as_str()),
            "{p:?}"
        );
    }
    println!(
        "source: {message} (switch seen in /status: {})",
        switched.is_some()
    );

    // The target has the VM: completed, in post-copy, and QEMU runs it.
    let t = target.wait_status("target Running", Duration::from_secs(30), |s| {
        s.phase == LauncherPhase::Running
            && migration_of(s).is_some_and(|m| m.phase == MigrationPhase::Completed)
    });
    assert_eq!(t.qemu_status.as_deref(), Some("running"));
    let m = t.migration.unwrap();
    assert!(m.postcopy, "{m:?}");
    assert!(
        m.settings
            .unwrap()
            .capabilities
            .contains(&"postcopy-ram".to_string())
    );
    // The guest keeps rewriting its memory there: new passes on the
    // target's serial port (each touches every page, so all arrived).
    let serial = target.dir.join("run/serial.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while guest_heartbeats(&serial) < 3 {
        assert!(
            Instant::now() < deadline,
            "no guest passes on the target: {:?}",
            std::fs::read_to_string(&serial)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(took < Duration::from_secs(60), "took {took:?}");
    let (code, _) = http("POST", target.port, "/shutdown").unwrap();
    assert_eq!(code, 202);
    assert!(target.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn failed_migrations_leave_the_vm_running_on_the_source() {
    let pair = Pair::new();
    let source = pair.running_source();
    // Bad requests are refused before QEMU sees them.
    for (body, want) in [
        (json!({"target": "nowhere"}), "host:port"),
        (
            json!({"target": "127.0.0.1:1", "compression": "lz4"}),
            "lz4",
        ),
        (
            json!({"target": "127.0.0.1:1", "timeoutSeconds": 0}),
            "timeoutSeconds",
        ),
    ] {
        let (code, err) = post_migrate(&source, body);
        assert_eq!(code, 400, "{err}");
        assert!(err["error"].as_str().unwrap().contains(want), "{err}");
    }
    let (code, _) = http("POST", source.port, "/migrate/cancel").unwrap();
    assert_eq!(code, 409, "nothing to cancel");

    // 1. Nobody listens at the target address.
    let (code, r) = post_migrate(
        &source,
        json!({"target": format!("127.0.0.1:{}", free_port())}),
    );
    let failed = if code == 202 {
        source.wait_status("migration failed", Duration::from_secs(30), |s| {
            migration_of(s).is_some_and(|m| m.phase == MigrationPhase::Failed)
        })
    } else {
        // QEMU may refuse the connection synchronously.
        assert_eq!(code, 500, "{r}");
        source.status().unwrap()
    };
    let m = failed.migration.as_ref().unwrap();
    assert!(m.message.to_lowercase().contains("refused"), "{m:?}");
    assert_source_keeps_running(&source);

    // 2. The target is killed mid-way (its QEMU dies with it).
    let (mut target, listen) = pair.waiting_target("target-killed", IncomingConfig::default());
    let (code, r) = post_migrate(
        &source,
        json!({"target": listen, "bandwidthBytesPerSecond": SLOW}),
    );
    assert_eq!(code, 202, "{r}");
    wait_streaming(&source);
    target.child.kill().unwrap();
    target.child.wait().unwrap();
    let s = source.wait_status("migration failed", Duration::from_secs(60), |s| {
        migration_of(s).is_some_and(|m| m.phase.is_final())
    });
    let m = s.migration.unwrap();
    assert_eq!(
        (m.phase, m.reason.as_str()),
        (MigrationPhase::Failed, "MigrationFailed"),
        "{m:?}"
    );
    assert!(m.message.contains("keeps running"), "{m:?}");
    assert_source_keeps_running(&source);

    // 3. Too slow for its timeout: cancelled by the launcher; the target
    // gives up (its QEMU ends with the broken stream).
    let (mut target, listen) = pair.waiting_target("target-timeout", IncomingConfig::default());
    let (code, r) = post_migrate(
        &source,
        json!({"target": listen, "bandwidthBytesPerSecond": SLOW, "timeoutSeconds": 3}),
    );
    assert_eq!(code, 202, "{r}");
    let s = source.wait_status("migration timed out", Duration::from_secs(60), |s| {
        migration_of(s).is_some_and(|m| m.phase.is_final())
    });
    let m = s.migration.unwrap();
    assert_eq!(
        (m.phase, m.reason.as_str()),
        (MigrationPhase::Failed, "MigrationTimeout"),
        "{m:?}"
    );
    assert_source_keeps_running(&source);
    let code = target.wait_exit(Duration::from_secs(60));
    assert_eq!(code.code(), Some(EXIT_MIGRATION_FAILED), "{}", target.log());
    assert_eq!(target.termination()["reason"], "IncomingMigrationFailed");

    // 4. A target nobody migrates to gives up after incoming.timeoutSeconds.
    let (mut idle, _) = pair.waiting_target(
        "target-idle",
        IncomingConfig {
            timeout_seconds: Some(2),
            ..Default::default()
        },
    );
    assert_eq!(
        idle.wait_exit(Duration::from_secs(30)).code(),
        Some(EXIT_MIGRATION_FAILED)
    );
    assert_eq!(idle.termination()["reason"], "IncomingMigrationTimeout");

    // 5. A shutdown during a migration cancels it first, then stops the VM
    // as usual (the fill guest ignores ACPI: ForcedStop after 2 s).
    let (mut target, listen) = pair.waiting_target("target-shutdown", IncomingConfig::default());
    let (code, r) = post_migrate(
        &source,
        json!({"target": listen, "bandwidthBytesPerSecond": SLOW}),
    );
    assert_eq!(code, 202, "{r}");
    wait_streaming(&source);
    let (code, _) = http("POST", source.port, "/shutdown").unwrap();
    assert_eq!(code, 202);
    let mut source = source;
    assert!(
        source.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        source.log()
    );
    assert_eq!(source.termination()["reason"], "ForcedStop");
    assert_eq!(
        target.wait_exit(Duration::from_secs(60)).code(),
        Some(EXIT_MIGRATION_FAILED)
    );
}

#[test]
fn cancelling_keeps_the_vm_on_the_source_and_ends_the_target() {
    let pair = Pair::new();
    let source = pair.running_source();
    let (mut target, listen) = pair.waiting_target("target", IncomingConfig::default());
    // A target refuses to migrate away a VM it does not run.
    let (code, r) = post_migrate(&target, json!({"target": "127.0.0.1:9"}));
    assert_eq!(code, 409, "{r}");

    let (code, r) = post_migrate(
        &source,
        json!({"target": listen, "bandwidthBytesPerSecond": SLOW}),
    );
    assert_eq!(code, 202, "{r}");
    let before = wait_streaming(&source);
    assert!(before.progress.unwrap().remaining_bytes > 0);
    target.wait_status("target receiving", Duration::from_secs(30), |s| {
        migration_of(s).is_some_and(|m| m.phase == MigrationPhase::Migrating)
    });

    let (code, body) = http("POST", source.port, "/migrate/cancel").unwrap();
    assert_eq!(code, 202, "{body}");
    let s = source.wait_status("migration cancelled", Duration::from_secs(30), |s| {
        migration_of(s).is_some_and(|m| m.phase.is_final())
    });
    let m = s.migration.unwrap();
    assert_eq!(
        (m.phase, m.reason.as_str()),
        (MigrationPhase::Cancelled, "Cancelled"),
        "{m:?}"
    );
    assert_eq!(m.progress.unwrap().status, "cancelled");
    assert_source_keeps_running(&source);
    // The target is cleaned up: its QEMU ends with the stream; exit 4.
    let code = target.wait_exit(Duration::from_secs(60));
    assert_eq!(code.code(), Some(EXIT_MIGRATION_FAILED), "{}", target.log());
    let term = target.termination();
    assert_eq!(
        (term["phase"].as_str(), term["reason"].as_str()),
        (Some("Failed"), Some("IncomingMigrationFailed")),
        "{term}"
    );

    // Cancelling on a waiting target: it gives up at once.
    let (mut idle, _) = pair.waiting_target("target-idle", IncomingConfig::default());
    let (code, body) = http("POST", idle.port, "/migrate/cancel").unwrap();
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        idle.wait_exit(Duration::from_secs(30)).code(),
        Some(EXIT_MIGRATION_FAILED)
    );
    assert_eq!(idle.termination()["reason"], "IncomingMigrationCancelled");
    // A shutdown of a waiting target just quits QEMU (exit 0).
    let (mut idle, _) = pair.waiting_target("target-idle-stop", IncomingConfig::default());
    let (code, _) = http("POST", idle.port, "/shutdown").unwrap();
    assert_eq!(code, 202);
    assert!(
        idle.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        idle.log()
    );
    assert_eq!(idle.termination()["reason"], "StoppedBeforeStart");

    // The source can still migrate afterwards (settings reset, no TLS now).
    let (target, listen) = pair.waiting_target("target-2", IncomingConfig::default());
    let (code, r) = post_migrate(&source, json!({"target": listen}));
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["settings"]["tlsCreds"], json!(null), "TLS off again: {r}");
    let mut source = source;
    assert!(
        source.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        source.log()
    );
    assert_eq!(source.termination()["reason"], "Migrated");
    target.wait_status("target Running", Duration::from_secs(30), |s| {
        s.phase == LauncherPhase::Running
    });
}
