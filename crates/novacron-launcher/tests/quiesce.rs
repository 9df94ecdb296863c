//! Quiescing with REAL QEMU (software emulation): the guest has no QEMU
//! guest agent (SeaBIOS, no OS), so `POST /quiesce` finds the agent channel
//! silent and pauses the VM (QMP `query-status`: paused), `POST /release`
//! resumes it, and a quiesce without a release ends by itself after the
//! configured bound. The agent's freeze path is tested against a QGA
//! protocol peer in `src/quiesce/tests.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{Launcher, require, vm_config};
use novacron_launcher::api::{LauncherPhase, QuiesceState, QuiesceStatus};

const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
];

fn post(launcher: &Launcher, path: &str) -> QuiesceStatus {
    let (code, body) = common::http("POST", launcher.port, path).unwrap();
    assert_eq!(code, 200, "{path}: {body}\n{}", launcher.log());
    serde_json::from_str(&body).unwrap()
}

#[test]
fn quiesce_pauses_a_vm_without_agent_release_resumes_and_the_bound_releases() {
    require(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = vm_config(d, "snap");
    config.quiesce_release_seconds = Some(2);
    let mut launcher = Launcher::start(&config, d);
    launcher.wait_status("Running", Duration::from_secs(60), |s| {
        s.phase == LauncherPhase::Running
    });
    assert!(
        config.guest_agent_socket_path().exists(),
        "QEMU listens on the guest agent channel"
    );
    assert_eq!(
        common::http("GET", launcher.port, "/quiesce").unwrap().0,
        405
    );

    // No agent answers: paused, within the agent timeout and a little.
    let started = Instant::now();
    let s = post(&launcher, "/quiesce");
    let took = started.elapsed();
    assert_eq!(s.state, QuiesceState::Paused);
    assert_eq!(s.auto_release_seconds, Some(2));
    assert!(
        s.message.contains("did not answer guest-sync-delimited"),
        "{}",
        s.message
    );
    assert!(took < Duration::from_secs(5), "quiesce took {took:?}");
    let paused = launcher.wait_status("paused", Duration::from_secs(5), |s| {
        s.qemu_status.as_deref() == Some("paused")
    });
    assert_eq!(paused.phase, LauncherPhase::Paused);
    assert_eq!(paused.quiesced, Some(QuiesceState::Paused));

    let r = post(&launcher, "/release");
    assert_eq!(r.state, QuiesceState::Released);
    let running = launcher.wait_status("running again", Duration::from_secs(5), |s| {
        s.qemu_status.as_deref() == Some("running")
    });
    assert_eq!(running.phase, LauncherPhase::Running);
    assert_eq!(running.quiesced, None);
    // Releasing twice is harmless.
    assert_eq!(post(&launcher, "/release").state, QuiesceState::Released);

    // No release: the launcher resumes the VM by itself after the bound.
    let started = Instant::now();
    assert_eq!(post(&launcher, "/quiesce").state, QuiesceState::Paused);
    launcher.wait_status("paused", Duration::from_secs(2), |s| {
        s.qemu_status.as_deref() == Some("paused")
    });
    let s = launcher.wait_status("auto-released", Duration::from_secs(10), |s| {
        s.qemu_status.as_deref() == Some("running")
    });
    let held = started.elapsed();
    assert_eq!(s.quiesced, None);
    assert!(
        held >= Duration::from_secs(2) && held < Duration::from_secs(6),
        "auto-release after {held:?}"
    );
    assert!(
        launcher.log().contains("no release came"),
        "{}",
        launcher.log()
    );
    println!("quiesce (no agent) took {took:?}; auto-release after {held:?}");

    // A quiesced VM still stops on request (released first).
    assert_eq!(post(&launcher, "/quiesce").state, QuiesceState::Paused);
    assert_eq!(
        common::http("POST", launcher.port, "/shutdown").unwrap().0,
        202
    );
    let exit = launcher.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "{exit:?}\n{}", launcher.log());
}
