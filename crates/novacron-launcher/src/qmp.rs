//! A small QMP (QEMU Machine Protocol) client over a unix socket: greeting,
//! capability negotiation, commands matched to replies by `id`, and
//! asynchronous events on a broadcast channel.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, broadcast, oneshot};

/// QMP errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QmpError {
    #[error("QMP connection failed: {0}")]
    Io(String),
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP connection closed")]
    Closed,
    #[error("QMP command {0} timed out")]
    Timeout(String),
}

/// An asynchronous QMP event (`STOP`, `RESUME`, `SHUTDOWN`, `POWERDOWN`, ...).
#[derive(Clone, Debug)]
pub struct QmpEvent {
    pub event: String,
    pub data: Value,
}

type Pending =
    Arc<std::sync::Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>>>>;

/// A negotiated QMP connection. Cheap to share behind an `Arc`.
pub struct Qmp {
    writer: Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    events: broadcast::Sender<QmpEvent>,
    /// QEMU version from the greeting (`major.minor.micro`).
    pub version: String,
}

/// Time limit for one command reply.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Qmp {
    /// Connects, reads the greeting and leaves negotiation mode.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| QmpError::Io(format!("{}: {e}", path.display())))?;
        let (read, writer) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = lines
            .next_line()
            .await
            .map_err(|e| QmpError::Io(e.to_string()))?
            .ok_or(QmpError::Closed)?;
        let greeting: Value =
            serde_json::from_str(&greeting).map_err(|e| QmpError::Protocol(e.to_string()))?;
        let v = &greeting["QMP"]["version"]["qemu"];
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected a QMP greeting, got {greeting}"
            )));
        }
        let version = format!("{}.{}.{}", v["major"], v["minor"], v["micro"]);
        let pending: Pending = Arc::new(std::sync::Mutex::new(Some(HashMap::new())));
        let (events, _) = broadcast::channel(64);
        let reader_pending = pending.clone();
        let reader_events = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                    tracing::warn!(%line, "unparsable QMP message");
                    continue;
                };
                if let Some(event) = msg.get("event").and_then(Value::as_str) {
                    let _ = reader_events.send(QmpEvent {
                        event: event.to_string(),
                        data: msg.get("data").cloned().unwrap_or(Value::Null),
                    });
                    continue;
                }
                let Some(id) = msg.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                let reply = match (msg.get("return"), msg.get("error")) {
                    (Some(r), _) => Ok(r.clone()),
                    (None, Some(e)) => Err(QmpError::Command {
                        command: String::new(),
                        class: e["class"].as_str().unwrap_or("GenericError").to_string(),
                        desc: e["desc"].as_str().unwrap_or_default().to_string(),
                    }),
                    (None, None) => Err(QmpError::Protocol(format!(
                        "reply without return or error: {msg}"
                    ))),
                };
                let tx = reader_pending
                    .lock()
                    .unwrap()
                    .as_mut()
                    .and_then(|p| p.remove(&id));
                if let Some(tx) = tx {
                    let _ = tx.send(reply);
                }
            }
            // EOF: fail what is in flight and refuse new commands.
            reader_pending.lock().unwrap().take();
        });
        let qmp = Qmp {
            writer: Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            events,
            version,
        };
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Connects once the socket accepts, polling until `timeout`.
    pub async fn connect_with_retry(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match Qmp::connect(path).await {
                Ok(q) => return Ok(q),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Subscribes to events from now on.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Runs a command and returns its `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.pending.lock().unwrap().as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(QmpError::Closed),
        };
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes())
                .await
                .map_err(|e| QmpError::Io(e.to_string()))?;
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Err(_) => Err(QmpError::Timeout(command.to_string())),
            Ok(Err(_)) => Err(QmpError::Closed),
            Ok(Ok(Err(QmpError::Command { class, desc, .. }))) => Err(QmpError::Command {
                command: command.to_string(),
                class,
                desc,
            }),
            Ok(Ok(r)) => r,
        }
    }

    /// `query-status`: the run state (`running`, `paused`, `shutdown`, ...).
    pub async fn query_status(&self) -> Result<String, QmpError> {
        let r = self.execute("query-status", None).await?;
        r["status"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| QmpError::Protocol(format!("query-status returned {r}")))
    }
}
