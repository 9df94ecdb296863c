//! The launcher with REAL QEMU (software emulation, `-accel tcg`): start,
//! QMP-reported state, cloud-init seed attached, hooks, graceful stop with
//! the ACPI-timeout -> quit fallback (SeaBIOS without an OS ignores ACPI
//! power-down), and failures reported with exit codes.

mod common;

use std::time::Duration;

use common::{Launcher, require, run, vm_config};
use novacron_launcher::api::LauncherPhase;
use novacron_launcher::cloudinit::{self, CloudInitInput, InterfaceInput, IpInput};
use novacron_launcher::config::{ExecHook, HookConfig, HttpGetHook, NicConfig, NicKind};
use novacron_launcher::supervisor::{EXIT_PRE_START_FAILED, EXIT_QEMU_FAILED};

const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("genisoimage", "genisoimage"),
    ("isoinfo", "genisoimage"),
];

fn exec_hook(script: &str) -> HookConfig {
    HookConfig {
        exec: Some(ExecHook {
            command: vec!["sh".into(), "-c".into(), script.into()],
        }),
        http_get: None,
        timeout_seconds: 10,
    }
}

#[test]
fn launcher_runs_a_vm_with_its_seed_and_stops_it_on_request() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = vm_config(d, "web");
    let mac = "52:54:00:12:34:56";
    config.nics.push(NicConfig {
        name: "default".into(),
        model: "virtio-net-pci".into(),
        mac: mac.into(),
        kind: NicKind::Pod,
        tap_device: None,
        bridge: None,
        forward_ports: vec![],
    });
    let seed = cloudinit::render(&CloudInitInput {
        instance_id: config.uid.clone(),
        hostname: "web".into(),
        user_data: Some("#cloud-config\nruncmd: [echo hello]\n".into()),
        interfaces: vec![InterfaceInput {
            name: "default".into(),
            mac: mac.into(),
            ipv4: Some(IpInput::Static {
                address: "10.0.2.15/24".into(),
                gateway: Some("10.0.2.2".into()),
                dns: vec!["10.0.2.3".into()],
            }),
            ipv6: None,
        }],
    });
    config.cloud_init = Some(seed.clone());
    let pre_start = d.join("pre-start.ran");
    let pre_stop = d.join("pre-stop.ran");
    config.hooks.pre_start = Some(exec_hook(&format!("touch {}", pre_start.display())));
    config.hooks.pre_stop = Some(exec_hook(&format!("touch {}", pre_stop.display())));

    let mut launcher = Launcher::start(&config, d);
    let status = launcher.wait_status("Running", Duration::from_secs(60), |s| {
        s.phase == LauncherPhase::Running
    });
    assert_eq!(
        status.qemu_status.as_deref(),
        Some("running"),
        "QMP query-status"
    );
    assert_eq!(status.accel.as_deref(), Some("tcg"));
    assert!(status.started_at.is_some());
    assert!(pre_start.exists(), "preStart hook ran before QEMU");
    assert_eq!(status.hooks.len(), 1);
    assert!(status.hooks[0].succeeded && status.hooks[0].name == "preStart");
    assert_eq!(
        common::http("GET", launcher.port, "/healthz").unwrap(),
        (200, "ok\n".into())
    );
    assert_eq!(common::http("GET", launcher.port, "/nope").unwrap().0, 404);
    assert_eq!(
        common::http("DELETE", launcher.port, "/status").unwrap().0,
        405
    );

    // QEMU itself reports the seed and the root disk attached (QMP query-block).
    let seed_iso = config.seed_iso_path();
    let cidata = status
        .disks
        .iter()
        .find(|x| x.name == "cidata")
        .expect("cidata attached");
    assert_eq!(cidata.file, seed_iso.to_str().unwrap());
    assert!(cidata.read_only);
    assert!(
        status
            .disks
            .iter()
            .any(|x| x.name == "disk0" && x.file.ends_with("root.qcow2"))
    );

    // The attached ISO is a NoCloud seed with the expected files.
    let iso = seed_iso.to_str().unwrap();
    let info = run("isoinfo", &["-d", "-i", iso]);
    assert!(info.contains("Volume id: cidata"), "{info}");
    let files = run("isoinfo", &["-R", "-f", "-i", iso]);
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(files, ["/meta-data", "/network-config", "/user-data"]);
    let read = |f: &str| run("isoinfo", &["-R", "-i", iso, "-x", f]);
    assert_eq!(read("/user-data"), seed.user_data.clone().unwrap());
    assert_eq!(
        read("/meta-data"),
        format!("instance-id: {}\nlocal-hostname: web\n", config.uid)
    );
    let net = read("/network-config");
    assert_eq!(net, seed.network_config.clone().unwrap());
    assert!(
        net.contains("10.0.2.15/24") && net.contains("via: 10.0.2.2") && net.contains(mac),
        "{net}"
    );

    // Usage is sampled from the QEMU process.
    let status = launcher.wait_status("usage", Duration::from_secs(20), |s| {
        s.memory_usage_bytes.is_some_and(|m| m > 1 << 20) && s.cpu_usage_cores.is_some()
    });
    assert!(status.cpu_usage_cores.unwrap() >= 0.0);

    // Graceful stop: preStop, ACPI power-down (ignored by SeaBIOS), 2s, quit.
    let (code, body) = common::http("POST", launcher.port, "/shutdown").unwrap();
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("ShuttingDown"), "{body}");
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "exit {exit}; log:\n{}", launcher.log());
    assert!(pre_stop.exists(), "preStop hook ran before power-down");
    let term = launcher.termination();
    assert_eq!(term["phase"], "Stopped");
    assert_eq!(term["reason"], "ForcedStop");
    assert!(
        term["message"]
            .as_str()
            .unwrap()
            .contains("did not power off within 2s"),
        "{term}"
    );
    assert!(
        launcher.log().contains("ACPI power-down sent"),
        "{}",
        launcher.log()
    );
}

