//! Wiring a kube-runtime `Controller` the same way in every operator:
//! guarded watches (one undecodable object cannot break the stream), a
//! predicate that ignores status-only changes but not finalizer changes,
//! bounded concurrency, metrics per reconcile, and error backoff.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use kube::api::PartialObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;

/// Errors a reconciler returns: a stable reason for metrics, and how long to
/// wait before retrying.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// Low-cardinality, PascalCase.
    fn reason(&self) -> &'static str;
    /// Transient errors retry soon; the default avoids hot loops.
    fn retry_after(&self) -> Duration {
        Duration::from_secs(15)
    }
}

/// A reason for a failed API call, by HTTP status.
pub fn kube_error_reason(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) => match s.code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Gone",
            422 => "Invalid",
            429 => "TooManyRequests",
            500..=599 => "ServerError",
            _ => "ApiError",
        },
        kube::Error::SerdeError(_) => "SerdeError",
        _ => "TransportError",
    }
}

/// Bounded concurrency and a short debounce, so bursts of events for one
/// object collapse into one reconcile.
pub fn controller_config(concurrency: u16) -> Config {
    Config::default()
        .concurrency(concurrency.max(1))
        .debounce(Duration::from_millis(250))
}

/// A controller over `K` that tolerates undecodable objects and is triggered
/// only by spec (generation) or finalizer changes of the primary object.
/// Children and timers trigger it through `owns`/`watches` and
/// `Action::requeue`.
pub fn guarded_controller<K>(
    api: Api<DeserializeGuard<K>>,
    wc: watcher::Config,
    concurrency: u16,
) -> Controller<DeserializeGuard<K>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, wc)
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_finalizers(), Default::default());
    Controller::for_stream(stream, reader).with_config(controller_config(concurrency))
}

/// An `Api` over all namespaces, or over the one the operator is limited to
/// (`--watch-namespace`).
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A metadata-only watch of the children of kind `K` that an
/// [`Applier`](crate::apply::Applier) created (selected by the owner-UID
/// label), for `Controller::owns_stream`: any change of a child, status
/// included, bumps its resourceVersion and maps to its owner, at the memory
/// cost of metadata only.
pub fn owned_children<K>(
    client: &Client,
    namespace: Option<&str>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync
        + 'static,
{
    let wc = watcher::Config::default().labels(crate::apply::OWNER_UID_LABEL);
    let api: Api<PartialObjectMeta<K>> = scoped_api(client, namespace);
    watcher(api, wc).default_backoff().touched_objects()
}

/// Generation alone would stall `finalizer()`: adding a finalizer does not
/// bump the generation.
pub fn spec_or_finalizers<K: Resource>() -> impl Predicate<K> {
    predicates::generation.combine(predicates::finalizers)
}

/// Runs `controller` until `shutdown` resolves, counting every reconcile in
/// `metrics` under `name`.
pub async fn run<K, Ctx, E, F, Fut>(
    controller: Controller<K>,
    name: &'static str,
    metrics: Metrics,
    ctx: Arc<Ctx>,
    reconcile: F,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
    Ctx: Send + Sync + 'static,
    E: ReconcileError,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    metrics.init_controller(name);
    let reconcile = Arc::new(reconcile);
    let timed_metrics = metrics.clone();
    let timed = move |obj: Arc<K>, ctx: Arc<Ctx>| {
        let reconcile = reconcile.clone();
        let metrics = timed_metrics.clone();
        async move {
            let timer = metrics.reconcile_timer(name);
            let result = reconcile(obj, ctx).await;
            timer.finish(result.as_ref().map(|_| ()).map_err(|e| e.reason()));
            result
        }
    };
    let error_policy = |obj: Arc<K>, err: &E, _ctx: Arc<Ctx>| {
        let key = ObjectRef::from_obj(obj.as_ref());
        tracing::warn!(object = %key, reason = err.reason(), error = %err, "reconcile failed");
        Action::requeue(err.retry_after())
    };
    controller
        .graceful_shutdown_on(shutdown)
        .run(timed, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(_, _)) => {}
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
}
