//! Supervises one QEMU process: preStart hook, cloud-init seed, QEMU start,
//! QMP state tracking and usage sampling, then graceful shutdown (preStop
//! hook, ACPI power-down, timeout, `quit`, kill).
//!
//! Restarts belong to Kubernetes (pod restart with backoff): the launcher
//! runs QEMU once and exits with a code that says how it ended.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::api::{DiskStatus, HookStatus, LauncherPhase};
use crate::config::LaunchConfig;
use crate::migrator::{self, Migrations, Outcome};
use crate::qemu::{self, HostFacts};
use crate::qmp::Qmp;
use crate::quiesce::Quiescer;
use crate::state::State;

/// Exit code: stopped as requested, or the guest powered itself off.
pub const EXIT_STOPPED: i32 = 0;
/// Exit code: QEMU failed to start or died.
pub const EXIT_QEMU_FAILED: i32 = 1;
/// Exit code: the preStart hook failed.
pub const EXIT_PRE_START_FAILED: i32 = 2;
/// Exit code: the launch could not be prepared (accelerator, devices, seed).
pub const EXIT_SETUP_FAILED: i32 = 3;

/// How long QEMU gets to open its QMP socket.
const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long QEMU gets to exit after `quit` before it is killed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Usage sampling period.
const SAMPLE_PERIOD: Duration = Duration::from_secs(2);

/// Runs the VM to completion; returns the process exit code. The final
/// status is in `state`.
pub async fn run(config: &LaunchConfig, state: Arc<State>) -> i32 {
    let code = run_inner(config, &state).await;
    write_termination_message(config, &state);
    code
}

fn fail(state: &State, reason: &str, message: String) {
    tracing::error!(reason, %message, "launch failed");
    state.update(|s| {
        s.phase = LauncherPhase::Failed;
        s.reason = reason.into();
        s.message = message;
    });
}

fn stopped(state: &State, reason: &str, message: String) {
    tracing::info!(reason, %message, "VM stopped");
    state.update(|s| {
        s.phase = LauncherPhase::Stopped;
        s.reason = reason.into();
        s.message = message;
        s.qemu_status = None;
        s.cpu_usage_cores = None;
        s.memory_usage_bytes = None;
    });
}

