//! State shared by the supervisor and the control API.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::api::LauncherStatus;

/// The launcher's live status plus the shutdown request flag.
pub struct State {
    status: Mutex<LauncherStatus>,
    shutdown: watch::Sender<bool>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Mutex::new(LauncherStatus::default()),
            shutdown: watch::channel(false).0,
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

    /// Resolves once a shutdown is requested.
    pub async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}
