//! The admission webhook, served by the operator over TLS: `/validate`
//! (VirtualMachines and VirtualMachineMigrations, see [`admission`]) and
//! `/mutate` (VirtualMachine defaults).
//!
//! Certificates are self-managed: at start the operator creates a CA and a
//! serving certificate for the webhook Service's names (and any extra
//! names/IPs configured), serves with it, and writes the CA into the
//! `caBundle` of its ValidatingWebhookConfiguration and
//! MutatingWebhookConfiguration. A restart makes a new CA and re-injects it,
//! so nothing needs rotating; with several replicas, run one (or use
//! cert-manager's CA injector instead).

pub mod admission;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::metrics::VmMetrics;
use crate::settings::WebhookSettings;
use admission::Hook;

/// Largest AdmissionReview accepted (the API server's own object limit is
/// about 3 MiB).
const MAX_BODY: usize = 8 << 20;

/// A running webhook server.
pub struct Webhook {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The CA the serving certificate chains to (PEM).
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Stops serving.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Generates the certificates, starts serving and injects the CA into the
/// webhook configurations (missing configurations are logged, not fatal:
/// the operator works without its webhook, the CRD's CEL rules still
/// apply).
pub async fn start(
    client: kube::Client,
    settings: WebhookSettings,
    metrics: VmMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Webhook> {
    let certs = tls::Certificates::generate(&settings.hosts)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certs.server_config()?));
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, hosts = ?settings.hosts, "serving the admission webhook");
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(error = %e, "webhook TLS handshake failed");
                        return;
                    }
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(tls),
                        service_fn(move |req| handle(req, metrics.clone())),
                    )
                    .await;
            });
        }
    });
    tls::inject_ca(&client, &settings.configuration, &certs.ca_pem).await?;
    Ok(Webhook {
        addr,
        ca_pem: certs.ca_pem,
        task,
    })
}

async fn handle(
    req: Request<Incoming>,
    metrics: VmMetrics,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let hook = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => return Ok(reply(StatusCode::OK, "text/plain", "ok".into())),
        (&Method::POST, "/validate") => Hook::Validate,
        (&Method::POST, "/mutate") => Hook::Mutate,
        _ => {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found".into(),
            ));
        }
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("cannot read the request: {e}").into(),
            ));
        }
    };
    let Ok((out, allowed)) =
        tokio::task::spawn_blocking(move || admission::review(&body, hook)).await
    else {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "the review failed".into(),
        ));
    };
    metrics.observe_admission(
        match hook {
            Hook::Validate => "validate",
            Hook::Mutate => "mutate",
        },
        allowed,
    );
    Ok(reply(StatusCode::OK, "application/json", out.into()))
}

fn reply(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body))
        .expect("static response parts are valid")
}