#[test]
fn sigterm_stops_the_vm() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let config = vm_config(dir.path(), "term");
    let mut launcher = Launcher::start(&config, dir.path());
    launcher.wait_status("Running", Duration::from_secs(60), |s| {
        s.phase == LauncherPhase::Running
    });
    // SAFETY: kill on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(launcher.child.id() as i32, libc::SIGTERM) },
        0
    );
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "exit {exit}");
    assert_eq!(launcher.termination()["phase"], "Stopped");
}

#[test]
fn failing_pre_start_hook_fails_the_launch_before_qemu() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "hookfail");
    config.hooks.pre_start = Some(exec_hook("echo cannot reserve the license >&2; exit 7"));
    let mut launcher = Launcher::start(&config, dir.path());
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(EXIT_PRE_START_FAILED));
    let term = launcher.termination();
    assert_eq!(term["phase"], "Failed");
    assert_eq!(term["reason"], "PreStartHookFailed");
    assert!(
        term["message"]
            .as_str()
            .unwrap()
            .contains("cannot reserve the license"),
        "{term}"
    );
    assert!(
        !config.qmp_socket_path().exists(),
        "QEMU must not have started"
    );
}

#[test]
fn http_pre_start_hook_is_bounded_by_its_timeout() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = vm_config(dir.path(), "hookslow");
    config.hooks.pre_start = Some(HookConfig {
        exec: None,
        http_get: Some(HttpGetHook {
            host: None,
            port: silent.local_addr().unwrap().port(),
            path: "/ready".into(),
            scheme: "http".into(),
        }),
        timeout_seconds: 1,
    });
    let mut launcher = Launcher::start(&config, dir.path());
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(EXIT_PRE_START_FAILED));
    let message = launcher.termination()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("timed out after 1s"), "{message}");
}

#[test]
fn qemu_failure_is_reported_with_its_error() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "broken");
    config.disks[0].path = dir.path().join("missing.qcow2");
    let mut launcher = Launcher::start(&config, dir.path());
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(EXIT_QEMU_FAILED));
    let term = launcher.termination();
    assert_eq!(term["reason"], "QemuExited");
    assert!(
        term["message"].as_str().unwrap().contains("missing.qcow2"),
        "{term}"
    );
}

#[test]
fn a_guest_that_honours_acpi_powers_off_gracefully() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "acpi");
    let disk = dir.path().join("acpi.img");
    common::acpi_guest_disk(&disk);
    config.disks[0].path = disk;
    config.disks[0].format = novacron_launcher::config::DiskFormat::Raw;
    config.shutdown_timeout_seconds = 60;
    let mut launcher = Launcher::start(&config, dir.path());
    launcher.wait_status("Running", Duration::from_secs(60), |s| {
        s.phase == LauncherPhase::Running
    });
    // Let SeaBIOS hand over to the boot sector before pressing the button.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        common::http("POST", launcher.port, "/shutdown").unwrap().0,
        202
    );
    let exit = launcher.wait_exit(Duration::from_secs(60));
    assert!(exit.success(), "exit {exit}");
    let term = launcher.termination();
    assert_eq!(term["reason"], "PoweredOff", "{term}");
    assert!(
        term["message"]
            .as_str()
            .unwrap()
            .contains("guest powered off after ACPI power-down"),
        "{term}"
    );
}

#[test]
fn a_guest_powering_itself_off_stops_the_launcher() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "poweroff");
    let disk = dir.path().join("off.img");
    common::poweroff_guest_disk(&disk);
    config.disks[0].path = disk;
    config.disks[0].format = novacron_launcher::config::DiskFormat::Raw;
    let mut launcher = Launcher::start(&config, dir.path());
    let exit = launcher.wait_exit(Duration::from_secs(60));
    assert!(exit.success(), "exit {exit}; log:\n{}", launcher.log());
    assert_eq!(launcher.termination()["reason"], "GuestShutdown");
}

#[test]
fn a_stop_requested_during_pre_start_never_starts_qemu() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "early");
    config.hooks.pre_start = Some(exec_hook("sleep 2"));
    let mut launcher = Launcher::start(&config, dir.path());
    launcher.wait_status("preStart running", Duration::from_secs(30), |s| {
        s.message == "running preStart hook"
    });
    assert_eq!(
        common::http("POST", launcher.port, "/shutdown").unwrap().0,
        202
    );
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "exit {exit}");
    assert_eq!(launcher.termination()["reason"], "StoppedBeforeStart");
    assert!(
        !config.qmp_socket_path().exists(),
        "QEMU must not have started"
    );
}

#[test]
fn an_invalid_config_is_reported_and_exits_3() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "invalid");
    config.vcpus = 0;
    let mut launcher = Launcher::start(&config, dir.path());
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert_eq!(
        exit.code(),
        Some(novacron_launcher::supervisor::EXIT_SETUP_FAILED)
    );
    let term = launcher.termination();
    assert_eq!(term["reason"], "InvalidConfig");
    assert!(
        term["message"]
            .as_str()
            .unwrap()
            .contains("vcpus must be at least 1"),
        "{term}"
    );
}
