//! The Workshop controller: wiring. The reconciler itself is in [`crate::reconcile`].
//!
//! The controller is triggered by spec changes of a Workshop (not by its own status writes), by
//! any change of the children it owns (metadata-only watches: a Deployment's status change
//! bumps its resourceVersion, so pod readiness reaches the Workshop's status), and by the
//! timers the reconciler returns (pre-warm, expiry warning, expiry, removal).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use operator_core::Runtime;
use operator_core::controller::{guarded_controller, owned_children, scoped_api};
use operator_core::events::Events;

use crate::crd::Workshop;
use crate::metrics::WorkshopMetrics;
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
    pub metrics: WorkshopMetrics,
}

/// Runs every controller of the operator until shutdown.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    let ns = rt.args.watch_namespace.as_deref();
    let workshops: Api<DeserializeGuard<Workshop>> = scoped_api(&rt.client, ns);
    let c = &rt.client;
    let controller = guarded_controller(workshops, watcher::Config::default(), rt.args.concurrency)
        .owns_stream(owned_children::<Deployment>(c, ns))
        .owns_stream(owned_children::<Service>(c, ns))
        .owns_stream(owned_children::<Ingress>(c, ns))
        .owns_stream(owned_children::<Secret>(c, ns))
        .owns_stream(owned_children::<ConfigMap>(c, ns))
        .owns_stream(owned_children::<PersistentVolumeClaim>(c, ns));
    let metrics = WorkshopMetrics::default();
    metrics.register(&rt.metrics, controller.store());
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
        metrics,
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
