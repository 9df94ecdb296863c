//! Drives live migrations over QMP for the supervisor (which owns the QMP
//! connection): the target side set up at start (`incoming`), the source
//! side started by `POST /migrate`, progress polled from `query-migrate`
//! into [`crate::api::MigrationStatus`], cancellation and timeouts.
//!
//! Outcomes the supervisor acts on are returned as [`Outcome`]: the source
//! stops QEMU after a completed migration; a target that cannot receive
//! the VM quits QEMU and exits with [`EXIT_MIGRATION_FAILED`].
//!
//! Post-copy (`postCopy` in the request, `incoming.postCopy` on the
//! target): the source switches with `migrate-start-postcopy` when
//! [`migration::postcopy_due`] says pre-copy did not converge. From then on
//! the VM runs on the target and its memory is split between both QEMUs, so
//! neither side cancels or gives up any more (timeouts, cancel requests and
//! the target's arrival deadline no longer apply): the migration runs to
//! its end. The target counts as arrived only once QEMU reports
//! `completed`, not at its early `RESUME`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::api::{
    LauncherPhase, MigrateRequest, MigrationPhase, MigrationProgress, MigrationRole,
    MigrationSettings, MigrationStatus,
};
use crate::config::{IncomingConfig, LaunchConfig};
use crate::migration::{self, MigrationOptions, Side, TLS_CREDS_ID};
use crate::qmp::{Qmp, QmpEvent};
use crate::state::{Control, ControlReply, State};

/// Exit code of a target launcher whose incoming migration failed, timed
/// out or was cancelled (the VM keeps running on the source).
pub const EXIT_MIGRATION_FAILED: i32 = 4;

/// How often the source polls `query-migrate` for progress (QMP
/// `MIGRATION` events trigger an extra poll at once). The target never
/// polls: it follows `MIGRATION`/`RESUME` events, because QMP commands
/// served while QEMU loads the incoming state measurably stretched the
/// downtime (benches/migration.rs).
pub const POLL_PERIOD: Duration = Duration::from_millis(500);

/// How long a source waits for QEMU to confirm a cancellation.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// How long a source in post-copy, asked to shut down, waits for the
/// migration to end first (stopping it earlier would lose the VM; the
/// remaining pages go at full speed, `max-postcopy-bandwidth` is unset).
const POSTCOPY_SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// Answer to a cancel request once post-copy started.
const NO_CANCEL_IN_POSTCOPY: &str = "the migration is in post-copy: the VM runs on the target and part of its memory is still here, so cancelling would lose it; it runs to its end";

/// What the supervisor must do after a migration step.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Source: the VM runs on the target now; stop QEMU, exit 0 `Migrated`.
    Migrated { message: String },
    /// Target: give up; quit QEMU, exit [`EXIT_MIGRATION_FAILED`].
    TargetGaveUp { reason: String, message: String },
}

/// Source-side options for a request.
pub fn source_options(req: &MigrateRequest, tls_dir: &Path) -> MigrationOptions {
    MigrationOptions {
        max_bandwidth_bytes: req.bandwidth_bytes_per_second,
        compression: req.compression,
        multifd_channels: req.multifd_channels,
        auto_converge: req.auto_converge,
        post_copy: req.post_copy,
        downtime_limit_ms: req.downtime_limit_ms,
        tls_dir: req.tls.then(|| tls_dir.to_path_buf()),
        tls_hostname: req.tls_hostname.clone(),
    }
}

/// Target-side options for the incoming config (only what must match the
/// source: multifd, compression, channels, TLS, post-copy; QEMU needs
/// `postcopy-ram` on the target before the stream starts).
pub fn target_options(inc: &IncomingConfig, tls_dir: &Path) -> MigrationOptions {
    MigrationOptions {
        compression: inc.compression,
        multifd_channels: inc.multifd_channels,
        post_copy: inc.post_copy,
        tls_dir: inc.tls.then(|| tls_dir.to_path_buf()),
        ..Default::default()
    }
}

