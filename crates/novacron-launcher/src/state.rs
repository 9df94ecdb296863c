//! State shared by the supervisor and the control API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{LauncherStatus, MigrateRequest, MigrationStatus};
use crate::quiesce::Quiescer;

/// A migration command from the control API to the supervisor, which owns
/// QMP (QEMU's monitor accepts one client).
pub enum Control {
    /// `POST /migrate`.
    Migrate(MigrateRequest, oneshot::Sender<ControlReply>),
    /// `POST /migrate/cancel`.
    Cancel(oneshot::Sender<ControlReply>),
}

/// The supervisor's answer: the migration status, or an HTTP status code
/// and why.
pub type ControlReply = Result<MigrationStatus, (u16, String)>;

/// How long the API waits for the supervisor to take a command.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// The launcher's live status plus the shutdown request flag and the
/// migration command channel.
pub struct State {
    status: Mutex<LauncherStatus>,
    shutdown: watch::Sender<bool>,
    control_tx: mpsc::Sender<Control>,
    control_rx: Mutex<Option<mpsc::Receiver<Control>>>,
    /// Set while QEMU runs under supervision (`POST /quiesce`).
    quiescer: Mutex<Option<Arc<Quiescer>>>,
}

impl Default for State {
    fn default() -> Self {
        let (control_tx, control_rx) = mpsc::channel(4);
        State {
            status: Mutex::new(LauncherStatus::default()),
            shutdown: watch::channel(false).0,
            control_tx,
            control_rx: Mutex::new(Some(control_rx)),
            quiescer: Mutex::new(None),
        }
    }
}

impl State {
    /// A copy of the current status.
    pub fn snapshot(&self) -> LauncherStatus {
        self.status.lock().unwrap().clone()
    }

    /// Changes the status in place.
    pub fn update(&self, f: impl FnOnce(&mut LauncherStatus)) {
        f(&mut self.status.lock().unwrap());
    }

    /// Asks for a graceful shutdown (POST /shutdown, SIGTERM). Idempotent.
    pub fn request_shutdown(&self) {
        // Show the request at once; the supervisor confirms the phase.
        self.update(|s| {
            if !s.phase.is_final() {
                s.phase = crate::api::LauncherPhase::ShuttingDown;
            }
        });
        self.shutdown.send_replace(true);
    }

    /// Whether a shutdown was requested.
    pub fn shutdown_requested(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The receiving end of migration commands (the supervisor takes it once).
    pub fn take_control(&self) -> Option<mpsc::Receiver<Control>> {
        self.control_rx.lock().unwrap().take()
    }

    /// Sends a migration command to the supervisor and waits for its answer.
    pub async fn control(
        &self,
        make: impl FnOnce(oneshot::Sender<ControlReply>) -> Control,
    ) -> ControlReply {
        let (tx, rx) = oneshot::channel();
        let gone = || {
            (
                409,
                "the launcher is not supervising a running VM".to_string(),
            )
        };
        self.control_tx.send(make(tx)).await.map_err(|_| gone())?;
        match tokio::time::timeout(CONTROL_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err((503, "the launcher is busy; retry".to_string())),
        }
    }

    /// Installs (or, when QEMU is gone, removes) the quiescer.
    pub fn set_quiescer(&self, q: Option<Arc<Quiescer>>) {
        *self.quiescer.lock().unwrap() = q;
    }

    /// The quiescer, while QEMU runs under supervision.
    pub fn quiescer(&self) -> Option<Arc<Quiescer>> {
        self.quiescer.lock().unwrap().clone()
    }

    /// Resolves once a shutdown is requested.
    pub async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}
