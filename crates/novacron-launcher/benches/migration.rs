//! Live migration time and downtime over loopback: a bare QEMU-to-QEMU
//! migration driven over QMP versus the same migration driven through two
//! launcher processes (`POST /migrate`), same parameters (2 multifd
//! channels, no compression, no TLS, no bandwidth cap). Guests of 256 MiB
//! and 1 GiB fill their RAM with incompressible data first (boot-sector
//! guest from tests/common), so real pages move, not zero pages.
//!
//! Figures per case: QEMU `total-time` and `downtime` (from `query-migrate`
//! on the source), and wall time from the migrate request to the VM
//! running on the target (what a user waits for; the launcher adds its
//! parameter round trip and its 200 ms `query-migrate` polling).
//!
//! Run: `cargo bench -p novacron-launcher --bench migration` (needs
//! qemu-system-x86, qemu-utils). Prints figures; asserts nothing about speed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Launcher, fill_guest_disk, free_port, guest_filled, http_json, require, vm_config};
use novacron_launcher::api::{Compression, LauncherPhase, MigrationPhase};
use novacron_launcher::config::{DiskFormat, IncomingConfig, LaunchConfig};
use novacron_launcher::migration::{self, MigrationOptions};
use novacron_launcher::migrator;
use novacron_launcher::qemu::{self, HostFacts, ResolvedAccel};
use novacron_launcher::qmp::Qmp;

const RUNS: usize = 9;

/// One migration's figures (milliseconds).
#[derive(Clone, Copy, Debug)]
struct Figures {
    transferred_mib: u64,
    total_ms: u64,
    downtime_ms: u64,
    wall_ms: u64,
}

fn config(dir: &Path, memory: u64) -> LaunchConfig {
    let mut c = vm_config(dir, "bench");
    c.memory_bytes = memory;
    let disk = dir.join("fill.img");
    fill_guest_disk(&disk, memory);
    c.disks[0].path = disk;
    c.disks[0].format = DiskFormat::Raw;
    c
}

fn options() -> MigrationOptions {
    MigrationOptions {
        multifd_channels: Some(2),
        ..Default::default()
    }
}