/// TLS credentials, capabilities and parameters, then reads them back from
/// QEMU (so the status shows what QEMU really uses).
pub async fn prepare(
    qmp: &Qmp,
    opts: &MigrationOptions,
    side: Side,
) -> Result<MigrationSettings, String> {
    if let Some(dir) = &opts.tls_dir {
        let missing: Vec<&str> = migration::tls_files(side)
            .into_iter()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "migration TLS files missing in {}: {}",
                dir.display(),
                missing.join(", ")
            ));
        }
        // A previous attempt may have left the object; re-adding reads
        // the current (possibly rotated) certificates.
        let _ = qmp
            .execute("object-del", Some(json!({ "id": TLS_CREDS_ID })))
            .await;
        qmp.execute("object-add", migration::tls_object_add(opts, side))
            .await
            .map_err(|e| format!("TLS credentials: {e}"))?;
    }
    qmp.execute(
        "migrate-set-capabilities",
        Some(migration::capabilities(opts)),
    )
    .await
    .map_err(|e| e.to_string())?;
    qmp.execute("migrate-set-parameters", Some(migration::parameters(opts)))
        .await
        .map_err(|e| e.to_string())?;
    let caps = qmp
        .execute("query-migrate-capabilities", None)
        .await
        .map_err(|e| e.to_string())?;
    let params = qmp
        .execute("query-migrate-parameters", None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(migration::settings(&caps, &params))
}

