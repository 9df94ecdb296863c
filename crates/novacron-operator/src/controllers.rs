//! The controllers of the operator. At this stage each one validates its
//! objects and reports the result: `observedGeneration`, an `Accepted`
//! condition (with the validation message when the spec is invalid, plus a
//! Warning event) and the phase `Pending`. Provisioning (launcher pods, disks,
//! migrations, snapshots) builds on this.

use std::fmt::Debug;
use std::sync::Arc;

use chrono::Utc;
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
    ACCEPTED, MigrationPhase, VirtualMachine, VirtualMachineMigration,
    VirtualMachineMigrationStatus, VirtualMachineStatus, VmPhase,
};
use crate::validate::{self, InvalidSpec};

/// The operator's name: event reporter and field manager prefix.
pub const OPERATOR: &str = "novacron-operator";
/// Field manager of the VirtualMachine controller.
pub const VM_MANAGER: &str = "novacron-operator/virtualmachine";
/// Field manager of the VirtualMachineMigration controller.
pub const MIGRATION_MANAGER: &str = "novacron-operator/virtualmachinemigration";

/// Errors of a reconcile pass (an invalid spec is not one: it ends in a
/// condition).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing status failed.
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Status(e) => kube_error_reason(e),
        }
    }
}

/// What the reconcilers share.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event publisher.
    pub events: Events,
}

/// Starts every controller and runs them until the runtime shuts down.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
    });
    let concurrency = rt.args.concurrency;
    let vms = operator_core::controller::run(
        guarded_controller(
            operator_core::controller::scoped_api::<DeserializeGuard<VirtualMachine>>(
                &rt.client,
                rt.args.watch_namespace.as_deref(),
            ),
            watcher::Config::default(),
            concurrency,
        ),
        "virtualmachine",
        rt.metrics.clone(),
        ctx.clone(),
        reconcile_vm,
        rt.shutdown_signal(),
    );
    let migrations = operator_core::controller::run(
        guarded_controller(
            operator_core::controller::scoped_api::<DeserializeGuard<VirtualMachineMigration>>(
                &rt.client,
                rt.args.watch_namespace.as_deref(),
            ),
            watcher::Config::default(),
            concurrency,
        ),
        "virtualmachinemigration",
        rt.metrics.clone(),
        ctx,
        reconcile_migration,
        rt.shutdown_signal(),
    );
    futures::join!(vms, migrations);
    Ok(())
}

/// Reconciles one VirtualMachine.
pub async fn reconcile_vm(
    guard: Arc<DeserializeGuard<VirtualMachine>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let vm = match &guard.0 {
        Ok(vm) => vm,
        Err(invalid) => return undecodable(guard.as_ref(), &invalid.error, &ctx).await,
    };
    let verdict = validate::validate_vm(&vm.name_any(), &vm.spec);
    let mut status = vm.status.clone().unwrap_or_default();
    status.phase = Some(VmPhase::Pending);
    finish(
        vm,
        status,
        |s: &mut VirtualMachineStatus| (&mut s.observed_generation, &mut s.conditions),
        verdict,
        VM_MANAGER,
        &ctx,
    )
    .await
}

/// Reconciles one VirtualMachineMigration.
pub async fn reconcile_migration(
    guard: Arc<DeserializeGuard<VirtualMachineMigration>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let migration = match &guard.0 {
        Ok(m) => m,
        Err(invalid) => return undecodable(guard.as_ref(), &invalid.error, &ctx).await,
    };
    let verdict = validate::validate_migration(&migration.spec);
    let mut status = migration.status.clone().unwrap_or_default();
    status.phase = Some(MigrationPhase::Pending);
    finish(
        migration,
        status,
        |s: &mut VirtualMachineMigrationStatus| (&mut s.observed_generation, &mut s.conditions),
        verdict,
        MIGRATION_MANAGER,
        &ctx,
    )
    .await
}

/// An object this version cannot decode: say so on the object and wait for
/// a change (no retry loop).
async fn undecodable<K>(
    obj: &DeserializeGuard<K>,
    error: &str,
    ctx: &Context,
) -> Result<Action, Error>
where
    DeserializeGuard<K>: Resource<DynamicType = ()>,
{
    ctx.events
        .warning(
            obj,
            "InvalidObject",
            "Decode",
            format!("the object does not match the {OPERATOR} API and is ignored until it changes: {error}"),
        )
        .await;
    Ok(Action::await_change())
}

/// The `Accepted` condition for a validation verdict.
pub fn accepted_condition(
    verdict: &Result<(), InvalidSpec>,
    generation: Option<i64>,
) -> ConditionUpdate {
    match verdict {
        Ok(()) => ConditionUpdate::true_(ACCEPTED, "Valid", "the spec is valid"),
        Err(e) => ConditionUpdate::false_(ACCEPTED, e.reason(), e.to_string()),
    }
    .observed_generation(generation)
}

/// Sets `observedGeneration` and `Accepted`, writes the status when it
/// changed, and publishes a Warning event when an invalid spec is first
/// reported.
async fn finish<K>(
    obj: &K,
    mut status: K::Status,
    fields: impl Fn(&mut K::Status) -> (&mut Option<i64>, &mut Vec<Condition>),
    verdict: Result<(), InvalidSpec>,
    manager: &str,
    ctx: &Context,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + HasStatus
        + DeserializeOwned
        + Clone
        + Debug,
    K::Status: Serialize + PartialEq,
{
    let generation = obj.meta().generation;
    let (observed, conditions) = fields(&mut status);
    *observed = generation;
    set_condition(
        conditions,
        accepted_condition(&verdict, generation),
        Utc::now(),
    );
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let written = apply_status(&api, obj, manager, &status)
        .await
        .map_err(Error::Status)?;
    if let Err(e) = &verdict {
        if written {
            ctx.events
                .warning(obj, e.reason(), "Validate", e.to_string())
                .await;
        }
        tracing::info!(object = %obj.name_any(), reason = e.reason(), "invalid spec");
    }
    Ok(Action::await_change())
}