fn wait_filled(serial: &Path) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !guest_filled(serial) {
        assert!(Instant::now() < deadline, "the guest did not fill its RAM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn bare(dir: &Path, memory: u64) -> Figures {
    let mut source = config(dir, memory);
    source.run_dir = dir.join("bare-source");
    let mut target = source.clone();
    target.run_dir = dir.join("bare-target");
    let spawn = |c: &LaunchConfig, extra: Vec<String>| {
        std::fs::create_dir_all(&c.run_dir).unwrap();
        let mut args = qemu::command_line(
            c,
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
    let mut sp = spawn(&source, vec![]);
    let mut tp = spawn(&target, migration::incoming_args());
    let timeout = Duration::from_secs(30);
    let src = Qmp::connect_with_retry(&source.qmp_socket_path(), timeout)
        .await
        .unwrap();
    let dst = Qmp::connect_with_retry(&target.qmp_socket_path(), timeout)
        .await
        .unwrap();
    wait_filled(&source.serial_log_path());
    let opts = options();
    for q in [&src, &dst] {
        q.execute(
            "migrate-set-capabilities",
            Some(migration::capabilities(&opts)),
        )
        .await
        .unwrap();
        q.execute("migrate-set-parameters", Some(migration::parameters(&opts)))
            .await
            .unwrap();
    }
    let port = free_port();
    dst.execute("migrate-incoming", Some(migration::migrate_incoming(port)))
        .await
        .unwrap();
    let started = Instant::now();
    src.execute("migrate", Some(migration::migrate("127.0.0.1", port)))
        .await
        .unwrap();
    // The launcher's own query (re-asks until QEMU filled in the figures).
    let done = loop {
        let p = migrator::query(&src).await.unwrap();
        if p.is_done() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done.status, "completed", "{done:?}");
    while dst.query_status().await.unwrap() != "running" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall_ms = started.elapsed().as_millis() as u64;
    for q in [&src, &dst] {
        let _ = q.execute("quit", None).await;
    }
    let _ = sp.wait().await;
    let _ = tp.wait().await;
    Figures {
        transferred_mib: done.transferred_bytes >> 20,
        total_ms: done.total_time_ms.unwrap_or(0),
        downtime_ms: done.downtime_ms.unwrap_or(0),
        wall_ms,
    }
}

fn launcher(dir: &Path, memory: u64) -> Figures {
    let base = config(dir, memory);
    let start = |name: &str, incoming: Option<IncomingConfig>| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut c = base.clone();
        c.run_dir = d.join("run");
        c.termination_message_path = d.join("termination-log");
        c.incoming = incoming;
        Launcher::start(&c, &d)
    };
    let mut source = start("source", None);
    source.wait_status("source Running", Duration::from_secs(60), |s| {
        s.phase == LauncherPhase::Running
    });
    wait_filled(&source.dir.join("run/serial.log"));
    let listen = format!("127.0.0.1:{}", free_port());
    let target = start(
        "target",
        Some(IncomingConfig {
            listen: listen.clone(),
            compression: Compression::None,
            multifd_channels: Some(2),
            ..Default::default()
        }),
    );
    target.wait_status("target waiting", Duration::from_secs(60), |s| {
        s.migration
            .as_ref()
            .is_some_and(|m| m.phase == MigrationPhase::WaitingForMigration)
    });
    let started = Instant::now();
    let (code, body) = http_json(
        "POST",
        source.port,
        "/migrate",
        &serde_json::json!({"target": listen, "multifdChannels": 2}),
    )
    .unwrap();
    assert_eq!(code, 202, "{body}");
    target.wait_status("target Running", Duration::from_secs(300), |s| {
        s.phase == LauncherPhase::Running
    });
    let wall_ms = started.elapsed().as_millis() as u64;
    assert!(source.wait_exit(Duration::from_secs(60)).success());
    // "migrated to ADDR in N ms (downtime N ms, N MiB transferred)"
    let message = source.termination()["message"]
        .as_str()
        .unwrap()
        .to_string();
    let number_after = |key: &str| -> u64 {
        message
            .split(key)
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key:?} not in {message:?}"))
    };
    let figures = Figures {
        transferred_mib: number_after("ms, "),
        total_ms: number_after(" in "),
        downtime_ms: number_after("downtime "),
        wall_ms,
    };
    let _ = http_json("POST", target.port, "/shutdown", &serde_json::json!({}));
    drop(target);
    figures
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn summary(runs: &[Figures]) -> String {
    let pick = |f: fn(&Figures) -> u64| {
        let v: Vec<u64> = runs.iter().map(f).collect();
        let (lo, hi) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
        format!("{} ms ({lo}-{hi})", median(v))
    };
    format!(
        "{} MiB sent | total-time {} | downtime {} | request->running on target {}",
        median(runs.iter().map(|f| f.transferred_mib).collect()),
        pick(|f| f.total_ms),
        pick(|f| f.downtime_ms),
        pick(|f| f.wall_ms)
    )
}

fn main() {
    require(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
    ]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "live migration over loopback, TCG, 1 vCPU, guest RAM filled with xorshift data, \
         2 multifd channels, no compression/TLS/cap; {RUNS} runs each (median (min-max))"
    );
    for memory in [256u64 << 20, 1 << 30] {
        let mut bare_runs = Vec::new();
        let mut launcher_runs = Vec::new();
        for _ in 0..RUNS {
            let dir = tempfile::tempdir().unwrap();
            bare_runs.push(runtime.block_on(bare(dir.path(), memory)));
            let dir = tempfile::tempdir().unwrap();
            launcher_runs.push(launcher(dir.path(), memory));
        }
        let mib = memory >> 20;
        println!("{mib:>5} MiB bare QEMU: {}", summary(&bare_runs));
        println!("{mib:>5} MiB launcher:  {}", summary(&launcher_runs));
        let wall = |r: &[Figures]| median(r.iter().map(|f| f.wall_ms).collect()) as i64;
        println!(
            "{mib:>5} MiB launcher overhead (request->running, medians): {:+} ms",
            wall(&launcher_runs) - wall(&bare_runs)
        );
    }
}