async fn run_inner(config: &LaunchConfig, state: &Arc<State>) -> i32 {
    state.update(|s| {
        s.phase = LauncherPhase::Starting;
        s.message = "preparing".into();
    });
    let accel = match qemu::resolve_accel(config.accel, qemu::kvm_available()) {
        Ok(a) => a,
        Err(e) => {
            fail(state, "AccelUnavailable", e);
            return EXIT_SETUP_FAILED;
        }
    };
    let pci = match qemu::resolve_host_devices(&config.host_devices, |k| std::env::var(k).ok()) {
        Ok(p) => p,
        Err(e) => {
            fail(state, "HostDeviceUnavailable", e);
            return EXIT_SETUP_FAILED;
        }
    };
    if let Ok(to) = std::fs::read_to_string(config.migrated_marker_path()) {
        stopped(
            state,
            "MigratedAway",
            format!(
                "this VM was migrated away ({}); not starting it again here",
                to.trim()
            ),
        );
        return EXIT_STOPPED;
    }
    if let Err(e) = tokio::fs::create_dir_all(&config.run_dir).await {
        fail(
            state,
            "SetupFailed",
            format!("cannot create {}: {e}", config.run_dir.display()),
        );
        return EXIT_SETUP_FAILED;
    }

    if let Some(hook) = &config.hooks.pre_start {
        state.update(|s| s.message = "running preStart hook".into());
        let result = crate::hooks::run(hook).await;
        record_hook(state, "preStart", &result);
        if let Err(e) = result {
            fail(
                state,
                "PreStartHookFailed",
                format!("preStart hook failed: {e}"),
            );
            return EXIT_PRE_START_FAILED;
        }
    }
    if state.shutdown_requested() {
        stopped(
            state,
            "StoppedBeforeStart",
            "shutdown requested before QEMU started".into(),
        );
        return EXIT_STOPPED;
    }

    let seed = config.seed_iso_path();
    let seed_iso = match &config.cloud_init {
        Some(ci) => {
            if let Err(e) = crate::cloudinit::build_iso(ci, &seed).await {
                fail(state, "CloudInitSeedFailed", e.to_string());
                return EXIT_SETUP_FAILED;
            }
            Some(seed.as_path())
        }
        None => None,
    };

    let args = qemu::command_line(
        config,
        &HostFacts {
            accel,
            seed_iso,
            pci: &pci,
        },
    );
    let qmp_path = config.qmp_socket_path();
    let _ = tokio::fs::remove_file(&qmp_path).await;
    tracing::info!(binary = %config.qemu_binary, args = %args.join(" "), "starting QEMU");
    let mut command = Command::new(&config.qemu_binary);
    // SAFETY: prctl is async-signal-safe. QEMU must not outlive a launcher
    // killed with SIGKILL (kill_on_drop only covers orderly exits).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            fail(
                state,
                "QemuStartFailed",
                format!("cannot run {}: {e}", config.qemu_binary),
            );
            return EXIT_QEMU_FAILED;
        }
    };
    let stderr_tail = collect_stderr(&mut child);
    state.update(|s| {
        s.accel = Some(accel.as_str().into());
        s.message = "waiting for QMP".into();
    });

    let qmp = tokio::select! {
        r = Qmp::connect_with_retry(&qmp_path, QMP_CONNECT_TIMEOUT) => match r {
            Ok(q) => Arc::new(q),
            Err(e) => {
                let _ = child.kill().await;
                fail(state, "QmpUnavailable", format!("QMP did not answer: {e}; QEMU stderr: {}", tail(&stderr_tail)));
                return EXIT_QEMU_FAILED;
            }
        },
        exit = child.wait() => {
            if exit.as_ref().is_ok_and(|s| s.success()) {
                // A guest that powers off at once: QEMU ends cleanly.
                stopped(state, "GuestShutdown", "the guest powered off".into());
                return EXIT_STOPPED;
            }
            // Give the stderr reader a moment to drain QEMU's last words.
            tokio::time::sleep(Duration::from_millis(100)).await;
            fail(state, "QemuExited", format!("QEMU exited during start ({}): {}", describe(exit), tail(&stderr_tail)));
            return EXIT_QEMU_FAILED;
        }
    };
    let mut events = qmp.events();
    // Disks first, so a status that says Running also shows what is attached.
    if let Ok(blocks) = qmp.execute("query-block", None).await {
        let disks = disk_statuses(&blocks);
        state.update(|s| s.disks = disks);
    }
    refresh_run_state(&qmp, state).await;
    let sampler = child
        .id()
        .map(|pid| tokio::spawn(sample_usage(pid, state.clone())));
    let _sampler = AbortOnDrop(sampler);

    let mut migrations = Migrations::new(config);
    if let Err(e) = migrations.start_incoming(&qmp, state).await {
        quit(&qmp, &mut child).await;
        fail(state, "IncomingMigrationSetupFailed", e);
        return migrator::EXIT_MIGRATION_FAILED;
    }
    let mut control = state.take_control();
    state.set_quiescer(Some(Quiescer::new(
        qmp.clone(),
        config.guest_agent_socket_path(),
        config.quiesce_release_after(),
    )));
    // Whatever ends the loop, quiesce requests are refused from then on.
    let _quiescer = ClearQuiescer(state);
    let mut poll = tokio::time::interval(migrator::POLL_PERIOD);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let outcome = loop {
        tokio::select! {
            exit = child.wait() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if migrations.incoming_pending() {
                    // QEMU ends a failed incoming migration itself.
                    let msg = format!("QEMU ended during the incoming migration ({}): {}", describe(exit), tail(&stderr_tail));
                    migrations.fail_incoming(state, crate::api::MigrationPhase::Failed, "IncomingMigrationFailed", &msg);
                    fail(state, "IncomingMigrationFailed", msg);
                    return migrator::EXIT_MIGRATION_FAILED;
                }
                return match exit {
                    Ok(s) if s.success() => {
                        stopped(state, "GuestShutdown", "the guest powered off".into());
                        EXIT_STOPPED
                    }
                    other => {
                        fail(state, "QemuExited", format!("QEMU exited unexpectedly ({}): {}", describe(other), tail(&stderr_tail)));
                        EXIT_QEMU_FAILED
                    }
                };
            }
            event = events.recv() => {
                if let Ok(event) = event {
                    tracing::info!(event = %event.event, data = %event.data, "QMP event");
                    if matches!(event.event.as_str(), "STOP" | "RESUME" | "RESET") {
                        refresh_run_state(&qmp, state).await;
                    }
                    if let Some(o) = migrations.on_event(&event, &qmp, state).await {
                        break Some(o);
                    }
                }
            }
            Some(cmd) = recv(&mut control) => {
                if let Some(o) = migrations.handle(cmd, &qmp, state).await {
                    break Some(o);
                }
            }
            _ = poll.tick(), if migrations.active() => {
                if let Some(o) = migrations.poll(&qmp, state).await {
                    break Some(o);
                }
            }
            _ = state.wait_shutdown() => break None,
        }
    };
    match outcome {
        Some(Outcome::Migrated { message }) => {
            // The source is paused (`postmigrate`); the VM lives on the target.
            if let Err(e) = std::fs::write(config.migrated_marker_path(), &message) {
                tracing::warn!(error = %e, "cannot write the migrated-away marker");
            }
            quit(&qmp, &mut child).await;
            stopped(state, "Migrated", message);
            EXIT_STOPPED
        }
        Some(Outcome::TargetGaveUp { reason, message }) => {
            quit(&qmp, &mut child).await;
            fail(state, &reason, message);
            migrator::EXIT_MIGRATION_FAILED
        }
        None if migrations.incoming_pending() => {
            // Nothing to power down: the VM never arrived here.
            quit(&qmp, &mut child).await;
            migrations.fail_incoming(
                state,
                crate::api::MigrationPhase::Cancelled,
                "ShutdownRequested",
                "shutdown requested before the VM arrived",
            );
            stopped(
                state,
                "StoppedBeforeStart",
                "shutdown requested while waiting for the incoming migration".into(),
            );
            EXIT_STOPPED
        }
        None => {
            // A frozen guest could not power off: release first.
            if let Some(q) = state.quiescer()
                && let Err((_, e)) = q.release(state).await
            {
                tracing::warn!(error = %e, "cannot release the quiesced guest before shutdown");
            }
            migrations.cancel_for_shutdown(&qmp, state).await;
            shutdown(config, state, &qmp, &mut child).await
        }
    }
}

