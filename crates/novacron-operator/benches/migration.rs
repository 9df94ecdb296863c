//! Operator overhead of live migration: the same VM (1 vCPU, 512 MiB of
//! RAM filled with incompressible data, TCG, TLS, no compression, no cap)
//! migrated on loopback
//! - by the operator: a VirtualMachineMigration created -> `Succeeded`
//!   (target pod created and placed, target launcher started from the pod's
//!   launch config, `/migrate` through the API server's port-forward,
//!   progress polled every second, source pod deleted, target promoted);
//! - bare, launcher to launcher: target launcher started with `incoming`
//!   -> `POST /migrate` on the source -> the target reports the VM running
//!   (the launcher crate's own benchmark measures this against bare QEMU).
//!
//! Each run migrates the VM with the operator, then sends it on bare from
//! the launcher that received it. Both figures include starting the target
//! launcher and QEMU. Run: `cargo bench -p novacron-operator --bench
//! migration` (local control plane, qemu-system-x86, qemu-utils,
//! genisoimage); `NOVACRON_BENCH_MIGRATIONS` sets the runs (default 3).
//! Prints figures; asserts nothing about speed.

#[path = "../tests/migration_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, PostParams};
use novacron_launcher::api::{LauncherPhase, MigrationPhase as LauncherMigrationPhase};
use novacron_launcher::config::IncomingConfig;
use novacron_operator::build::Names;
use novacron_operator::crd::{MigrationPhase, VirtualMachineMigration};
use serde_json::json;
use support::{LocalLauncher, free_port, http, receive, start_vm};

type Run = (f64, f64, f64, f64, f64, f64, f64);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn summary(v: &[f64]) -> String {
    let min = v.iter().cloned().fold(f64::MAX, f64::min);
    let max = v.iter().cloned().fold(0.0, f64::max);
    format!("{:.2} s (min {min:.2}, max {max:.2})", median(v.to_vec()))
}

