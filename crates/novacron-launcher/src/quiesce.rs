//! Making a running VM's disks consistent for a snapshot (`POST /quiesce`,
//! `POST /release`).
//!
//! When the guest's QEMU guest agent answers on its virtio-serial channel
//! (`org.qemu.guest_agent.0`, a unix socket QEMU listens on), its
//! filesystems are frozen (`guest-fsfreeze-freeze`); otherwise the VM is
//! paused (QMP `stop`). A release thaws or resumes. A quiesce is bounded:
//! without a release the launcher undoes it by itself after
//! `quiesceReleaseSeconds`, so a lost operator never leaves a guest frozen
//! or paused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::api::{QuiesceState, QuiesceStatus};
use crate::qmp::Qmp;
use crate::state::State;

/// How long the guest agent gets to answer `guest-sync-delimited`: an
/// agent that runs answers at once; none running means no answer at all.
pub const AGENT_SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a freeze or thaw may take (the guest flushes its caches).
/// With the sync this stays below the operator's 10 s call timeout.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(7);
/// Delay before retrying a release that failed.
const RELEASE_RETRY: Duration = Duration::from_secs(5);

/// Guest agent errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("guest agent channel: {0}")]
    Io(String),
    #[error("the guest agent did not answer {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("guest agent protocol error: {0}")]
    Protocol(String),
    #[error("guest agent command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("the guest agent channel closed")]
    Closed,
}

/// A synchronised connection to a QEMU guest agent (QGA JSON protocol:
/// one `{"execute": ...}` per request, one `{"return"|"error": ...}` per
/// reply; `guest-sync-delimited` discards stale replies of earlier clients).
pub struct Agent {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Agent {
    /// Connects to the agent's channel and synchronises within `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Agent, AgentError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| AgentError::Io(format!("{}: {e}", path.display())))?;
        let (read, writer) = stream.into_split();
        let mut agent = Agent {
            reader: BufReader::new(read),
            writer,
        };
        agent.sync(timeout).await?;
        Ok(agent)
    }

    /// `guest-sync-delimited` with a fresh id, preceded by 0xFF (which
    /// resets the agent's parser after a partial request of an earlier
    /// client); replies until the one carrying the id are stale.
    async fn sync(&mut self, timeout: Duration) -> Result<(), AgentError> {
        let id = sync_id();
        let mut request = vec![0xFF];
        request.extend_from_slice(
            json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})
                .to_string()
                .as_bytes(),
        );
        request.push(b'\n');
        let exchange = async {
            self.write(&request).await?;
            loop {
                let reply = self.read_reply().await?;
                if reply.get("return").and_then(Value::as_u64) == Some(id) {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AgentError::Timeout("guest-sync-delimited".into(), timeout))?
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        let exchange = async {
            self.write(&line).await?;
            let reply = self.read_reply().await?;
            match (reply.get("return"), reply.get("error")) {
                (Some(r), _) => Ok(r.clone()),
                (None, Some(e)) => Err(AgentError::Command {
                    command: command.into(),
                    class: e["class"].as_str().unwrap_or("GenericError").into(),
                    desc: e["desc"].as_str().unwrap_or_default().into(),
                }),
                (None, None) => Err(AgentError::Protocol(format!(
                    "reply without return or error: {reply}"
                ))),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AgentError::Timeout(command.into(), timeout))?
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), AgentError> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|e| AgentError::Io(e.to_string()))
    }

    /// The next JSON reply; a 0xFF sentinel resets what came before it.
    async fn read_reply(&mut self) -> Result<Value, AgentError> {
        loop {
            let mut buf = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|e| AgentError::Io(e.to_string()))?;
            if n == 0 {
                return Err(AgentError::Closed);
            }
            let start = buf.iter().rposition(|b| *b == 0xFF).map_or(0, |i| i + 1);
            let text = String::from_utf8_lossy(&buf[start..]);
            if text.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(text.trim())
                .map_err(|e| AgentError::Protocol(format!("{e}: {text:?}")));
        }
    }
}

/// A sync id that differs between calls and processes.
fn sync_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    ((u64::from(std::process::id()) << 20) ^ nanos ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 40))
        & 0x7fff_ffff_ffff
}

/// What a quiesce holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    Frozen,
    Paused,
    /// The VM was paused before (by its user or an I/O error): consistent
    /// already, and not ours to resume.
    AlreadyPaused,
}

#[derive(Default)]
struct Held {
    hold: Option<Hold>,
    /// Bumped on every change, so a stale auto-release does nothing.
    generation: u64,
    timer: Option<JoinHandle<()>>,
}

/// An error answer: HTTP status code and message.
pub type QuiesceError = (u16, String);

/// Quiesces one VM (the supervisor creates it once QMP is connected).
pub struct Quiescer {
    qmp: Arc<Qmp>,
    agent_socket: PathBuf,
    release_after: Duration,
    held: Mutex<Held>,
}

impl Quiescer {
    pub fn new(qmp: Arc<Qmp>, agent_socket: PathBuf, release_after: Duration) -> Arc<Self> {
        Arc::new(Quiescer {
            qmp,
            agent_socket,
            release_after,
            held: Mutex::new(Held::default()),
        })
    }

