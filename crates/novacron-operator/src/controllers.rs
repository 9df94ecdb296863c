//! The controllers of the operator: VirtualMachines (run in launcher pods by
//! [`crate::reconcile`]) and VirtualMachineMigrations (validated and
//! reported `Pending`; migrations themselves come with the next issue), the
//! admission webhook ([`crate::webhook`]) and the NovaCron metrics.

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

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::runtime::reflector::Store;
use operator_core::controller::owned_children;

use crate::crd::{
    ACCEPTED, MigrationPhase, VirtualMachine, VirtualMachineMigration,
    VirtualMachineMigrationStatus, VmPhase,
};
use crate::metrics::VmMetrics;
use crate::provider::LauncherProvider;
use crate::settings::Settings;
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

/// Starts every controller (and the admission webhook when configured) with
/// the settings from the environment, until the runtime shuts down.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    run_with(rt, Settings::from_env()?).await
}

/// [`run`] with explicit settings (tests use this).
pub async fn run_with(rt: Runtime, settings: Settings) -> anyhow::Result<()> {
    let vm_metrics = VmMetrics::register(&rt.metrics);
    let webhook = match &settings.webhook {
        Some(w) => Some(
            crate::webhook::start(
                rt.client.clone(),
                w.clone(),
                vm_metrics.clone(),
                rt.shutdown_token(),
            )
            .await?,
        ),
        None => None,
    };
    let vm_ctx = Arc::new(crate::reconcile::Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
        provider: LauncherProvider::new(rt.client.clone()),
        metrics: vm_metrics.clone(),
        settings,
        now: Utc::now,
    });
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
    });
    let concurrency = rt.args.concurrency;
    let ns = rt.args.watch_namespace.as_deref();
    // Children wake their VM: pods (readiness, phase), claims (binding),
    // importer Jobs (completion), launch ConfigMaps; metadata only.
    let vm_controller = guarded_controller(
        operator_core::controller::scoped_api::<DeserializeGuard<VirtualMachine>>(&rt.client, ns),
        watcher::Config::default(),
        concurrency,
    )
    .owns_stream(owned_children::<Pod>(&rt.client, ns))
    .owns_stream(owned_children::<PersistentVolumeClaim>(&rt.client, ns))
    .owns_stream(owned_children::<Job>(&rt.client, ns))
    .owns_stream(owned_children::<ConfigMap>(&rt.client, ns));
    let store = vm_controller.store();
    let inventory = inventory_loop(store, vm_metrics, rt.shutdown_token());
    let vms = operator_core::controller::run(
        vm_controller,
        "virtualmachine",
        rt.metrics.clone(),
        vm_ctx,
        crate::reconcile::reconcile,
        rt.shutdown_signal(),
    );
    let migrations = operator_core::controller::run(
        guarded_controller(
            operator_core::controller::scoped_api::<DeserializeGuard<VirtualMachineMigration>>(
                &rt.client, ns,
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
    futures::join!(vms, migrations, inventory);
    if let Some(w) = webhook {
        w.abort();
    }
    Ok(())
}

/// Refreshes `novacron_vm_total` from the controller's cache every few
/// seconds (no API calls), and drops usage series of deleted VMs.
async fn inventory_loop(
    store: Store<DeserializeGuard<VirtualMachine>>,
    metrics: VmMetrics,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let vms: Vec<(String, String, String)> = store
            .state()
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .map(|vm| {
                let phase = vm
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .unwrap_or(VmPhase::Pending);
                (
                    vm.namespace().unwrap_or_default(),
                    vm.name_any(),
                    format!("{phase:?}"),
                )
            })
            .collect();
        metrics.set_inventory(&vms);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INVENTORY_INTERVAL) => {}
        }
    }
}

/// How often `novacron_vm_total` is recomputed.
pub const INVENTORY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

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