/// QEMU's bare "Postcopy is not supported" on the target almost always
/// means userfaultfd is not allowed for its (unprivileged) process.
fn postcopy_hint(opts: &MigrationOptions, e: String) -> String {
    if opts.post_copy && e.contains("Postcopy is not supported") {
        format!(
            "{e}: post-copy needs userfaultfd, which this unprivileged QEMU may not use \
             (allow it on the node with sysctl vm.unprivileged_userfaultfd=1, or set postCopy: false)"
        )
    } else {
        e
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Why a source migration is being cancelled.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CancelCause {
    Requested,
    Timeout,
    Shutdown,
}

/// Source: the running migration.
#[derive(Clone, Copy, Debug, Default)]
struct Outgoing {
    deadline: Option<Instant>,
    cancel: Option<CancelCause>,
    /// The request allows post-copy.
    post_copy: bool,
    /// `migrate-start-postcopy` was issued (once; QEMU then reports
    /// `postcopy-active`).
    postcopy_started: bool,
}

impl Outgoing {
    fn in_postcopy(&self) -> bool {
        self.postcopy_started
    }
}

/// Target: what QEMU reported of the incoming migration so far.
#[derive(Clone, Copy, Debug, Default)]
struct IncomingSeen {
    /// The VM runs here (`RESUME`).
    resumed: bool,
    /// QEMU reported post-copy.
    postcopy: bool,
    /// QEMU reported `completed`.
    completed: bool,
}

impl IncomingSeen {
    /// In post-copy the VM resumes here before the rest of its memory
    /// arrived: it has arrived once QEMU also reports `completed`.
    fn arrived(&self) -> bool {
        self.resumed && (!self.postcopy || self.completed)
    }
}

/// The migration state of one launcher.
pub struct Migrations {
    tls_dir: std::path::PathBuf,
    incoming: Option<IncomingConfig>,
    /// Source: the running migration.
    outgoing: Option<Outgoing>,
    /// Target: deadline for the VM to arrive.
    incoming_deadline: Option<Instant>,
    /// Target: set up and not yet completed.
    incoming_pending: bool,
    /// Target: what QEMU reported so far.
    seen: IncomingSeen,
}

impl Migrations {
    pub fn new(config: &LaunchConfig) -> Self {
        Migrations {
            tls_dir: config.migration_tls_dir(),
            incoming: config.incoming.clone(),
            outgoing: None,
            incoming_deadline: None,
            incoming_pending: false,
            seen: IncomingSeen::default(),
        }
    }

    /// Whether `query-migrate` should be polled.
    pub fn active(&self) -> bool {
        self.outgoing.is_some() || self.incoming_pending
    }

    /// Whether this target has not received its VM yet.
    pub fn incoming_pending(&self) -> bool {
        self.incoming_pending
    }

    /// Target: capabilities, parameters, TLS, `migrate-incoming`.
    pub async fn start_incoming(&mut self, qmp: &Qmp, state: &State) -> Result<(), String> {
        let Some(inc) = self.incoming.clone() else {
            return Ok(());
        };
        let opts = target_options(&inc, &self.tls_dir);
        let settings = prepare(qmp, &opts, Side::Target)
            .await
            .map_err(|e| postcopy_hint(&opts, e))?;
        let uri = migration::incoming_uri(&inc.listen)?;
        qmp.execute("migrate-incoming", Some(uri))
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", inc.listen))?;
        self.incoming_pending = true;
        self.incoming_deadline = inc
            .timeout_seconds
            .map(|s| Instant::now() + Duration::from_secs(s));
        state.update(|s| {
            s.message = format!("waiting for the incoming migration on {}", inc.listen);
            s.migration = Some(MigrationStatus {
                role: MigrationRole::Target,
                phase: MigrationPhase::WaitingForMigration,
                address: inc.listen.clone(),
                settings: Some(settings),
                ..Default::default()
            });
        });
        Ok(())
    }

    /// Marks a target's migration failed (QEMU ended or gave up).
    pub fn fail_incoming(&mut self, state: &State, phase: MigrationPhase, reason: &str, msg: &str) {
        self.incoming_pending = false;
        state.update(|s| {
            if let Some(m) = &mut s.migration {
                m.phase = phase;
                m.reason = reason.into();
                m.message = msg.into();
                m.finished_at = Some(now());
            }
        });
    }

    /// Handles a control command.
    pub async fn handle(&mut self, cmd: Control, qmp: &Qmp, state: &State) -> Option<Outcome> {
        match cmd {
            Control::Migrate(req, reply) => {
                let r = self.start_outgoing(&req, qmp, state).await;
                let _ = reply.send(r);
                None
            }
            Control::Cancel(reply) => {
                // A target that received its VM is an ordinary source from
                // then on (the VM may move again).
                if self.incoming_pending && self.seen.postcopy {
                    let _ = reply.send(Err((409, NO_CANCEL_IN_POSTCOPY.to_string())));
                    return None;
                }
                if self.incoming_pending {
                    let msg = "incoming migration cancelled on request";
                    self.fail_incoming(
                        state,
                        MigrationPhase::Cancelled,
                        "IncomingMigrationCancelled",
                        msg,
                    );
                    let _ = reply.send(current(state));
                    return Some(Outcome::TargetGaveUp {
                        reason: "IncomingMigrationCancelled".into(),
                        message: msg.into(),
                    });
                }
                let r = match self.outgoing {
                    None => Err((409, "no migration in progress".to_string())),
                    Some(o) if o.in_postcopy() => Err((409, NO_CANCEL_IN_POSTCOPY.to_string())),
                    Some(_) => {
                        self.cancel(qmp, CancelCause::Requested).await;
                        current(state)
                    }
                };
                let _ = reply.send(r);
                None
            }
        }
    }

    async fn start_outgoing(
        &mut self,
        req: &MigrateRequest,
        qmp: &Qmp,
        state: &State,
    ) -> ControlReply {
        req.check().map_err(|e| (400, e))?;
        if self.incoming_pending {
            return Err((409, "this launcher is still receiving the VM".into()));
        }
        if self.outgoing.is_some() {
            return Err((409, "a migration is already in progress".into()));
        }
        if state.snapshot().phase != LauncherPhase::Running {
            return Err((409, "the VM is not running".into()));
        }
        let opts = source_options(req, &self.tls_dir);
        let mut status = MigrationStatus {
            role: MigrationRole::Source,
            phase: MigrationPhase::Migrating,
            address: req.target.clone(),
            started_at: Some(now()),
            ..Default::default()
        };
        let started = async {
            let settings = prepare(qmp, &opts, Side::Source).await?;
            let uri = migration::migrate_to(&req.target)?;
            qmp.execute("migrate", Some(uri))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(settings)
        }
        .await;
        match started {
            Ok(settings) => status.settings = Some(settings),
            Err(e) => {
                status.phase = MigrationPhase::Failed;
                status.reason = "MigrationSetupFailed".into();
                status.message = e.clone();
                status.finished_at = Some(now());
                state.update(|s| s.migration = Some(status));
                return Err((500, format!("migration not started: {e}")));
            }
        }
        tracing::info!(target = %req.target, ?opts, "outgoing migration started");
        self.outgoing = Some(Outgoing {
            deadline: req
                .timeout_seconds
                .map(|s| Instant::now() + Duration::from_secs(s)),
            post_copy: req.post_copy,
            ..Default::default()
        });
        state.update(|s| s.migration = Some(status.clone()));
        Ok(status)
    }

    async fn cancel(&mut self, qmp: &Qmp, cause: CancelCause) {
        if let Some(o) = &mut self.outgoing
            && o.cancel.is_none()
            && !o.in_postcopy()
        {
            o.cancel = Some(cause);
            if let Err(e) = qmp.execute("migrate_cancel", None).await {
                tracing::warn!(error = %e, "migrate_cancel failed");
            }
        }
    }

    /// Source: cancels a running migration before a shutdown and waits
    /// (bounded) for QEMU to confirm; in post-copy, waits (bounded) for
    /// the migration to end instead.
    pub async fn cancel_for_shutdown(&mut self, qmp: &Qmp, state: &State) {
        let Some(o) = self.outgoing else {
            return;
        };
        let wait = if o.in_postcopy() {
            tracing::warn!("shutdown requested during post-copy: letting the migration end first");
            POSTCOPY_SHUTDOWN_WAIT
        } else {
            self.cancel(qmp, CancelCause::Shutdown).await;
            CANCEL_WAIT
        };
        let deadline = Instant::now() + wait;
        while self.outgoing.is_some() && Instant::now() < deadline {
            tokio::time::sleep(POLL_PERIOD).await;
            let _ = self.poll(qmp, state).await;
        }
    }

    /// Source: polls `query-migrate`, enforces the timeout. Target: gives
    /// up after `incoming.timeoutSeconds`.
    pub async fn poll(&mut self, qmp: &Qmp, state: &State) -> Option<Outcome> {
        if let Some(o) = self.outgoing {
            if o.cancel.is_none()
                && !o.in_postcopy()
                && o.deadline.is_some_and(|d| Instant::now() >= d)
            {
                tracing::warn!("migration timed out: cancelling");
                self.cancel(qmp, CancelCause::Timeout).await;
            }
            let p = query(qmp).await?;
            self.maybe_start_postcopy(&p, qmp).await;
            return self.source_progress(p, state);
        }
        // The target only checks its deadline here (no QMP; see POLL_PERIOD).
        if self.incoming_pending && self.incoming_deadline.is_some_and(|d| Instant::now() >= d) {
            let msg = "the VM did not arrive within incoming.timeoutSeconds";
            self.fail_incoming(
                state,
                MigrationPhase::Failed,
                "IncomingMigrationTimeout",
                msg,
            );
            return Some(Outcome::TargetGaveUp {
                reason: "IncomingMigrationTimeout".into(),
                message: msg.into(),
            });
        }
        None
    }

    /// Source: switches to post-copy when the request allows it and
    /// pre-copy did not converge ([`migration::postcopy_due`]). Issued once:
    /// a refusal is logged and the migration goes on as pre-copy.
    async fn maybe_start_postcopy(&mut self, p: &MigrationProgress, qmp: &Qmp) {
        let Some(o) = &mut self.outgoing else {
            return;
        };
        if migration::in_postcopy(&p.status) {
            o.postcopy_started = true;
        }
        if !o.post_copy || o.postcopy_started || o.cancel.is_some() || !migration::postcopy_due(p) {
            return;
        }
        // Marked before the call: whatever QEMU answers, it is not asked
        // again, and a cancel racing with the switch is refused.
        o.postcopy_started = true;
        match qmp.execute("migrate-start-postcopy", None).await {
            Ok(_) => tracing::info!(
                dirty_sync_count = p.dirty_sync_count,
                remaining_bytes = p.remaining_bytes,
                "pre-copy did not converge: switched to post-copy"
            ),
            Err(e) => {
                // QEMU refused (e.g. the migration just completed): still
                // pre-copy, so cancelling stays possible.
                o.postcopy_started = false;
                o.post_copy = false;
                tracing::warn!(error = %e, "migrate-start-postcopy refused; continuing in pre-copy");
            }
        }
    }

    /// Follows QMP events: `MIGRATION` (both sides; the source polls at
    /// once for the final figures) and `RESUME` (the VM arrived here).
    pub async fn on_event(
        &mut self,
        event: &QmpEvent,
        qmp: &Qmp,
        state: &State,
    ) -> Option<Outcome> {
        if self.outgoing.is_some() {
            if event.event == "MIGRATION" {
                return self.poll(qmp, state).await;
            }
            return None;
        }
        if !self.incoming_pending {
            return None;
        }
        match event.event.as_str() {
            "MIGRATION" => {
                let status = event.data["status"].as_str().unwrap_or_default();
                let p = MigrationProgress {
                    status: status.to_string(),
                    ..Default::default()
                };
                let error = (status == "failed")
                    .then(|| "the incoming migration failed (see QEMU's log)".to_string());
                self.target_progress(Some(MigrationProgress { error, ..p }), None, state)
            }
            "RESUME" => self.target_progress(None, Some("running"), state),
            _ => None,
        }
    }

    fn source_progress(&mut self, p: MigrationProgress, state: &State) -> Option<Outcome> {
        let cause = self.outgoing.and_then(|o| o.cancel);
        let postcopy =
            self.outgoing.is_some_and(|o| o.in_postcopy()) || migration::in_postcopy(&p.status);
        let (phase, reason, message) = match p.status.as_str() {
            "completed" => (MigrationPhase::Completed, "", String::new()),
            "failed" if cause == Some(CancelCause::Timeout) => (
                MigrationPhase::Failed,
                "MigrationTimeout",
                "cancelled after timeoutSeconds; the VM keeps running here".into(),
            ),
            "failed" if postcopy => (
                MigrationPhase::Failed,
                "PostcopyFailed",
                format!(
                    "{} during post-copy: the VM's memory was split between both sides and is lost",
                    p.error.as_deref().unwrap_or("migration failed")
                ),
            ),
            "failed" => (
                MigrationPhase::Failed,
                "MigrationFailed",
                format!(
                    "{}; the VM keeps running here",
                    p.error.as_deref().unwrap_or("migration failed")
                ),
            ),
            "cancelled" => match cause {
                Some(CancelCause::Timeout) => (
                    MigrationPhase::Failed,
                    "MigrationTimeout",
                    "cancelled after timeoutSeconds; the VM keeps running here".into(),
                ),
                Some(CancelCause::Shutdown) => (
                    MigrationPhase::Cancelled,
                    "ShutdownRequested",
                    "cancelled because the launcher is shutting down".into(),
                ),
                _ => (
                    MigrationPhase::Cancelled,
                    "Cancelled",
                    "cancelled on request; the VM keeps running here".into(),
                ),
            },
            _ => (MigrationPhase::Migrating, "", String::new()),
        };
        let mut done_message = String::new();
        state.update(|s| {
            if let Some(m) = &mut s.migration {
                m.phase = phase;
                m.reason = reason.into();
                m.message = message;
                if phase.is_final() {
                    m.finished_at = Some(now());
                }
                m.postcopy |= postcopy;
                if phase == MigrationPhase::Completed {
                    done_message = format!(
                        "migrated to {} in {} ms (downtime {} ms, {} MiB transferred{})",
                        m.address,
                        p.total_time_ms.unwrap_or(0),
                        p.downtime_ms.unwrap_or(0),
                        p.transferred_bytes >> 20,
                        if m.postcopy { ", post-copy" } else { "" }
                    );
                }
                m.progress = Some(p);
            }
        });
        if !phase.is_final() {
            return None;
        }
        self.outgoing = None;
        tracing::info!(?phase, reason, "outgoing migration ended");
        (phase == MigrationPhase::Completed).then_some(Outcome::Migrated {
            message: done_message,
        })
    }

    fn target_progress(
        &mut self,
        p: Option<MigrationProgress>,
        run_state: Option<&str>,
        state: &State,
    ) -> Option<Outcome> {
        // The VM runs here when QEMU left `inmigrate` (it resumes on its
        // own); in post-copy it has arrived only once QEMU says completed.
        if run_state.is_some_and(|r| r != "inmigrate" && r != "prelaunch") {
            self.seen.resumed = true;
        }
        if let Some(p) = &p {
            if migration::in_postcopy(&p.status) && !self.seen.postcopy {
                // The VM's memory is split now: giving up would lose it.
                self.seen.postcopy = true;
                self.incoming_deadline = None;
                tracing::info!("incoming migration entered post-copy");
            }
            self.seen.completed |= p.status == "completed";
        }
        let seen = self.seen;
        let arrived = seen.arrived();
        let failed = p.as_ref().is_some_and(|p| p.status == "failed");
        state.update(|s| {
            if let Some(m) = &mut s.migration {
                m.postcopy |= seen.postcopy;
                if seen.postcopy && seen.resumed && !arrived && m.message.is_empty() {
                    m.message =
                        "post-copy: the VM runs here while the rest of its memory arrives".into();
                }
                if arrived {
                    if seen.postcopy {
                        m.message.clear();
                    }
                    m.phase = MigrationPhase::Completed;
                    m.finished_at = Some(now());
                } else if p
                    .as_ref()
                    // `setup` is reported as soon as QEMU listens.
                    .is_some_and(|p| !matches!(p.status.as_str(), "none" | "setup"))
                    && !failed
                {
                    m.phase = MigrationPhase::Migrating;
                    m.started_at.get_or_insert_with(now);
                }
                if let Some(p) = &p
                    && p.status != "none"
                {
                    m.progress = Some(p.clone());
                }
            }
        });
        if arrived {
            self.incoming_pending = false;
            tracing::info!("incoming migration completed");
            return None;
        }
        if failed {
            let msg = p
                .and_then(|p| p.error)
                .unwrap_or_else(|| "incoming migration failed".into());
            self.fail_incoming(
                state,
                MigrationPhase::Failed,
                "IncomingMigrationFailed",
                &msg,
            );
            return Some(Outcome::TargetGaveUp {
                reason: "IncomingMigrationFailed".into(),
                message: msg,
            });
        }
        None
    }
}

fn current(state: &State) -> ControlReply {
    state
        .snapshot()
        .migration
        .ok_or((404, "no migration".to_string()))
}

/// `query-migrate` as progress (None when QMP fails). QEMU reports
/// `completed` a moment before it fills in `total-time` and `downtime`
/// (zeros until then), so a completed answer without them is asked again.
pub async fn query(qmp: &Qmp) -> Option<MigrationProgress> {
    for _ in 0..50 {
        let p = match qmp.execute("query-migrate", None).await {
            Ok(v) => migration::progress(&v),
            Err(e) => {
                tracing::warn!(error = %e, "query-migrate failed");
                return None;
            }
        };
        if p.status != "completed" || p.total_time_ms.unwrap_or(0) > 0 {
            return Some(p);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    query_once(qmp).await
}

async fn query_once(qmp: &Qmp) -> Option<MigrationProgress> {
    qmp.execute("query-migrate", None)
        .await
        .ok()
        .map(|v| migration::progress(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Compression;

    #[test]
    fn options_from_request_and_incoming_config() {
        let req = MigrateRequest {
            target: "10.0.0.2:8101".into(),
            bandwidth_bytes_per_second: Some(1 << 20),
            compression: Compression::Zstd,
            tls: true,
            tls_hostname: Some("vm.migration".into()),
            auto_converge: true,
            ..Default::default()
        };
        let o = source_options(&req, Path::new("/tls"));
        assert_eq!(o.tls_dir.as_deref(), Some(Path::new("/tls")));
        assert_eq!(o.max_bandwidth_bytes, Some(1 << 20));
        assert!(o.multifd() && o.auto_converge);
        let plain = source_options(
            &MigrateRequest {
                target: "h:1".into(),
                ..Default::default()
            },
            Path::new("/tls"),
        );
        assert_eq!(plain.tls_dir, None);
        let inc = IncomingConfig {
            compression: Compression::Zstd,
            tls: true,
            ..Default::default()
        };
        // Post-copy reaches both sides' capabilities.
        let pc = MigrateRequest {
            target: "h:1".into(),
            post_copy: true,
            ..Default::default()
        };
        let pc_inc = IncomingConfig {
            post_copy: true,
            ..Default::default()
        };
        assert!(source_options(&pc, Path::new("/tls")).post_copy);
        assert!(target_options(&pc_inc, Path::new("/tls")).post_copy);
        assert!(!o.post_copy && !target_options(&inc, Path::new("/tls")).post_copy);
        let pc_opts = target_options(&pc_inc, Path::new("/tls"));
        let hint = postcopy_hint(&pc_opts, "Postcopy is not supported".into());
        assert!(hint.contains("vm.unprivileged_userfaultfd=1"), "{hint}");
        assert_eq!(postcopy_hint(&pc_opts, "other".into()), "other");
        let t = target_options(&inc, Path::new("/tls"));
        // The stream-shaping settings match the source's.
        assert_eq!(
            migration::capabilities(&t)["capabilities"][0],
            migration::capabilities(&o)["capabilities"][0]
        );
        assert_eq!(
            migration::parameters(&t)["multifd-compression"],
            migration::parameters(&o)["multifd-compression"]
        );
        assert_eq!(migration::parameters(&t)["tls-creds"], TLS_CREDS_ID);
    }

    fn source_state() -> (Migrations, State) {
        let mut m = Migrations::new(&LaunchConfig::new("a", "b", "c", 1, 1 << 30));
        m.outgoing = Some(Outgoing::default());
        let state = State::default();
        state.update(|s| {
            s.migration = Some(MigrationStatus {
                address: "h:1".into(),
                phase: MigrationPhase::Migrating,
                ..Default::default()
            })
        });
        (m, state)
    }

    fn progress(status: &str) -> MigrationProgress {
        MigrationProgress {
            status: status.into(),
            total_time_ms: Some(1500),
            downtime_ms: Some(20),
            transferred_bytes: 64 << 20,
            ..Default::default()
        }
    }

    #[test]
    fn source_phases_from_query_migrate() {
        let (mut m, state) = source_state();
        assert_eq!(m.source_progress(progress("active"), &state), None);
        assert!(m.active());
        let out = m.source_progress(progress("completed"), &state).unwrap();
        assert_eq!(
            out,
            Outcome::Migrated {
                message: "migrated to h:1 in 1500 ms (downtime 20 ms, 64 MiB transferred)".into()
            }
        );
        assert!(!m.active());
        let s = state.snapshot().migration.unwrap();
        assert_eq!(s.phase, MigrationPhase::Completed);
        assert!(s.finished_at.is_some());

        let (mut m, state) = source_state();
        let mut p = progress("failed");
        p.error = Some("Connection refused".into());
        assert_eq!(m.source_progress(p, &state), None);
        let s = state.snapshot().migration.unwrap();
        assert_eq!(
            (s.phase, s.reason.as_str()),
            (MigrationPhase::Failed, "MigrationFailed")
        );
        assert!(s.message.contains("Connection refused"), "{}", s.message);

        let (mut m, state) = source_state();
        m.outgoing = Some(Outgoing {
            cancel: Some(CancelCause::Timeout),
            ..Default::default()
        });
        m.source_progress(progress("cancelled"), &state);
        let s = state.snapshot().migration.unwrap();
        assert_eq!(
            (s.phase, s.reason.as_str()),
            (MigrationPhase::Failed, "MigrationTimeout")
        );

        let (mut m, state) = source_state();
        m.outgoing = Some(Outgoing {
            cancel: Some(CancelCause::Requested),
            ..Default::default()
        });
        m.source_progress(progress("cancelling"), &state);
        assert!(m.active(), "still cancelling");
        m.source_progress(progress("cancelled"), &state);
        let s = state.snapshot().migration.unwrap();
        assert_eq!(
            (s.phase, s.reason.as_str()),
            (MigrationPhase::Cancelled, "Cancelled")
        );
    }

    #[test]
    fn post_copy_is_reported_and_never_undone() {
        let (mut m, state) = source_state();
        m.outgoing = Some(Outgoing {
            post_copy: true,
            deadline: Some(Instant::now()),
            ..Default::default()
        });
        assert_eq!(m.source_progress(progress("postcopy-active"), &state), None);
        assert!(state.snapshot().migration.unwrap().postcopy);
        // QEMU's word sets the state the poll keeps (no timeout, no cancel).
        m.outgoing.as_mut().unwrap().postcopy_started = true;
        assert!(m.outgoing.unwrap().in_postcopy());
        let out = m.source_progress(progress("completed"), &state).unwrap();
        assert_eq!(
            out,
            Outcome::Migrated {
                message:
                    "migrated to h:1 in 1500 ms (downtime 20 ms, 64 MiB transferred, post-copy)"
                        .into()
            }
        );
        let (mut m, state) = source_state();
        m.outgoing = Some(Outgoing {
            postcopy_started: true,
            ..Default::default()
        });
        m.source_progress(progress("failed"), &state);
        let s = state.snapshot().migration.unwrap();
        assert_eq!(
            (s.phase, s.reason.as_str()),
            (MigrationPhase::Failed, "PostcopyFailed")
        );
        assert!(s.message.contains("lost"), "{}", s.message);

        // Target: QEMU resumes the VM at the switch, but it has arrived only
        // once QEMU says completed; its arrival deadline no longer applies.
        let mut m = Migrations::new(&LaunchConfig::new("a", "b", "c", 1, 1 << 30));
        m.incoming_pending = true;
        m.incoming_deadline = Some(Instant::now());
        let state = State::default();
        state.update(|s| s.migration = Some(MigrationStatus::default()));
        m.target_progress(Some(progress("active")), None, &state);
        m.target_progress(Some(progress("postcopy-active")), None, &state);
        assert_eq!(m.incoming_deadline, None);
        m.target_progress(None, Some("running"), &state);
        let s = state.snapshot().migration.unwrap();
        assert_eq!(s.phase, MigrationPhase::Migrating);
        assert!(s.postcopy && s.message.contains("post-copy"), "{s:?}");
        assert!(m.incoming_pending());
        m.target_progress(Some(progress("completed")), None, &state);
        let s = state.snapshot().migration.unwrap();
        assert_eq!(s.phase, MigrationPhase::Completed);
        assert!(s.postcopy && s.message.is_empty(), "{s:?}");
        assert!(!m.incoming_pending());
    }

    #[test]
    fn target_phases_from_run_state() {
        let mut m = Migrations::new(&LaunchConfig::new("a", "b", "c", 1, 1 << 30));
        m.incoming_pending = true;
        let state = State::default();
        state.update(|s| s.migration = Some(MigrationStatus::default()));
        let none = Some(progress("none"));
        assert_eq!(m.target_progress(none, Some("inmigrate"), &state), None);
        m.target_progress(Some(progress("setup")), None, &state);
        assert_eq!(
            state.snapshot().migration.unwrap().phase,
            MigrationPhase::WaitingForMigration
        );
        m.target_progress(Some(progress("active")), Some("inmigrate"), &state);
        assert_eq!(
            state.snapshot().migration.unwrap().phase,
            MigrationPhase::Migrating
        );
        m.target_progress(Some(progress("completed")), Some("running"), &state);
        assert_eq!(
            state.snapshot().migration.unwrap().phase,
            MigrationPhase::Completed
        );
        assert!(!m.incoming_pending());

        // Another incoming migration (a fresh launcher in reality).
        m.incoming_pending = true;
        m.seen = IncomingSeen::default();
        let mut p = progress("failed");
        p.error = Some("load of migration failed".into());
        match m.target_progress(Some(p), Some("inmigrate"), &state) {
            Some(Outcome::TargetGaveUp { reason, .. }) => {
                assert_eq!(reason, "IncomingMigrationFailed")
            }
            other => panic!("{other:?}"),
        }
    }
}
