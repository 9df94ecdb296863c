//! The Workspace and Snapshot controllers.
//!
//! At this stage each validates its objects and records the outcome in their status
//! (`observedGeneration`, the `Accepted` condition, phase `Pending`) plus a Warning event for an
//! invalid spec. Provisioning and running `jvs` come with the operator's own issue.

use std::fmt::Debug;
use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use operator_core::Runtime;
use operator_core::conditions::{ConditionUpdate, set_condition};
use operator_core::controller::{ReconcileError, guarded_controller, kube_error_reason};
use operator_core::events::Events;
use operator_core::status::apply_status;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{
    Snapshot, SnapshotPhase, SnapshotStatus, Workspace, WorkspacePhase, WorkspaceStatus,
};
use crate::validate::{self, ValidationError};

/// Field manager of the Workspace controller.
pub const WORKSPACE_MANAGER: &str = "jvs-operator/workspace";
/// Field manager of the Snapshot controller.
pub const SNAPSHOT_MANAGER: &str = "jvs-operator/snapshot";
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
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
    });
    let workspaces = operator_core::controller::run(
        guarded_controller(
            operator_core::controller::scoped_api(&rt.client, rt.args.watch_namespace.as_deref()),
            watcher::Config::default(),
            rt.args.concurrency,
        ),
        "workspace",
        rt.metrics.clone(),
        ctx.clone(),
        reconcile_workspace,
        rt.shutdown_signal(),
    );
    let snapshots = operator_core::controller::run(
        guarded_controller(
            operator_core::controller::scoped_api(&rt.client, rt.args.watch_namespace.as_deref()),
            watcher::Config::default(),
            rt.args.concurrency,
        ),
        "snapshot",
        rt.metrics.clone(),
        ctx,
        reconcile_snapshot,
        rt.shutdown_signal(),
    );
    futures::join!(workspaces, snapshots);
    Ok(())
}

/// Validates a Workspace and records the outcome in its status.
pub async fn reconcile_workspace(
    guard: Arc<DeserializeGuard<Workspace>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let Some(ws) = decoded(&guard, &ctx, "Workspace").await else {
        return Ok(Action::await_change());
    };
    let outcome = validate::validate_workspace(ws).map(|_| ());
    record(
        &ctx,
        ws,
        WORKSPACE_MANAGER,
        outcome,
        |status: &mut WorkspaceStatus| {
            if status.phase.is_none() {
                status.phase = Some(WorkspacePhase::Pending);
            }
            (&mut status.observed_generation, &mut status.conditions)
        },
    )
    .await
}

/// Validates a Snapshot and records the outcome in its status.
pub async fn reconcile_snapshot(
    guard: Arc<DeserializeGuard<Snapshot>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let Some(snap) = decoded(&guard, &ctx, "Snapshot").await else {
        return Ok(Action::await_change());
    };
    let outcome = validate::validate_snapshot(snap).map(|_| ());
    record(
        &ctx,
        snap,
        SNAPSHOT_MANAGER,
        outcome,
        |status: &mut SnapshotStatus| {
            if status.phase.is_none() {
                status.phase = Some(SnapshotPhase::Pending);
            }
            (&mut status.observed_generation, &mut status.conditions)
        },
    )
    .await
}

/// The decoded object, or `None` after publishing a Warning event on an undecodable one.
async fn decoded<'a, K>(guard: &'a DeserializeGuard<K>, ctx: &Context, kind: &str) -> Option<&'a K>
where
    K: Resource<DynamicType = ()>,
{
    match &guard.0 {
        Ok(obj) => Some(obj),
        Err(invalid) => {
            ctx.events
                .warning(
                    guard,
                    "InvalidObject",
                    "Decode",
                    format!("cannot read the {kind}: {}", invalid.error),
                )
                .await;
            None
        }
    }
}

/// Writes `observedGeneration` and the `Accepted` condition (plus whatever `prepare` sets), and
/// publishes a Warning event when the spec is invalid and the status changed.
async fn record<K, F>(
    ctx: &Context,
    obj: &K,
    manager: &str,
    outcome: Result<(), ValidationError>,
    prepare: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + HasStatus
        + DeserializeOwned
        + Clone
        + Debug,
    K::Status: Serialize + PartialEq + Default + Clone,
    F: for<'s> FnOnce(&'s mut K::Status) -> (&'s mut Option<i64>, &'s mut Vec<Condition>),
{
    let ns = obj.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = obj.meta().generation;
    let mut status = obj.status().cloned().unwrap_or_default();
    let (observed_generation, conditions) = prepare(&mut status);
    *observed_generation = generation;
    let condition = match &outcome {
        Ok(()) => ConditionUpdate::true_(ACCEPTED, "Valid", "The spec is valid"),
        Err(e) => ConditionUpdate::false_(ACCEPTED, e.reason(), e.to_string()),
    };
    set_condition(
        conditions,
        condition.observed_generation(generation),
        Utc::now(),
    );

    let written = apply_status(&api, obj, manager, &status).await?;
    if let Err(e) = &outcome {
        if written {
            ctx.events
                .warning(obj, e.reason(), "Validate", e.to_string())
                .await;
        }
        tracing::info!(object = %obj.name_any(), namespace = %ns, reason = e.reason(), "invalid spec: {e}");
    }
    Ok(Action::await_change())
}