/// The next control command, or never when there is no channel.
async fn recv(
    control: &mut Option<tokio::sync::mpsc::Receiver<crate::state::Control>>,
) -> Option<crate::state::Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// `quit`, then kill after [`QUIT_TIMEOUT`].
async fn quit(qmp: &Qmp, child: &mut Child) {
    let _ = qmp.execute("quit", None).await;
    if tokio::time::timeout(QUIT_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// preStop hook, ACPI power-down, wait, `quit`, kill.
async fn shutdown(config: &LaunchConfig, state: &State, qmp: &Qmp, child: &mut Child) -> i32 {
    state.update(|s| {
        s.phase = LauncherPhase::ShuttingDown;
        s.message = "shutting down".into();
    });
    let mut notes = Vec::new();
    if let Some(hook) = &config.hooks.pre_stop {
        let result = crate::hooks::run(hook).await;
        record_hook(state, "preStop", &result);
        if let Err(e) = result {
            // The user asked for the stop: report the hook, stop anyway.
            tracing::warn!(error = %e, "preStop hook failed");
            notes.push(format!("preStop hook failed: {e}"));
        }
    }
    let timeout = Duration::from_secs(config.shutdown_timeout_seconds);
    let started = Instant::now();
    match qmp.execute("system_powerdown", None).await {
        Ok(_) => tracing::info!(timeout_seconds = timeout.as_secs(), "ACPI power-down sent"),
        Err(e) => notes.push(format!("system_powerdown failed: {e}")),
    }
    if tokio::time::timeout(timeout, child.wait()).await.is_ok() {
        let mut msg = format!(
            "guest powered off after ACPI power-down in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        append_notes(&mut msg, &notes);
        stopped(state, "PoweredOff", msg);
        return EXIT_STOPPED;
    }
    let _ = qmp.execute("quit", None).await;
    let how = if tokio::time::timeout(QUIT_TIMEOUT, child.wait())
        .await
        .is_ok()
    {
        "QEMU quit"
    } else {
        let _ = child.kill().await;
        "QEMU killed"
    };
    let mut msg = format!(
        "guest did not power off within {}s of ACPI power-down; {how}",
        timeout.as_secs()
    );
    append_notes(&mut msg, &notes);
    stopped(state, "ForcedStop", msg);
    EXIT_STOPPED
}

fn append_notes(msg: &mut String, notes: &[String]) {
    for n in notes {
        msg.push_str("; ");
        msg.push_str(n);
    }
}

fn record_hook(state: &State, name: &str, result: &Result<String, String>) {
    let (succeeded, message) = match result {
        Ok(m) => (true, m.clone()),
        Err(e) => (false, e.clone()),
    };
    state.update(|s| {
        s.hooks.push(HookStatus {
            name: name.into(),
            succeeded,
            message,
        })
    });
}

async fn refresh_run_state(qmp: &Qmp, state: &State) {
    match qmp.query_status().await {
        Ok(run_state) => state.update(|s| {
            if s.phase != LauncherPhase::ShuttingDown {
                s.phase = phase_for(&run_state, s.phase);
                if s.phase == LauncherPhase::Running && s.started_at.is_none() {
                    let now = humantime::format_rfc3339_seconds(SystemTime::now());
                    s.started_at = Some(now.to_string());
                }
                s.message = format!("QEMU {run_state}");
            }
            s.qemu_status = Some(run_state);
        }),
        Err(e) => tracing::warn!(error = %e, "query-status failed"),
    }
}

/// The launcher phase for a QMP run state (others keep the current phase).
pub fn phase_for(run_state: &str, current: LauncherPhase) -> LauncherPhase {
    match run_state {
        "running" => LauncherPhase::Running,
        "paused" | "suspended" | "io-error" | "internal-error" | "guest-panicked" => {
            LauncherPhase::Paused
        }
        _ => current,
    }
}

/// Maps QMP `query-block` output to disk statuses (node name and file).
pub fn disk_statuses(blocks: &serde_json::Value) -> Vec<DiskStatus> {
    let mut out: Vec<DiskStatus> = blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            let inserted = b.get("inserted")?;
            Some(DiskStatus {
                name: inserted.get("node-name")?.as_str()?.to_string(),
                file: inserted.get("file")?.as_str()?.to_string(),
                read_only: inserted
                    .get("ro")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Keeps QEMU's last stderr lines (and logs them) for failure messages.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<VecDeque<String>>> {
    let lines = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(stderr) = child.stderr.take() {
        let keep = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                tracing::warn!(target: "qemu", "{line}");
                let mut k = keep.lock().unwrap();
                if k.len() == 20 {
                    k.pop_front();
                }
                k.push_back(line);
            }
        });
    }
    lines
}

fn tail(lines: &Mutex<VecDeque<String>>) -> String {
    let l = lines.lock().unwrap();
    if l.is_empty() {
        "(no stderr)".into()
    } else {
        l.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

fn describe(exit: std::io::Result<std::process::ExitStatus>) -> String {
    match exit {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

struct ClearQuiescer<'a>(&'a State);
impl Drop for ClearQuiescer<'_> {
    fn drop(&mut self) {
        self.0.set_quiescer(None);
    }
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

async fn sample_usage(pid: u32, state: Arc<State>) {
    let mut last: Option<(u64, Instant)> = None;
    let ticks = clock_ticks();
    loop {
        if let Some(sample) = read_proc(pid) {
            let now = Instant::now();
            let cores = last.map(|(cpu, at)| {
                let dt = now.duration_since(at).as_secs_f64();
                if dt > 0.0 {
                    (sample.0.saturating_sub(cpu)) as f64 / ticks / dt
                } else {
                    0.0
                }
            });
            last = Some((sample.0, now));
            state.update(|s| {
                if let Some(c) = cores {
                    s.cpu_usage_cores = Some((c * 1000.0).round() / 1000.0);
                }
                s.memory_usage_bytes = Some(sample.1);
            });
        }
        tokio::time::sleep(SAMPLE_PERIOD).await;
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (utime+stime ticks, RSS bytes) of a process.
fn read_proc(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (cpu, rss_pages) = parse_stat(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some((cpu, rss_pages * page))
}

/// utime+stime and RSS pages from `/proc/<pid>/stat` (fields after the
/// command name, which may contain spaces and parentheses).
pub fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime=14, stime=15, rss=24.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss: u64 = fields.get(21)?.parse().ok()?;
    Some((utime + stime, rss))
}

/// Writes the final phase/reason/message where Kubernetes picks it up as
/// the container's termination message (limit 4096 bytes).
fn write_termination_message(config: &LaunchConfig, state: &State) {
    let s = state.snapshot();
    let mut message = s.message.clone();
    message.truncate(3000);
    let body = serde_json::json!({ "phase": s.phase, "reason": s.reason, "message": message });
    if let Err(e) = std::fs::write(&config.termination_message_path, body.to_string()) {
        tracing::debug!(path = %config.termination_message_path.display(), error = %e, "no termination message written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        let stat = "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000000 2560 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((300, 2560)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn run_states_map_to_phases() {
        use LauncherPhase::*;
        assert_eq!(phase_for("running", Starting), Running);
        assert_eq!(phase_for("paused", Running), Paused);
        assert_eq!(phase_for("io-error", Running), Paused);
        assert_eq!(phase_for("running", Paused), Running);
        assert_eq!(phase_for("prelaunch", Starting), Starting);
        assert_eq!(phase_for("inmigrate", Starting), Starting);
    }

    #[test]
    fn maps_query_block() {
        let v = serde_json::json!([
            {"device": "", "qdev": "/machine/peripheral/virtio-cidata/virtio-backend",
             "inserted": {"node-name": "cidata", "file": "/run/cidata.iso", "ro": true}},
            {"device": "", "inserted": {"node-name": "disk0", "file": "/d/disk.img", "ro": false}},
            {"device": "cd0"}
        ]);
        let d = disk_statuses(&v);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            DiskStatus {
                name: "cidata".into(),
                file: "/run/cidata.iso".into(),
                read_only: true
            }
        );
        assert_eq!(d[1].name, "disk0");
    }
}
