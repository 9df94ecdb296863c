//! The admission webhook, served by the operator over TLS: `/validate`
//! (VirtualMachines and VirtualMachineMigrations, see [`admission`]) and
//! `/mutate` (VirtualMachine defaults).
//!
//! Certificates are self-managed: a CA and a serving certificate for the
//! webhook Service's names (and any extra names/IPs configured), kept in a
//! Secret in the operator's namespace ([`secret`]): created on first start,
//! reused by restarts and other replicas, the serving certificate re-issued
//! when it nears expiry or the names change. The operator serves with it
//! and writes the CA into the `caBundle` of its
//! ValidatingWebhookConfiguration and MutatingWebhookConfiguration when it
//! differs, so restarts and replicas do not make it flap.

pub mod admission;
pub mod secret;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

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

    /// Stops serving and waits until the listener is closed (its address
    /// can be bound again).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Loads (or creates) the certificates, starts serving and injects the CA
/// into the webhook configurations (missing configurations are logged, not fatal:
/// the operator works without its webhook, the CRD's CEL rules still
/// apply).
pub async fn start(
    client: kube::Client,
    settings: WebhookSettings,
    metrics: VmMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Webhook> {
    if settings.secret.is_none() {
        tracing::warn!(
            "no namespace for the webhook's certificate Secret (POD_NAMESPACE or NOVACRON_WEBHOOK_SECRET): a new CA at every start"
        );
    }
    let certs = current_certificates(&client, &settings, None).await?;
    let serving = Arc::new(RwLock::new(Serving::new(certs.clone())?));
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, hosts = ?settings.hosts, "serving the admission webhook");
    let refresher = refresh_loop(client.clone(), settings.clone(), serving.clone());
    let task = tokio::spawn(async move {
        // Connections live in this set: stopping the server (dropping the
        // set) closes kept-alive connections too, as a restart would.
        let mut connections = tokio::task::JoinSet::new();
        connections.spawn(refresher);
        loop {
            while connections.try_join_next().is_some() {}
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
            let acceptor = read(&serving).acceptor.clone();
            let metrics = metrics.clone();
            connections.spawn(async move {
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

/// How often a running webhook looks at its certificates again (a serving
/// certificate is renewed 30 days before it expires; another replica may
/// have renewed it already).
const REFRESH: Duration = Duration::from_secs(12 * 3600);

/// The certificates being served and their TLS acceptor.
struct Serving {
    certs: tls::Certificates,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Serving {
    fn new(certs: tls::Certificates) -> anyhow::Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certs.server_config()?));
        Ok(Serving { certs, acceptor })
    }
}

fn read(serving: &RwLock<Serving>) -> std::sync::RwLockReadGuard<'_, Serving> {
    serving.read().unwrap_or_else(|e| e.into_inner())
}

/// The certificates to serve: from the Secret (created or renewed there),
/// or, without one, `held` (renewed in memory) or new ones.
async fn current_certificates(
    client: &kube::Client,
    settings: &WebhookSettings,
    held: Option<&tls::Certificates>,
) -> anyhow::Result<tls::Certificates> {
    let now = chrono::Utc::now();
    if let Some((ns, name)) = &settings.secret {
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(client.clone(), ns);
        return secret::load_or_create(&secrets, name, &settings.hosts, now).await;
    }
    Ok(match held.map(|c| (c, c.renewal(&settings.hosts, now))) {
        Some((c, tls::Renewal::Keep)) => c.clone(),
        Some((c, tls::Renewal::Serving(_))) => c.with_new_serving(&settings.hosts, now)?,
        _ => tls::Certificates::generate(&settings.hosts, now)?,
    })
}

/// Every [`REFRESH`]: serves renewed certificates, and injects a new CA.
/// Failures are logged and retried at the next round (the renewal margin
/// is weeks).
async fn refresh_loop(
    client: kube::Client,
    settings: WebhookSettings,
    serving: Arc<RwLock<Serving>>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
    loop {
        ticks.tick().await;
        let held = read(&serving).certs.clone();
        let result = async {
            let certs = current_certificates(&client, &settings, Some(&held)).await?;
            if certs.cert_pem != held.cert_pem {
                let next = Serving::new(certs.clone())?;
                *serving.write().unwrap_or_else(|e| e.into_inner()) = next;
                tracing::info!("serving a renewed webhook certificate");
            }
            if certs.ca_pem != held.ca_pem {
                tls::inject_ca(&client, &settings.configuration, &certs.ca_pem).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot refresh the webhook certificates; retrying later");
        }
    }
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