/// One operator-driven migration then one bare one of the same VM;
/// returns (operator total, operator streaming, bare total, bare streaming,
/// operator switch-over: target running -> `Succeeded`, operator total
/// beyond QEMU's transfer, bare total beyond QEMU's transfer) in seconds.
async fn run(i: usize) -> Run {
    let ns = envtest::test_namespace("nc-mig-bench").await.unwrap();
    let client = ns.client();
    let name = format!("bench{i}");
    let vm = start_vm(
        &client,
        &ns.name,
        &name,
        "bench",
        json!({"allowLiveMigration": true, "encrypted": true}),
    )
    .await;
    let migrations: Api<VirtualMachineMigration> = ns.api();
    let m: VirtualMachineMigration = serde_json::from_value(json!({
        "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachineMigration",
        "metadata": {"name": "bench"}, "spec": {"vmName": name},
    }))
    .unwrap();
    let created = Instant::now();
    let m = migrations.create(&PostParams::default(), &m).await.unwrap();
    let target_pod = Names::of(&name).target_pod(&m.uid().unwrap());
    // The target launcher is started as soon as the operator made its pod
    // (the time to that is part of the operator's figure).
    let first = receive(&client, &ns.name, &vm, &target_pod, "127.0.0.13").await;
    let mut running_at = None;
    let mut arrived_at = None;
    let (op_total, op_stream, op_switch) = loop {
        let m = migrations.get("bench").await.unwrap();
        let phase = m.status.as_ref().and_then(|s| s.phase);
        if phase == Some(MigrationPhase::Running) && running_at.is_none() {
            running_at = Some(Instant::now());
        }
        if arrived_at.is_none()
            && let Some(s) = first.status().await
            && s.phase == LauncherPhase::Running
        {
            arrived_at = Some(Instant::now());
        }
        match phase {
            Some(MigrationPhase::Succeeded) => {
                let now = Instant::now();
                break (
                    (now - created).as_secs_f64(),
                    (now - running_at.unwrap_or(created)).as_secs_f64(),
                    (now - arrived_at.unwrap_or(now)).as_secs_f64(),
                );
            }
            Some(MigrationPhase::Failed) => panic!("migration failed: {:#?}", m.status),
            _ => {}
        }
        assert!(created.elapsed() < Duration::from_secs(300), "too slow");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Bare: from the launcher that received the VM to a fresh one.
    let dir = vm.dir.path().join("bare");
    std::fs::create_dir_all(&dir).unwrap();
    let listen = format!("127.0.0.13:{}", free_port());
    let mut config = first.config.clone();
    config.run_dir = dir.join("run");
    config.termination_message_path = dir.join("termination-log");
    config.incoming = Some(IncomingConfig {
        listen: listen.clone(),
        tls: true,
        ..IncomingConfig::default()
    });
    let started = Instant::now();
    let second = LocalLauncher::start(config, &dir, free_port()).await;
    loop {
        if second
            .migration()
            .await
            .is_some_and(|m| m.phase == LauncherMigrationPhase::WaitingForMigration)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requested = Instant::now();
    let (code, body) = http(
        first.port,
        "POST",
        "/migrate",
        Some(&json!({"target": listen, "tls": true,
                     "tlsHostname": novacron_operator::migration::plan::tls_hostname(&name, &ns.name)})),
    )
    .await;
    assert_eq!(code, 202, "{}", String::from_utf8_lossy(&body));
    loop {
        if let Some(s) = second.status().await
            && s.phase == LauncherPhase::Running
            && s.migration.as_ref().map(|m| m.phase) == Some(LauncherMigrationPhase::Completed)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bare_total = started.elapsed().as_secs_f64();
    let bare_stream = requested.elapsed().as_secs_f64();
    // What each source launcher reported when it handed the VM over
    // (QEMU's own transfer figures).
    let said = |dir: &std::path::Path| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(dir.join("termination-log")).unwrap_or_default();
            if !text.is_empty() || Instant::now() > deadline {
                return serde_json::from_str::<serde_json::Value>(&text)
                    .map(|v| v["message"].as_str().unwrap_or_default().to_owned())
                    .unwrap_or(text);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (op_said, bare_said) = (said(&vm.source.dir), said(&first.dir));
    println!("  operator-driven source: {op_said}");
    println!("  bare source:            {bare_said}");
    let qemu_secs = |m: &str| {
        m.split(" in ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .map_or(0.0, |ms| ms / 1000.0)
    };
    let (op_qemu, bare_qemu) = (qemu_secs(&op_said), qemu_secs(&bare_said));
    drop(first);
    drop(second);
    // Beyond QEMU's own transfer time (which varies with how many
    // pre-copy rounds QEMU needs, not with who asked).
    (
        op_total,
        op_stream,
        bare_total,
        bare_stream,
        op_switch,
        op_total - op_qemu,
        bare_total - bare_qemu,
    )
}

fn main() {
    support::require_tools();
    support::operator(2);
    let runs: usize = std::env::var("NOVACRON_BENCH_MIGRATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut results = Vec::new();
    for i in 0..runs {
        let r = rt.block_on(run(i));
        println!(
            "run {i}: operator {:.2} s (Running phase {:.2} s, switch-over {:.2} s), bare {:.2} s (after /migrate {:.2} s)",
            r.0, r.1, r.4, r.2, r.3
        );
        results.push(r);
    }
    let col = |f: fn(&Run) -> f64| results.iter().map(f).collect::<Vec<_>>();
    println!(
        "live migration of a 512 MiB TCG guest over loopback with TLS, {runs} runs, median (min, max):"
    );
    println!(
        "  operator, object created -> Succeeded:     {}",
        summary(&col(|r| r.0))
    );
    println!(
        "  operator, Running -> Succeeded:             {}",
        summary(&col(|r| r.1))
    );
    println!(
        "  bare, target launcher start -> running:     {}",
        summary(&col(|r| r.2))
    );
    println!(
        "  bare, POST /migrate -> running on target:   {}",
        summary(&col(|r| r.3))
    );
    println!(
        "  operator, total beyond QEMU's transfer:     {}",
        summary(&col(|r| r.5))
    );
    println!(
        "  bare, total beyond QEMU's transfer:         {}",
        summary(&col(|r| r.6))
    );
    println!(
        "  operator overhead (medians, whole migration): {:+.2} s; beyond QEMU's transfer: {:+.2} s",
        median(col(|r| r.0)) - median(col(|r| r.2)),
        median(col(|r| r.5)) - median(col(|r| r.6))
    );
}