    /// Freezes (agent) or pauses (no agent); a repeated call keeps what is
    /// held and restarts the bound.
    pub async fn quiesce(
        self: &Arc<Self>,
        state: &Arc<State>,
    ) -> Result<QuiesceStatus, QuiesceError> {
        let mut held = self.held.lock().await;
        if let Some(hold) = held.hold {
            self.arm(&mut held, state, self.release_after);
            return Ok(self.held_status(hold, None, "already quiesced".into()));
        }
        let run_state = self
            .qmp
            .query_status()
            .await
            .map_err(|e| (502, format!("cannot read the VM's state: {e}")))?;
        match run_state.as_str() {
            "running" => {}
            "paused" => {
                held.hold = Some(Hold::AlreadyPaused);
                self.arm(&mut held, state, self.release_after);
                return Ok(self.held_status(
                    Hold::AlreadyPaused,
                    None,
                    "the VM was already paused; it stays paused after the release".into(),
                ));
            }
            other => return Err((409, format!("the VM is {other}, not running"))),
        }
        let note = match self.freeze().await {
            Ok(count) => {
                held.hold = Some(Hold::Frozen);
                self.arm(&mut held, state, self.release_after);
                state.update(|s| s.quiesced = Some(QuiesceState::Frozen));
                tracing::info!(filesystems = count, "guest filesystems frozen");
                return Ok(self.held_status(
                    Hold::Frozen,
                    Some(count),
                    "guest filesystems frozen by the guest agent".into(),
                ));
            }
            Err(e) => format!("{e}; the VM is paused instead"),
        };
        self.qmp
            .execute("stop", None)
            .await
            .map_err(|e| (502, format!("cannot pause the VM: {e}")))?;
        held.hold = Some(Hold::Paused);
        self.arm(&mut held, state, self.release_after);
        state.update(|s| s.quiesced = Some(QuiesceState::Paused));
        tracing::info!(%note, "VM paused for a snapshot");
        Ok(self.held_status(Hold::Paused, None, note))
    }

    /// Thaws or resumes what [`Quiescer::quiesce`] held; nothing to do is
    /// fine.
    pub async fn release(
        self: &Arc<Self>,
        state: &Arc<State>,
    ) -> Result<QuiesceStatus, QuiesceError> {
        let mut held = self.held.lock().await;
        if let Some(t) = held.timer.take() {
            t.abort();
        }
        let result = self.release_held(&mut held, state).await;
        if result.is_err() {
            // Still held: try again soon rather than leave the guest so.
            self.arm(&mut held, state, RELEASE_RETRY);
        }
        result
    }

    /// What the bound does when no release came.
    async fn auto_release(self: Arc<Self>, generation: u64, state: Arc<State>) {
        let mut held = self.held.lock().await;
        if held.generation != generation {
            return;
        }
        // This task itself: not aborted (it would cancel the release).
        held.timer.take();
        tracing::warn!(
            after = ?self.release_after,
            "no release came for the quiesce; releasing the guest"
        );
        if let Err((_, e)) = self.release_held(&mut held, &state).await {
            tracing::error!(error = %e, "auto-release failed; retrying");
            self.arm(&mut held, &state, RELEASE_RETRY);
        }
    }

    async fn release_held(
        &self,
        held: &mut Held,
        state: &Arc<State>,
    ) -> Result<QuiesceStatus, QuiesceError> {
        held.generation += 1;
        let message = match held.hold {
            None => "nothing was quiesced".to_string(),
            Some(Hold::AlreadyPaused) => "the VM was paused before the quiesce".to_string(),
            Some(Hold::Frozen) => {
                let thawed = async {
                    let mut agent = Agent::connect(&self.agent_socket, AGENT_SYNC_TIMEOUT).await?;
                    agent
                        .execute("guest-fsfreeze-thaw", None, FREEZE_TIMEOUT)
                        .await
                };
                match thawed.await {
                    Ok(n) => format!("{} guest filesystems thawed", n.as_u64().unwrap_or(0)),
                    Err(e) => return Err((502, format!("cannot thaw the guest: {e}"))),
                }
            }
            Some(Hold::Paused) => match self.qmp.execute("cont", None).await {
                Ok(_) => "the VM resumed".to_string(),
                Err(e) => return Err((502, format!("cannot resume the VM: {e}"))),
            },
        };
        held.hold = None;
        state.update(|s| s.quiesced = None);
        Ok(QuiesceStatus {
            state: QuiesceState::Released,
            frozen_filesystems: None,
            auto_release_seconds: None,
            message,
        })
    }

    /// (Re)starts the bound.
    fn arm(self: &Arc<Self>, held: &mut Held, state: &Arc<State>, after: Duration) {
        held.generation += 1;
        if let Some(t) = held.timer.take() {
            t.abort();
        }
        let (me, state, generation) = (self.clone(), state.clone(), held.generation);
        held.timer = Some(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            me.auto_release(generation, state).await;
        }));
    }

    /// Freezes through the agent; a failed freeze is undone (it may have
    /// frozen some filesystems).
    async fn freeze(&self) -> Result<u64, AgentError> {
        let mut agent = Agent::connect(&self.agent_socket, AGENT_SYNC_TIMEOUT).await?;
        match agent
            .execute("guest-fsfreeze-freeze", None, FREEZE_TIMEOUT)
            .await
        {
            Ok(n) => Ok(n.as_u64().unwrap_or(0)),
            Err(e) => {
                let thaw = async {
                    let mut a = Agent::connect(&self.agent_socket, AGENT_SYNC_TIMEOUT).await?;
                    a.execute("guest-fsfreeze-thaw", None, FREEZE_TIMEOUT).await
                };
                if let Err(t) = thaw.await {
                    tracing::warn!(error = %t, "thaw after a failed freeze failed");
                }
                Err(e)
            }
        }
    }

    fn held_status(&self, hold: Hold, frozen: Option<u64>, message: String) -> QuiesceStatus {
        QuiesceStatus {
            state: match hold {
                Hold::Frozen => QuiesceState::Frozen,
                Hold::Paused | Hold::AlreadyPaused => QuiesceState::Paused,
            },
            frozen_filesystems: frozen,
            auto_release_seconds: Some(self.release_after.as_secs().max(1)),
            message,
        }
    }
}

#[cfg(test)]
mod tests;
