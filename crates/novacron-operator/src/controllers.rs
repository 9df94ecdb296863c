//! The controllers of the operator: VirtualMachines (run in launcher pods by
//! [`crate::reconcile`]), VirtualMachineMigrations (live migration by
//! [`crate::migration`], plus the node-drain watch that creates them), the
//! admission webhook ([`crate::webhook`]) and the NovaCron metrics.

use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use operator_core::Runtime;
use operator_core::conditions::ConditionUpdate;
use operator_core::controller::guarded_controller;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::runtime::reflector::Store;
use operator_core::controller::owned_children;

use crate::crd::{ACCEPTED, VirtualMachine, VirtualMachineMigration, VmPhase};
use crate::metrics::VmMetrics;
use crate::provider::LauncherProvider;
use crate::settings::Settings;
use crate::validate::InvalidSpec;

/// The operator's name: event reporter and field manager prefix.
pub const OPERATOR: &str = "novacron-operator";
/// Field manager of the VirtualMachine controller.
pub const VM_MANAGER: &str = "novacron-operator/virtualmachine";
/// Field manager of the VirtualMachineMigration controller.
pub const MIGRATION_MANAGER: &str = "novacron-operator/virtualmachinemigration";

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
        settings: settings.clone(),
        now: Utc::now,
    });
    let migration_ctx = Arc::new(crate::migration::Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
        provider: LauncherProvider::new(rt.client.clone()),
        max_parallel: settings.max_parallel_migrations,
        watch_namespace: rt.args.watch_namespace.clone(),
        metrics: crate::migration::MigrationMetrics::register(&rt.metrics),
        admission: tokio::sync::Mutex::new(()),
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
        migration_ctx,
        crate::migration::reconcile,
        rt.shutdown_signal(),
    );
    let drain = crate::migration::drain::run(
        rt.client.clone(),
        rt.events.clone(),
        rt.args.watch_namespace.clone(),
        rt.shutdown_token(),
    );
    futures::join!(vms, migrations, inventory, drain);
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
