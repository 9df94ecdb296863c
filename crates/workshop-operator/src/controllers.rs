//! The Workshop controller.
//!
//! At this stage it validates each Workshop and records the outcome in its status
//! (`observedGeneration`, the `Accepted` condition, phase `Pending`) plus a Warning event for an
//! invalid spec. Provisioning the sessions comes with the operator's own issue.

use std::sync::Arc;

use chrono::Utc;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use operator_core::Runtime;
use operator_core::conditions::{ConditionUpdate, set_condition};
use operator_core::controller::{ReconcileError, guarded_controller, kube_error_reason};
use operator_core::events::Events;
use operator_core::status::apply_status;

use crate::crd::{Workshop, WorkshopPhase};
use crate::validate;

/// Name of the controller (metrics label, field manager suffix).
pub const CONTROLLER: &str = "workshop";
/// Field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "workshop-operator/workshop";
/// Condition: whether the spec passed validation.
pub const ACCEPTED: &str = "Accepted";

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no namespace")]
    MissingNamespace,
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube(e) => kube_error_reason(e),
            Error::MissingNamespace => "MissingNamespace",
        }
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub events: Events,
}

/// Runs every controller of the operator until shutdown.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    let api: Api<DeserializeGuard<Workshop>> = match &rt.args.watch_namespace {
        Some(ns) => Api::namespaced(rt.client.clone(), ns),
        None => Api::all(rt.client.clone()),
    };
    let controller = guarded_controller(api, watcher::Config::default(), rt.args.concurrency);
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

/// Validates the Workshop and records the outcome in its status.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<Workshop>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ws = match &guard.0 {
        Ok(ws) => ws,
        Err(invalid) => {
            ctx.events
                .warning(
                    guard.as_ref(),
                    "InvalidObject",
                    "Decode",
                    format!("cannot read the Workshop: {}", invalid.error),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let ns = ws.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<Workshop> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = ws.meta().generation;

    let outcome = validate::validate(ws);
    let mut status = ws.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    if status.phase.is_none() || outcome.is_err() {
        status.phase = Some(WorkshopPhase::Pending);
    }
    let condition = match &outcome {
        Ok(_) => ConditionUpdate::true_(ACCEPTED, "Valid", "The spec is valid"),
        Err(e) => ConditionUpdate::false_(ACCEPTED, e.reason(), e.to_string()),
    };
    set_condition(
        &mut status.conditions,
        condition.observed_generation(generation),
        Utc::now(),
    );

    let written = apply_status(&api, ws, FIELD_MANAGER, &status).await?;
    if let Err(e) = &outcome {
        if written {
            ctx.events
                .warning(ws, e.reason(), "Validate", e.to_string())
                .await;
        }
        tracing::info!(workshop = %ws.name_any(), namespace = %ns, reason = e.reason(), "invalid spec: {e}");
    }
    Ok(Action::await_change())
}
