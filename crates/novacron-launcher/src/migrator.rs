//! Drives live migrations over QMP for the supervisor (which owns the QMP
//! connection): the target side set up at start (`incoming`), the source
//! side started by `POST /migrate`, progress polled from `query-migrate`
//! into [`crate::api::MigrationStatus`], cancellation and timeouts.
//!
//! Outcomes the supervisor acts on are returned as [`Outcome`]: the source
//! stops QEMU after a completed migration; a target that cannot receive
//! the VM quits QEMU and exits with [`EXIT_MIGRATION_FAILED`].

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
        post_copy: false,
        downtime_limit_ms: req.downtime_limit_ms,
        tls_dir: req.tls.then(|| tls_dir.to_path_buf()),
        tls_hostname: req.tls_hostname.clone(),
    }
}

/// Target-side options for the incoming config (only what must match the
/// source: multifd, compression, channels, TLS).
pub fn target_options(inc: &IncomingConfig, tls_dir: &Path) -> MigrationOptions {
    MigrationOptions {
        compression: inc.compression,
        multifd_channels: inc.multifd_channels,
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

/// The migration state of one launcher.
pub struct Migrations {
    tls_dir: std::path::PathBuf,
    incoming: Option<IncomingConfig>,
    /// Source: the running migration's deadline and cancellation.
    outgoing: Option<(Option<Instant>, Option<CancelCause>)>,
    /// Target: deadline for the VM to arrive.
    incoming_deadline: Option<Instant>,
    /// Target: set up and not yet completed.
    incoming_pending: bool,
}

impl Migrations {
    pub fn new(config: &LaunchConfig) -> Self {
        Migrations {
            tls_dir: config.migration_tls_dir(),
            incoming: config.incoming.clone(),
            outgoing: None,
            incoming_deadline: None,
            incoming_pending: false,
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
        let settings = prepare(qmp, &opts, Side::Target).await?;
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
        self.outgoing = Some((
            req.timeout_seconds
                .map(|s| Instant::now() + Duration::from_secs(s)),
            None,
        ));
        state.update(|s| s.migration = Some(status.clone()));
        Ok(status)
    }

    async fn cancel(&mut self, qmp: &Qmp, cause: CancelCause) {
        if let Some((_, c)) = &mut self.outgoing
            && c.is_none()
        {
            *c = Some(cause);
            if let Err(e) = qmp.execute("migrate_cancel", None).await {
                tracing::warn!(error = %e, "migrate_cancel failed");
            }
        }
    }

    /// Source: cancels a running migration before a shutdown and waits
    /// (bounded) for QEMU to confirm.
    pub async fn cancel_for_shutdown(&mut self, qmp: &Qmp, state: &State) {
        if self.outgoing.is_none() {
            return;
        }
        self.cancel(qmp, CancelCause::Shutdown).await;
        let deadline = Instant::now() + CANCEL_WAIT;
        while self.outgoing.is_some() && Instant::now() < deadline {
            tokio::time::sleep(POLL_PERIOD).await;
            let _ = self.poll(qmp, state).await;
        }
    }

    /// Source: polls `query-migrate`, enforces the timeout. Target: gives
    /// up after `incoming.timeoutSeconds`.
    pub async fn poll(&mut self, qmp: &Qmp, state: &State) -> Option<Outcome> {
        if let Some((deadline, cause)) = self.outgoing {
            if cause.is_none() && deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::warn!("migration timed out: cancelling");
                self.cancel(qmp, CancelCause::Timeout).await;
            }
            let p = query(qmp).await?;
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
        let cause = self.outgoing.and_then(|(_, c)| c);
        let (phase, reason, message) = match p.status.as_str() {
            "completed" => (MigrationPhase::Completed, "", String::new()),
            "failed" if cause == Some(CancelCause::Timeout) => (
                MigrationPhase::Failed,
                "MigrationTimeout",
                "cancelled after timeoutSeconds; the VM keeps running here".into(),
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
                if phase == MigrationPhase::Completed {
                    done_message = format!(
                        "migrated to {} in {} ms (downtime {} ms, {} MiB transferred)",
                        m.address,
                        p.total_time_ms.unwrap_or(0),
                        p.downtime_ms.unwrap_or(0),
                        p.transferred_bytes >> 20
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
        // The VM arrived when QEMU left `inmigrate` (it resumes on its own).
        let arrived = run_state.is_some_and(|r| r != "inmigrate" && r != "prelaunch");
        let failed = p.as_ref().is_some_and(|p| p.status == "failed");
        state.update(|s| {
            if let Some(m) = &mut s.migration {
                if arrived {
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
        m.outgoing = Some((None, None));
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
        m.outgoing = Some((None, Some(CancelCause::Timeout)));
        m.source_progress(progress("cancelled"), &state);
        let s = state.snapshot().migration.unwrap();
        assert_eq!(
            (s.phase, s.reason.as_str()),
            (MigrationPhase::Failed, "MigrationTimeout")
        );

        let (mut m, state) = source_state();
        m.outgoing = Some((None, Some(CancelCause::Requested)));
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

        m.incoming_pending = true;
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
