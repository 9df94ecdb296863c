//! Start-up and shutdown of an operator process: tracing, the client (with
//! API metrics), the HTTP endpoint, waiting for CRDs, optional leader
//! election, and a shutdown signal for SIGTERM/SIGINT or lost leadership.

use std::time::Duration;

use futures::Future;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::cli::{LogFormat, RunArgs};
use crate::events::Events;
use crate::http::{self, Readiness};
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;

/// What identifies an operator binary.
#[derive(Clone, Copy)]
pub struct Operator {
    /// Binary and component name, e.g. `workshop-operator`.
    pub name: &'static str,
    pub version: &'static str,
    /// Git revision baked in at build time (`GIT_REVISION`), or `unknown`.
    pub revision: &'static str,
    pub crds: fn() -> Vec<CustomResourceDefinition>,
}

/// `GIT_REVISION` at compile time, for [`Operator::revision`].
#[macro_export]
macro_rules! git_revision {
    () => {
        match option_env!("GIT_REVISION") {
            Some(r) => r,
            None => "unknown",
        }
    };
}

/// Everything controllers need from the process.
#[derive(Clone)]
pub struct Runtime {
    pub client: Client,
    pub metrics: Metrics,
    pub events: Events,
    pub args: RunArgs,
    shutdown: CancellationToken,
}

impl Runtime {
    /// Resolves when the process should stop reconciling; pass it to
    /// `Controller::graceful_shutdown_on`.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let token = self.shutdown.clone();
        async move { token.cancelled().await }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Installs the global tracing subscriber (text or JSON lines).
pub fn init_tracing(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid log level {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// A client from the usual sources (in-cluster, then KUBECONFIG), counting
/// every API request in `metrics`.
pub async fn client_with_metrics(metrics: &Metrics) -> anyhow::Result<Client> {
    let config = kube::Config::infer().await?;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&metrics.api_layer())
        .build())
}

/// Runs an operator until SIGTERM/SIGINT (clean exit) or lost leadership
/// (error exit, so the pod restarts as a standby).
pub async fn run<F, Fut>(operator: &Operator, args: RunArgs, controllers: F) -> anyhow::Result<()>
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let metrics = Metrics::new();
    let client = client_with_metrics(&metrics).await?;
    run_with_client(operator, args, client, metrics, controllers).await
}

/// [`run`] with a given client and metrics (tests use this).
pub async fn run_with_client<F, Fut>(
    operator: &Operator,
    args: RunArgs,
    client: Client,
    metrics: Metrics,
    controllers: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    tracing::info!(
        operator = operator.name,
        version = operator.version,
        revision = operator.revision,
        "starting"
    );
    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let addr = http::serve(
        args.metrics_addr,
        metrics.clone(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    spawn_signal_handler(shutdown.clone());

    let names: Vec<String> = (operator.crds)().iter().map(|c| c.name_any()).collect();
    crate::crd::wait_established(&client, &names, args.crd_wait).await?;
    readiness.set(true);

    let leadership = if args.leader_elect {
        let config = lease_config(operator, &args);
        tokio::select! {
            l = leader::acquire(client.clone(), &config) => Some(l?),
            _ = shutdown.cancelled() => return Ok(()),
        }
    } else {
        None
    };

    let runtime = Runtime {
        events: Events::new(client.clone(), operator.name),
        client,
        metrics,
        args,
        shutdown: shutdown.clone(),
    };
    let lost = CancellationToken::new();
    let controllers_done = CancellationToken::new();
    let watch_lease = leadership.map(|mut l| {
        let (shutdown, lost, done) = (shutdown.clone(), lost.clone(), controllers_done.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = l.lost() => {
                    tracing::error!("lost leadership; stopping reconciliation");
                    lost.cancel();
                    shutdown.cancel();
                    None
                }
                // Hand the lease back only once the controllers have stopped,
                // so two replicas never reconcile at the same time.
                _ = done.cancelled() => Some(l),
            }
        })
    });

    let result = controllers(runtime).await;
    shutdown.cancel();
    controllers_done.cancel();
    if let Some(task) = watch_lease
        && let Ok(Some(leadership)) = task.await
    {
        leadership.release().await;
    }
    result?;
    if lost.is_cancelled() {
        anyhow::bail!("leadership lost");
    }
    tracing::info!("stopped");
    Ok(())
}

fn lease_config(operator: &Operator, args: &RunArgs) -> LeaseConfig {
    // Unique per replica *and* per runtime, so two runtimes in one process
    // (tests) are two contenders.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "local".into());
    let identity = format!("{base}-{}-{seq}", std::process::id());
    LeaseConfig {
        name: args
            .lease_name
            .clone()
            .unwrap_or_else(|| format!("{}-leader", operator.name)),
        namespace: args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        identity,
        duration: args.lease_duration,
        grace: (args.lease_duration / 3).max(Duration::from_secs(1)),
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = shutdown.cancelled() => return,
        }
        shutdown.cancel();
    });
}
