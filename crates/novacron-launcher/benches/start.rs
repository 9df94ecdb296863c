//! Start overhead of the launcher over a bare QEMU start, both measured as
//! time from spawn to QMP `query-status` = `running` (software emulation).
//! Also prints the launcher's own RSS (QEMU excluded).
//!
//! Run: `cargo bench -p novacron-launcher --bench start` (needs qemu-system-x86,
//! qemu-utils, genisoimage). Prints figures; asserts nothing about speed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use novacron_launcher::api::{LauncherPhase, LauncherStatus};
use novacron_launcher::cloudinit::{self, CloudInitInput};
use novacron_launcher::config::{Accel, DiskConfig, DiskFormat, LaunchConfig};
use novacron_launcher::qemu::{self, HostFacts, ResolvedAccel};
use novacron_launcher::qmp::Qmp;

const RUNS: usize = 7;

fn config(dir: &Path, seed: bool) -> LaunchConfig {
    let disk = dir.join("root.qcow2");
    if !disk.exists() {
        let ok = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", disk.to_str().unwrap(), "64M"])
            .status()
            .expect("qemu-img (Debian package qemu-utils) is required");
        assert!(ok.success());
    }
    let mut c = LaunchConfig::new(
        "bench",
        "bench",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        1,
        256 << 20,
    );
    c.accel = Accel::Tcg;
    c.run_dir = dir.join("run");
    c.shutdown_timeout_seconds = 0;
    c.termination_message_path = dir.join("termination-log");
    c.disks.push(DiskConfig {
        name: "root".into(),
        path: disk,
        format: DiskFormat::Qcow2,
        block: false,
        read_only: false,
        boot: true,
        serial: None,
    });
    if seed {
        c.cloud_init = Some(cloudinit::render(&CloudInitInput {
            instance_id: c.uid.clone(),
            hostname: "bench".into(),
            ..Default::default()
        }));
    }
    c
}

/// Bare QEMU with the same command line: spawn -> QMP running.
async fn bare(config: &LaunchConfig) -> Duration {
    std::fs::create_dir_all(&config.run_dir).unwrap();
    let seed = config.seed_iso_path();
    if let Some(ci) = &config.cloud_init {
        // Prebuilt outside the timed section: bare QEMU does not build seeds.
        cloudinit::build_iso(ci, &seed).await.unwrap();
    }
    let args = qemu::command_line(
        config,
        &HostFacts {
            accel: ResolvedAccel::Tcg,
            seed_iso: config.cloud_init.as_ref().map(|_| seed.as_path()),
            pci: &[],
        },
    );
    let qmp_path = config.qmp_socket_path();
    let _ = std::fs::remove_file(&qmp_path);
    let started = Instant::now();
    let mut child = tokio::process::Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("qemu-system-x86_64 (Debian package qemu-system-x86) is required");
    let qmp = Qmp::connect_with_retry(&qmp_path, Duration::from_secs(60))
        .await
        .unwrap();
    while qmp.query_status().await.unwrap() != "running" {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = qmp.execute("quit", None).await;
    let _ = child.wait().await;
    elapsed
}

fn get_status(port: u16) -> Option<LauncherStatus> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    serde_json::from_str(buf.split_once("\r\n\r\n")?.1).ok()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The launcher: spawn -> /status Running (which it reports from QMP).
fn launcher(config: &LaunchConfig, dir: &Path) -> (Duration, u64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("launch.json");
    std::fs::write(&path, serde_json::to_vec(config).unwrap()).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_novacron-launcher"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if get_status(port).is_some_and(|s| s.phase == LauncherPhase::Running) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "launcher did not reach Running"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let rss = rss_kib(child.id());
    // SAFETY: signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    (elapsed, rss)
}

fn summary(name: &str, unit: &str, samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = samples[samples.len() / 2];
    println!(
        "{name:<34} median {median:7.1} {unit}   min {:7.1} {unit}   max {:7.1} {unit}   (n={})",
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
    median
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "novacron-launcher start overhead: spawn -> QMP running, tcg, 1 vCPU, 256MiB, {RUNS} runs each"
    );
    for seed in [false, true] {
        let c = config(dir.path(), seed);
        // Warm-up (page cache) for both.
        rt.block_on(bare(&c));
        launcher(&c, dir.path());
        let mut bare_ms = Vec::new();
        let mut launcher_ms = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..RUNS {
            bare_ms.push(rt.block_on(bare(&c)).as_secs_f64() * 1000.0);
            let (t, r) = launcher(&c, dir.path());
            launcher_ms.push(t.as_secs_f64() * 1000.0);
            rss.push(r as f64 / 1024.0);
        }
        let label = if seed {
            "with cloud-init seed"
        } else {
            "no seed"
        };
        let b = summary(&format!("bare QEMU ({label})"), "ms", &mut bare_ms);
        let l = summary(&format!("launcher ({label})"), "ms", &mut launcher_ms);
        println!("{:<34} median {:7.1} ms", "  => launcher overhead", l - b);
        summary(&format!("launcher RSS ({label})"), "MiB", &mut rss);
    }
}
