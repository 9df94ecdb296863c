//! The provider boundary: how the operator reaches a running VM instance.
//! The original document named several hypervisor back ends (KVM, VMware,
//! clouds); each would implement [`Provider`]. This version ships one:
//! [`LauncherProvider`], QEMU/KVM in a launcher pod, reached through the
//! Kubernetes API's pod port-forward to the launcher's control port (no
//! network path from the operator to the pod is needed, and the API
//! server's authorization applies).
//!
//! Starting an instance is applying its launcher pod (built in
//! [`crate::build`]); stopping it is a graceful shutdown request, then
//! deleting the pod. Live migration: the target launcher pod receives
//! (`incoming`), the source is asked to migrate (`POST /migrate` with a
//! [`MigrateRequest`]), progress is read (`GET /migration`) and a migration
//! is cancelled (`POST /migrate/cancel`); the migration stream itself goes
//! pod to pod, never through the operator.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use novacron_launcher::api::{
    LauncherStatus, MIGRATE_CANCEL_PATH, MIGRATE_PATH, MIGRATION_PATH, MigrateRequest,
    MigrationStatus, SHUTDOWN_PATH, STATUS_PATH,
};
use novacron_launcher::config::CONTROL_PORT;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one call to a launcher may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("port-forward to {pod}: {source}")]
    PortForward {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("talking to the launcher in {pod}: {message}")]
    Transport { pod: String, message: String },
    #[error("the launcher in {pod} answered {code}: {body}")]
    Http {
        pod: String,
        code: u16,
        body: String,
    },
    #[error("the launcher in {pod} sent an unreadable status: {source}")]
    Decode {
        pod: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ProviderError {
    /// A stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::PortForward { .. } => "PortForwardFailed",
            ProviderError::Transport { .. } => "LauncherUnreachable",
            ProviderError::Http { .. } => "LauncherError",
            ProviderError::Decode { .. } => "LauncherStatusInvalid",
        }
    }
}

/// A running VM instance's back end.
pub trait Provider: Send + Sync {
    /// The instance's state as its supervisor reports it.
    fn status(
        &self,
        namespace: &str,
        instance: &str,
    ) -> impl Future<Output = Result<LauncherStatus, ProviderError>> + Send;

    /// Asks the instance to shut down gracefully (pre-stop hook, ACPI
    /// power-down, forced stop after the grace period). Idempotent.
    fn request_shutdown(
        &self,
        namespace: &str,
        instance: &str,
    ) -> impl Future<Output = Result<LauncherStatus, ProviderError>> + Send;

    /// Asks a running instance to migrate live to the receiving instance
    /// named in `request`; answers the migration's first status.
    fn migrate(
        &self,
        namespace: &str,
        instance: &str,
        request: &MigrateRequest,
    ) -> impl Future<Output = Result<MigrationStatus, ProviderError>> + Send;

    /// The instance's current or last migration (`None`: it has none).
    fn migration(
        &self,
        namespace: &str,
        instance: &str,
    ) -> impl Future<Output = Result<Option<MigrationStatus>, ProviderError>> + Send;

    /// Cancels the instance's outgoing migration; the VM keeps running
    /// there.
    fn cancel_migration(
        &self,
        namespace: &str,
        instance: &str,
    ) -> impl Future<Output = Result<MigrationStatus, ProviderError>> + Send;
}

/// QEMU in launcher pods, reached by port-forward.
#[derive(Clone)]
pub struct LauncherProvider {
    client: Client,
}

impl LauncherProvider {
    pub fn new(client: Client) -> Self {
        LauncherProvider { client }
    }

