//! The Workshop controller: wiring. The reconciler itself is in [`crate::reconcile`].
//!
//! The controller is triggered by spec changes of a Workshop (not by its own status writes), by
//! any change of the children it owns (metadata-only watches: a Deployment's status change
//! bumps its resourceVersion, so pod readiness reaches the Workshop's status), and by the
//! timers the reconciler returns (pre-warm, expiry warning, expiry, removal).

use std::fmt::Debug;
use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PartialObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use operator_core::Runtime;
use operator_core::controller::guarded_controller;
use operator_core::events::Events;
use serde::de::DeserializeOwned;

use crate::crd::Workshop;
use crate::reconcile::reconcile;

pub use crate::reconcile::Error;

/// Name of the controller (metrics label, field manager suffix).
pub const CONTROLLER: &str = "workshop";
/// Field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "workshop-operator/workshop";
/// Condition: whether the spec passed validation.
pub const ACCEPTED: &str = "Accepted";

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub events: Events,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Metadata-only watch of the operator's children of kind `K` (they carry the owner-UID label).
fn children<K>(
    client: &Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync
        + 'static,
{
    let wc = watcher::Config::default().labels(operator_core::apply::OWNER_UID_LABEL);
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    watcher(api, wc).default_backoff().touched_objects()
}

/// Runs every controller of the operator until shutdown.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    let ns = rt.args.watch_namespace.as_deref();
    let workshops: Api<DeserializeGuard<Workshop>> = api(&rt.client, ns);
    let c = &rt.client;
    let controller = guarded_controller(workshops, watcher::Config::default(), rt.args.concurrency)
        .owns_stream(children::<Deployment>(c, ns))
        .owns_stream(children::<Service>(c, ns))
        .owns_stream(children::<Ingress>(c, ns))
        .owns_stream(children::<Secret>(c, ns))
        .owns_stream(children::<PersistentVolumeClaim>(c, ns));
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
    });
    operator_core::controller::run(
        controller,
        CONTROLLER,
        rt.metrics.clone(),
        ctx,
        reconcile,
        rt.shutdown_signal(),
    )
    .await;
    Ok(())
}