    /// One HTTP exchange with the launcher's control port; `body` is sent
    /// as JSON.
    async fn call<T: DeserializeOwned>(
        &self,
        namespace: &str,
        pod: &str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, ProviderError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let transport = |message: String| ProviderError::Transport {
            pod: pod.to_owned(),
            message,
        };
        let exchange = async {
            let mut pf = pods
                .portforward(pod, &[CONTROL_PORT])
                .await
                .map_err(|source| ProviderError::PortForward {
                    pod: pod.to_owned(),
                    source,
                })?;
            let errors = pf.take_error(CONTROL_PORT);
            let mut stream = pf
                .take_stream(CONTROL_PORT)
                .ok_or_else(|| transport("no stream for the control port".into()))?;
            let body = body.unwrap_or_default();
            let mut request = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(body);
            stream
                .write_all(&request)
                .await
                .map_err(|e| transport(e.to_string()))?;
            // Read until the response is complete: a port-forward stream
            // does not always pass the server's close on.
            let mut raw = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| transport(e.to_string()))?;
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..n]);
                if response_complete(&raw) {
                    break;
                }
            }
            drop(stream);
            // The forwarder's own errors (e.g. nothing listens on the port)
            // arrive on its error channel.
            if raw.is_empty()
                && let Some(errors) = errors
                && let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_secs(2), errors).await
            {
                return Err(transport(message));
            }
            let _ = pf.join().await;
            Ok(raw)
        };
        let raw = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| transport(format!("no answer within {CALL_TIMEOUT:?}")))??;
        let (code, body) = parse_response(&raw).map_err(transport)?;
        if !(200..300).contains(&code) {
            return Err(ProviderError::Http {
                pod: pod.to_owned(),
                code,
                body: String::from_utf8_lossy(&body).chars().take(512).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|source| ProviderError::Decode {
            pod: pod.to_owned(),
            source,
        })
    }
}

/// Snapshot consistency (`POST /quiesce`, `POST /release`): used by
/// [`crate::snapshots`] around cutting VolumeSnapshots.
impl LauncherProvider {
    /// Freezes the guest's filesystems (guest agent) or pauses the VM; the
    /// launcher releases by itself after a bound if [`Self::release`]
    /// never comes.
    pub async fn quiesce(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<novacron_launcher::api::QuiesceStatus, ProviderError> {
        self.call(
            namespace,
            pod,
            "POST",
            novacron_launcher::api::QUIESCE_PATH,
            None,
        )
        .await
    }

    /// Thaws or resumes what [`Self::quiesce`] held.
    pub async fn release(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<novacron_launcher::api::QuiesceStatus, ProviderError> {
        self.call(
            namespace,
            pod,
            "POST",
            novacron_launcher::api::RELEASE_PATH,
            None,
        )
        .await
    }
}

impl Provider for LauncherProvider {
    async fn status(&self, namespace: &str, pod: &str) -> Result<LauncherStatus, ProviderError> {
        self.call(namespace, pod, "GET", STATUS_PATH, None).await
    }

    async fn request_shutdown(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<LauncherStatus, ProviderError> {
        self.call(namespace, pod, "POST", SHUTDOWN_PATH, None).await
    }

    async fn migrate(
        &self,
        namespace: &str,
        pod: &str,
        request: &MigrateRequest,
    ) -> Result<MigrationStatus, ProviderError> {
        let body = serde_json::to_vec(request).expect("a MigrateRequest serializes");
        self.call(namespace, pod, "POST", MIGRATE_PATH, Some(&body))
            .await
    }

    async fn migration(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<Option<MigrationStatus>, ProviderError> {
        match self.call(namespace, pod, "GET", MIGRATION_PATH, None).await {
            Ok(m) => Ok(Some(m)),
            Err(ProviderError::Http { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn cancel_migration(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<MigrationStatus, ProviderError> {
        self.call(namespace, pod, "POST", MIGRATE_CANCEL_PATH, None)
            .await
    }
}

/// Whether `raw` holds a whole response (headers, and the body its
/// `Content-Length` or chunked encoding announces).
pub fn response_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) => body.len() >= n,
        // Without a length the body ends with the connection.
        None => false,
    }
}

/// Status code and body of an HTTP/1.1 response (`Content-Length`,
/// chunked, or read to the end of the connection).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete HTTP response ({} bytes)", raw.len()))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    if chunked {
        return dechunk(body).map(|b| (code, b));
    }
    let body = match length {
        Some(n) if n <= body.len() => body[..n].to_vec(),
        Some(n) => return Err(format!("body cut short: {} of {n} bytes", body.len())),
        None => body.to_vec(),
    };
    Ok((code, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk header")?;
        let size_text = std::str::from_utf8(&body[..end]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        body = &body[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_chunks_or_eof() {
        let (c, b) =
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}trailing").unwrap();
        assert_eq!((c, b.as_slice()), (200, &b"{}"[..]));
        let (c, b) = parse_response(
            b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((c, b.as_slice()), (202, &b"{\"a\":1}"[..]));
        let (c, b) = parse_response(b"HTTP/1.0 500 Oops\r\n\r\nboom").unwrap();
        assert_eq!((c, b.as_slice()), (500, &b"boom"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        ));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}"
        ));
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        ));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\n\r\n{}"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
    }
}
