//! Live migration of VirtualMachines, driven by VirtualMachineMigration
//! objects (created by users, or by [`drain`] when a node is cordoned).
//!
//! Flow (phases of the migration object):
//! - `Pending`: validated; refused (`Failed`, with the VM's
//!   `LiveMigratable` reason) when the VM cannot migrate; waits while
//!   another migration of the same VM runs or the cluster-wide limit
//!   (`NOVACRON_MAX_PARALLEL_MIGRATIONS`) is reached.
//! - `Scheduling`: the target launcher pod is created ([`target`]) with the
//!   source pod's spec on another node; the source pod is marked so the VM
//!   reconciler keeps its hands off (the VM reports `Migrating`).
//! - `PreparingTarget`: the target pod is placed; its launcher starts QEMU
//!   to receive (`-incoming`) and reports `WaitingForMigration`.
//! - `Running`: the source launcher streams the VM to the target pod's IP
//!   on the migration port with the policy's bandwidth cap, compression and
//!   TLS ([`tls`]); progress is copied into the status every half second.
//! - `Succeeded`: the target launcher reports the VM running there; the
//!   source pod is deleted and the target becomes the VM's launcher pod.
//! - `Failed` (refusal, launcher failure, timeout) or deletion of the object
//!   (cancellation, through a finalizer): the source is told to cancel, the
//!   target pod is deleted, the VM keeps running on the source.
//!
//! The operator reaches both launchers' control APIs through the API
//! server's pod port-forward ([`crate::provider`]); the migration stream
//! itself goes from pod to pod.

pub mod active;
pub mod drain;
pub mod plan;
pub mod target;
pub mod tls;
pub mod vm_view;

pub use vm_view::observe_vm;

use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Client, ResourceExt};
use novacron_launcher::api::MigrationPhase as LauncherMigrationPhase;
use novacron_launcher::config::LaunchConfig;
use operator_core::conditions::{ConditionUpdate, from_k8s_time, set_condition, to_k8s_time};
use operator_core::controller::{ReconcileError, kube_error_reason};
use operator_core::events::Events;
use operator_core::status::apply_status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::build::Names;
use crate::build::launch::LAUNCH_KEY;
use crate::controllers::{MIGRATION_MANAGER, accepted_condition};
use crate::crd::{
    MigrationPhase, VirtualMachine, VirtualMachineMigration, VirtualMachineMigrationStatus,
};
use crate::observe::{PodState, READY, pod_state};
use crate::provider::{LauncherProvider, Provider};
use crate::validate;
use plan::{Queued, Refusal, Step};

/// Label on a migration target pod: the migration's name.
pub const TARGET_LABEL: &str = "novacron.io/migration-target";
/// Annotation on the source pod while it is migrated: the migration's name.
pub const SOURCE_ANNOTATION: &str = "novacron.io/migration";
/// Label on migrations the operator created, saying why (`drain`).
pub const TRIGGER_LABEL: &str = "novacron.io/migration-trigger";
/// Finalizer: deleting a running migration cancels it first.
pub const FINALIZER: &str = "novacron.io/migration";
/// Annotation on a VM's launcher pod naming the drain migration a user
/// deleted before it succeeded: the operator does not create it again (also
/// after a restart); the VM's next instance (a new pod) is drained again.
pub const DRAIN_DECLINED_ANNOTATION: &str = "novacron.io/drain-declined";
/// Poll of the launchers while a target is prepared and while the VM
/// moves (one port-forward exchange per launcher each time; the switch-over
/// waits for it, so it bounds the latency the operator adds).
pub const POLL: Duration = Duration::from_millis(500);
/// Poll while waiting for a turn or for the target.
pub const WAIT_POLL: Duration = Duration::from_secs(5);

/// `novacron_migrations_total{result}`: finished migrations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Migration metrics.
#[derive(Clone, Default)]
pub struct MigrationMetrics {
    finished: Family<ResultLabel, Counter>,
}

impl MigrationMetrics {
    pub fn register(metrics: &operator_core::metrics::Metrics) -> Self {
        let m = MigrationMetrics::default();
        metrics.register_unprefixed(
            "novacron_migrations",
            "Live migrations that ended, by result (succeeded, failed, cancelled)",
            m.finished.clone(),
        );
        m
    }

    fn count(&self, result: &str) {
        self.finished
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }
}

/// What the migration controller shares.
pub struct Context {
    pub client: Client,
    pub events: Events,
    pub provider: LauncherProvider,
    /// Cluster-wide limit of migrations past `Pending`.
    pub max_parallel: u32,
    /// The operator's namespace scope (`None`: every namespace).
    pub watch_namespace: Option<String>,
    pub metrics: MigrationMetrics,
    /// Admission is decided one migration at a time, so two migrations
    /// reconciled at once cannot both take the last slot.
    pub admission: tokio::sync::Mutex<()>,
}

/// Why a migration reconcile failed (and is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("migration certificates: {0}")]
    Certificates(String),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => kube_error_reason(source),
            Error::Finalizer(_) => "FinalizerFailed",
            Error::Certificates(_) => "CertificatesFailed",
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// 404 and 409 are what idempotent creates and deletes expect.
fn tolerate(code: u16) -> impl FnOnce(kube::Error) -> Result<(), kube::Error> {
    move |e| match &e {
        kube::Error::Api(a) if a.code == code || a.code == 404 => Ok(()),
        _ => Err(e),
    }
}

/// Reconciles one VirtualMachineMigration.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<VirtualMachineMigration>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let migration = match &guard.0 {
        Ok(m) => m.clone(),
        Err(invalid) => {
            ctx.events
                .warning(
                    guard.as_ref(),
                    "InvalidObject",
                    "Decode",
                    format!(
                        "the object does not match the VirtualMachineMigration API and is ignored until it changes: {}",
                        invalid.error
                    ),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let ns = migration.namespace().unwrap_or_default();
    let api: Api<VirtualMachineMigration> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, Arc::new(migration), |event| async {
        match event {
            FinalizerEvent::Apply(m) => apply(&m, &ctx).await,
            FinalizerEvent::Cleanup(m) => cleanup(&m, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// One pass over a migration: everything it needs, read once.
struct Pass<'a> {
    ctx: &'a Context,
    m: &'a VirtualMachineMigration,
    ns: String,
    status: VirtualMachineMigrationStatus,
}

impl Pass<'_> {
    fn names(&self) -> Names {
        Names::of(&self.m.spec.vm_name)
    }

    fn target_names(&self) -> (String, String) {
        let uid = self.m.uid().unwrap_or_default();
        let n = self.names();
        (n.target_pod(&uid), n.target_config_map(&uid))
    }

    async fn vm(&self) -> Result<Option<VirtualMachine>, Error> {
        let vms: Api<VirtualMachine> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        vms.get_opt(&self.m.spec.vm_name)
            .await
            .map_err(kube_err("reading the VirtualMachine"))
    }

    /// Sets phase and `Ready`, writes the status when it changed, and
    /// publishes `event` (on the migration and the VM) if it did.
    async fn write(
        &mut self,
        phase: MigrationPhase,
        ready: ConditionUpdate,
        event: Option<(bool, &str, String)>,
    ) -> Result<(), Error> {
        let now = Utc::now();
        self.status.phase = Some(phase);
        self.status.observed_generation = self.m.metadata.generation;
        set_condition(
            &mut self.status.conditions,
            ready.observed_generation(self.m.metadata.generation),
            now,
        );
        let api: Api<VirtualMachineMigration> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let written = apply_status(&api, self.m, MIGRATION_MANAGER, &self.status)
            .await
            .map_err(kube_err("writing the migration status"))?;
        if written && let Some((warning, reason, message)) = event {
            self.publish(warning, reason, &message).await;
        }
        Ok(())
    }

    async fn publish(&self, warning: bool, reason: &str, message: &str) {
        let vm = self.vm_ref();
        let events = &self.ctx.events;
        if warning {
            events.warning(self.m, reason, "Migrate", message).await;
            events.warning(&vm, reason, "Migrate", message).await;
        } else {
            events.normal(self.m, reason, "Migrate", message).await;
            events.normal(&vm, reason, "Migrate", message).await;
        }
    }

    /// The VM as an event target (no read needed).
    fn vm_ref(&self) -> VirtualMachine {
        let mut vm = VirtualMachine::new(&self.m.spec.vm_name, Default::default());
        vm.metadata.namespace = Some(self.ns.clone());
        vm
    }

    /// Ends the migration as failed (the target is cleaned up first; the VM
    /// stays on the source).
    async fn fail(&mut self, reason: &str, message: String) -> Result<Action, Error> {
        self.remove_target().await?;
        self.status.completion_time = Some(to_k8s_time(Utc::now()));
        let result = if reason == "Cancelled" {
            "cancelled"
        } else {
            "failed"
        };
        let message = format!("{message}; the VM keeps running on its source node");
        let before = self.status.phase;
        self.write(
            MigrationPhase::Failed,
            ConditionUpdate::false_(READY, reason, &message),
            Some((true, reason, message.clone())),
        )
        .await?;
        if before != Some(MigrationPhase::Failed) {
            self.ctx.metrics.count(result);
        }
        tracing::info!(migration = %self.m.name_any(), reason, "migration failed");
        Ok(Action::await_change())
    }

    /// Refuses the migration: `Accepted` false with the reason.
    async fn refuse(&mut self, r: Refusal) -> Result<Action, Error> {
        set_condition(
            &mut self.status.conditions,
            ConditionUpdate::false_(crate::crd::ACCEPTED, &r.reason, &r.message)
                .observed_generation(self.m.metadata.generation),
            Utc::now(),
        );
        self.status.completion_time = Some(to_k8s_time(Utc::now()));
        self.write(
            MigrationPhase::Failed,
            ConditionUpdate::false_(READY, &r.reason, &r.message),
            Some((true, "MigrationRefused", r.message.clone())),
        )
        .await?;
        self.ctx.metrics.count("refused");
        Ok(Action::await_change())
    }

    /// Deletes the target pod and ConfigMap and unmarks the source.
    async fn remove_target(&self) -> Result<(), Error> {
        let (pod, cm) = self.target_names();
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let cms: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        pods.delete(&pod, &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(tolerate(404))
            .map_err(kube_err("deleting the target pod"))?;
        cms.delete(&cm, &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(tolerate(404))
            .map_err(kube_err("deleting the target launch ConfigMap"))?;
        self.unmark_source().await
    }

    async fn unmark_source(&self) -> Result<(), Error> {
        let Some(source) = &self.status_source_pod() else {
            return Ok(());
        };
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let Some(p) = pods
            .get_opt(source)
            .await
            .map_err(kube_err("reading the source pod"))?
        else {
            return Ok(());
        };
        if p.annotations().get(SOURCE_ANNOTATION) == Some(&self.m.name_any()) {
            let patch = serde_json::json!({"metadata": {"annotations": {SOURCE_ANNOTATION: null}}});
            pods.patch(source, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .or_else(tolerate(404))
                .map_err(kube_err("unmarking the source pod"))?;
        }
        Ok(())
    }

    /// The source pod's name: the one marked for this migration.
    fn status_source_pod(&self) -> Option<String> {
        self.m.annotations().get(SOURCE_POD_ANNOTATION).cloned()
    }
}

/// Annotation on the migration: the source pod it moves the VM from (set
/// with `Scheduling`; status has no field for it).
pub const SOURCE_POD_ANNOTATION: &str = "novacron.io/source-pod";

async fn apply(m: &VirtualMachineMigration, ctx: &Context) -> Result<Action, Error> {
    let mut pass = Pass {
        ctx,
        m,
        ns: m.namespace().unwrap_or_default(),
        status: m.status.clone().unwrap_or_default(),
    };
    if plan::finished(pass.status.phase) {
        return Ok(Action::await_change());
    }
    let verdict = validate::validate_migration(&m.spec);
    set_condition(
        &mut pass.status.conditions,
        accepted_condition(&verdict, m.metadata.generation),
        Utc::now(),
    );
    if let Err(e) = verdict {
        return pass
            .refuse(Refusal {
                reason: e.reason().into(),
                message: e.to_string(),
                fatal: true,
            })
            .await;
    }
    match pass.status.phase {
        None | Some(MigrationPhase::Pending) => pending(&mut pass).await,
        Some(MigrationPhase::Scheduling | MigrationPhase::PreparingTarget) => {
            prepare(&mut pass).await
        }
        Some(MigrationPhase::Running) => running(&mut pass).await,
        Some(MigrationPhase::Succeeded | MigrationPhase::Failed) => Ok(Action::await_change()),
    }
}

/// `Pending`: refusals, then admission, then the target.
async fn pending(pass: &mut Pass<'_>) -> Result<Action, Error> {
    if pass.status.phase.is_none() {
        pass.write(
            MigrationPhase::Pending,
            ConditionUpdate::false_(
                READY,
                "Pending",
                "accepted; checking the VM and waiting for a turn",
            ),
            None,
        )
        .await?;
    }
    let vm = pass.vm().await?;
    if let Some(r) = plan::refusal(&pass.m.spec.vm_name, vm.as_ref()) {
        if r.fatal {
            return pass.refuse(r).await;
        }
        pass.write(
            MigrationPhase::Pending,
            ConditionUpdate::false_(READY, &r.reason, &r.message),
            None,
        )
        .await?;
        return Ok(Action::requeue(WAIT_POLL));
    }
    let vm = vm.expect("refusal() checked the VM exists");
    let launchers = active::find(
        &pass.ctx.client,
        &pass.ns,
        &vm.name_any(),
        &vm.uid().unwrap_or_default(),
    )
    .await
    .map_err(kube_err("listing the VM's launcher pods"))?;
    let Some(source) = launchers.active.filter(|p| pod_state(p) == PodState::Ready) else {
        pass.write(
            MigrationPhase::Pending,
            ConditionUpdate::false_(
                READY,
                "SourceNotReady",
                "waiting for the VM's launcher pod to be ready",
            ),
            None,
        )
        .await?;
        return Ok(Action::requeue(WAIT_POLL));
    };
    let source_node = source
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();

    // Admission: one at a time, against every migration the operator sees.
    let _turn = pass.ctx.admission.lock().await;
    let all: Api<VirtualMachineMigration> = match &pass.ctx.watch_namespace {
        Some(ns) => Api::namespaced(pass.ctx.client.clone(), ns),
        None => Api::all(pass.ctx.client.clone()),
    };
    let everyone: Vec<Queued> = all
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing migrations"))?
        .items
        .iter()
        .map(queued)
        .collect();
    if let Err(r) = plan::admit(&queued(pass.m), &everyone, pass.ctx.max_parallel) {
        pass.write(
            MigrationPhase::Pending,
            ConditionUpdate::false_(READY, &r.reason, &r.message),
            None,
        )
        .await?;
        return Ok(Action::requeue(WAIT_POLL));
    }
    // Remember the source before anything else points at it.
    let api: Api<VirtualMachineMigration> = Api::namespaced(pass.ctx.client.clone(), &pass.ns);
    let patch = serde_json::json!({"metadata": {"annotations": {SOURCE_POD_ANNOTATION: source.name_any()}}});
    let updated = api
        .patch(
            &pass.m.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(kube_err("recording the source pod"))?;
    let mut pass = Pass {
        ctx: pass.ctx,
        m: &updated,
        ns: pass.ns.clone(),
        status: pass.status.clone(),
    };
    let (target_pod, _) = pass.target_names();
    pass.status.source_node = Some(source_node.clone());
    pass.status.target_pod = Some(target_pod.clone());
    let message = format!(
        "migrating VirtualMachine {} from node {source_node}: creating target launcher pod {target_pod}",
        pass.m.spec.vm_name
    );
    pass.write(
        MigrationPhase::Scheduling,
        ConditionUpdate::false_(READY, "Scheduling", &message),
        Some((false, "MigrationScheduling", message.clone())),
    )
    .await?;
    drop(_turn);
    prepare(&mut pass).await
}

fn queued(m: &VirtualMachineMigration) -> Queued {
    Queued {
        namespace: m.namespace().unwrap_or_default(),
        name: m.name_any(),
        vm: m.spec.vm_name.clone(),
        phase: m.status.as_ref().and_then(|s| s.phase),
        created: m.metadata.creation_timestamp.as_ref().map(from_k8s_time),
    }
}

/// `Scheduling` / `PreparingTarget`: the target pod, until its launcher
/// listens; then the source is asked to migrate.
async fn prepare(pass: &mut Pass<'_>) -> Result<Action, Error> {
    let ctx = pass.ctx;
    let Some(vm) = pass.vm().await? else {
        return pass
            .fail("VMNotFound", "the VirtualMachine was deleted".into())
            .await;
    };
    let source = match ready_source(pass).await? {
        Continue(source) => source,
        Break(action) => return Ok(action),
    };
    let policy = &vm.spec.migration_policy;
    if tls::encrypted(policy) {
        tls::ensure(&ctx.client, &vm)
            .await
            .map_err(|e| Error::Certificates(format!("{e:#}")))?;
    }
    let target = match ensure_target(pass, &vm, &source).await? {
        Continue(target) => target,
        Break(action) => return Ok(action),
    };
    let late = waited_too_long(&target);
    let (node, ip) = match target_receiving(pass, &target, late).await? {
        Continue(found) => found,
        Break(action) => return Ok(action),
    };
    start_transfer(pass, &vm, &source.name_any(), &node, &ip, late).await
}

/// The source launcher pod, Ready and marked so the VM reconciler keeps its
/// hands off it.
async fn ready_source(pass: &mut Pass<'_>) -> Result<ControlFlow<Action, Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(pass.ctx.client.clone(), &pass.ns);
    let Some(source_name) = pass.status_source_pod() else {
        return pass
            .fail("SourceUnknown", "the source pod was not recorded".into())
            .await
            .map(Break);
    };
    let Some(source) = pods
        .get_opt(&source_name)
        .await
        .map_err(kube_err("reading the source pod"))?
        .filter(|p| pod_state(p) == PodState::Ready)
    else {
        return pass
            .fail(
                "SourceGone",
                format!("the source launcher pod {source_name} is gone or not ready"),
            )
            .await
            .map(Break);
    };
    if source.annotations().get(SOURCE_ANNOTATION) != Some(&pass.m.name_any()) {
        let patch = serde_json::json!({"metadata": {"annotations": {SOURCE_ANNOTATION: pass.m.name_any()}}});
        pods.patch(&source_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err("marking the source pod"))?;
    }
    Ok(Continue(source))
}

/// The target launcher pod, created (with its launch ConfigMap) from the
/// source's spec when it does not exist yet.
async fn ensure_target(
    pass: &mut Pass<'_>,
    vm: &VirtualMachine,
    source: &Pod,
) -> Result<ControlFlow<Action, Pod>, Error> {
    let ctx = pass.ctx;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pass.ns);
    let (target_name, cm_name) = pass.target_names();
    if let Some(t) = pods
        .get_opt(&target_name)
        .await
        .map_err(kube_err("reading the target pod"))?
    {
        return Ok(Continue(t));
    }
    let source_config = match source_config(ctx, &pass.ns, source).await? {
        Ok(c) => c,
        Err(message) => {
            return pass
                .fail("SourceConfigUnreadable", message)
                .await
                .map(Break);
        }
    };
    let policy = &vm.spec.migration_policy;
    let timeout = plan::completion_timeout(policy, source_config.memory_bytes);
    let source_node = pass.status.source_node.clone().unwrap_or_default();
    let input = target::TargetInput {
        source,
        source_node: &source_node,
        source_config: &source_config,
        migration: &pass.m.name_any(),
        pod_name: target_name.clone(),
        config_map_name: cm_name.clone(),
        target_node_selector: &pass.m.spec.target_node_selector,
        incoming: plan::incoming(policy, timeout),
    };
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &pass.ns);
    cms.create(&PostParams::default(), &target::target_config_map(&input))
        .await
        .map(|_| ())
        .or_else(tolerate(409))
        .map_err(kube_err("creating the target launch ConfigMap"))?;
    match pods
        .create(&PostParams::default(), &target::target_pod(&input))
        .await
    {
        Ok(p) => Ok(Continue(p)),
        Err(kube::Error::Api(e)) if e.code == 409 => pods
            .get(&target_name)
            .await
            .map(Continue)
            .map_err(kube_err("reading the target pod")),
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 403 => pass
            .fail(
                "TargetRejected",
                format!("the API server rejected the target pod: {}", e.message),
            )
            .await
            .map(Break),
        Err(e) => Err(kube_err("creating the target pod")(e)),
    }
}

/// Whether the target pod has had longer than [`plan::PREPARE_TIMEOUT`].
fn waited_too_long(target: &Pod) -> bool {
    let waited = target
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| Utc::now() - from_k8s_time(t))
        .unwrap_or_default();
    waited.to_std().unwrap_or_default() > plan::PREPARE_TIMEOUT
}

/// The target's node and pod IP once its launcher waits for the incoming
/// migration; reports `Scheduling`/`PreparingTarget` until then, and fails
/// the migration when the target failed or took too long.
async fn target_receiving(
    pass: &mut Pass<'_>,
    target: &Pod,
    late: bool,
) -> Result<ControlFlow<Action, (String, String)>, Error> {
    let target_name = target.name_any();
    let node = target.spec.as_ref().and_then(|s| s.node_name.clone());
    let state = pod_state(target);
    if let PodState::Failed(m) | PodState::CrashLooping(m) = &state {
        return pass
            .fail(
                "TargetFailed",
                format!("the target launcher pod failed: {m}"),
            )
            .await
            .map(Break);
    }
    let Some(node) = node else {
        let why = match &state {
            PodState::Unschedulable(m) => m.clone(),
            _ => "waiting for the scheduler".into(),
        };
        if late {
            return pass
                .fail(
                    "TargetUnschedulable",
                    format!(
                        "no node took the target launcher pod within {:?}: {why}",
                        plan::PREPARE_TIMEOUT
                    ),
                )
                .await
                .map(Break);
        }
        pass.write(
            MigrationPhase::Scheduling,
            ConditionUpdate::false_(
                READY,
                "Scheduling",
                format!("target pod {target_name}: {why}"),
            ),
            None,
        )
        .await?;
        return Ok(Break(Action::requeue(POLL)));
    };
    if pass.status.phase == Some(MigrationPhase::Scheduling) {
        pass.status.target_node = Some(node.clone());
        let message = format!("target launcher pod {target_name} placed on node {node}");
        pass.write(
            MigrationPhase::PreparingTarget,
            ConditionUpdate::false_(READY, "PreparingTarget", &message),
            Some((false, "PreparingTarget", message.clone())),
        )
        .await?;
    }
    let waiting_msg = |why: &str| format!("target pod {target_name} on node {node}: {why}");
    let listening = if state == PodState::Ready {
        match pass.ctx.provider.migration(&pass.ns, &target_name).await {
            Ok(Some(m)) if m.phase == LauncherMigrationPhase::WaitingForMigration => Ok(()),
            Ok(Some(m)) if m.phase == LauncherMigrationPhase::Failed => {
                return pass
                    .fail(
                        "TargetFailed",
                        format!("the target launcher gave up: {}", m.message),
                    )
                    .await
                    .map(Break);
            }
            Ok(other) => Err(format!(
                "the target launcher is not receiving ({:?})",
                other.map(|m| m.phase)
            )),
            Err(e) => Err(format!("the target launcher is not reachable yet: {e}")),
        }
    } else {
        Err(match &state {
            PodState::Starting(m) => m.clone(),
            other => format!("{other:?}"),
        })
    };
    if let Err(why) = listening {
        if late {
            return pass
                .fail(
                    "TargetNotReady",
                    format!(
                        "the target launcher did not start receiving within {:?}: {why}",
                        plan::PREPARE_TIMEOUT
                    ),
                )
                .await
                .map(Break);
        }
        pass.write(
            MigrationPhase::PreparingTarget,
            ConditionUpdate::false_(READY, "PreparingTarget", waiting_msg(&why)),
            None,
        )
        .await?;
        return Ok(Break(Action::requeue(POLL)));
    }
    // The stream goes to the target pod's IP, read now (fresh).
    let Some(ip) = target.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
        pass.write(
            MigrationPhase::PreparingTarget,
            ConditionUpdate::false_(READY, "PreparingTarget", waiting_msg("no pod IP yet")),
            None,
        )
        .await?;
        return Ok(Break(Action::requeue(POLL)));
    };
    Ok(Continue((node, ip)))
}

/// Asks the source launcher to stream the VM to the target at `ip` with
/// the policy's parameters; the migration is `Running` once it accepted.
async fn start_transfer(
    pass: &mut Pass<'_>,
    vm: &VirtualMachine,
    source_name: &str,
    node: &str,
    ip: &str,
    late: bool,
) -> Result<Action, Error> {
    let policy = &vm.spec.migration_policy;
    let memory = vm
        .spec
        .template
        .as_ref()
        .and_then(|t| operator_core::quantity::parse_bytes(&t.spec.resources.memory.0).ok())
        .unwrap_or(1 << 30);
    let timeout = plan::completion_timeout(policy, memory);
    let request = match plan::migrate_request(
        policy,
        ip,
        &plan::tls_hostname(&pass.m.spec.vm_name, &pass.ns),
        timeout,
    ) {
        Ok(r) => r,
        Err(message) => return pass.fail("InvalidPolicy", message).await,
    };
    match pass
        .ctx
        .provider
        .migrate(&pass.ns, source_name, &request)
        .await
    {
        Ok(_) => {}
        Err(crate::provider::ProviderError::Http { code, body, .. }) if code < 500 => {
            return pass
                .fail(
                    "SourceRefused",
                    format!("the source launcher refused to migrate ({code}): {body}"),
                )
                .await;
        }
        Err(e) if !late => {
            tracing::info!(migration = %pass.m.name_any(), error = %e, "source not reachable; retrying");
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Err(e) => {
            return pass
                .fail(
                    "SourceUnreachable",
                    format!("asking the source to migrate: {e}"),
                )
                .await;
        }
    }
    pass.status.start_time = Some(to_k8s_time(Utc::now()));
    let source_node = pass.status.source_node.clone().unwrap_or_default();
    let message = format!(
        "streaming VirtualMachine {} from node {source_node} to node {node} ({})",
        pass.m.spec.vm_name, request.target
    );
    pass.write(
        MigrationPhase::Running,
        ConditionUpdate::false_(READY, "Running", &message),
        Some((false, "MigrationRunning", message.clone())),
    )
    .await?;
    Ok(Action::requeue(POLL))
}

/// The source's launch config, from the ConfigMap its pod mounts.
async fn source_config(
    ctx: &Context,
    ns: &str,
    source: &Pod,
) -> Result<Result<LaunchConfig, String>, Error> {
    let Some(name) = source
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "launch"))
        .and_then(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
    else {
        return Ok(Err("the source pod mounts no launch ConfigMap".into()));
    };
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cm) = cms
        .get_opt(&name)
        .await
        .map_err(kube_err("reading the source launch ConfigMap"))?
    else {
        return Ok(Err(format!(
            "the source launch ConfigMap {name} is missing"
        )));
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(LAUNCH_KEY))
        .cloned()
        .unwrap_or_default();
    Ok(serde_json::from_str::<LaunchConfig>(&text)
        .map_err(|e| format!("the source launch ConfigMap {name} is unreadable: {e}")))
}

/// `Running`: progress until the target has the VM.
async fn running(pass: &mut Pass<'_>) -> Result<Action, Error> {
    let ctx = pass.ctx;
    let (target_name, _) = pass.target_names();
    let source_name = pass.status_source_pod().unwrap_or_default();
    // The target first: it decides completion, and a source launcher
    // exits once the VM left it (asking a gone launcher costs a timeout).
    // Done only once the target's QEMU runs the guest, not merely received.
    let target = ctx
        .provider
        .status(&pass.ns, &target_name)
        .await
        .ok()
        .filter(|s| {
            s.phase == novacron_launcher::api::LauncherPhase::Running
                || s.migration
                    .as_ref()
                    .is_some_and(|m| m.phase == LauncherMigrationPhase::Failed)
        })
        .and_then(|s| s.migration);
    let arrived = target
        .as_ref()
        .is_some_and(|t| t.phase == LauncherMigrationPhase::Completed);
    let source = if arrived {
        None
    } else {
        ctx.provider
            .migration(&pass.ns, &source_name)
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "source migration status unavailable"))
            .ok()
            .flatten()
    };
    if let Some(s) = &source {
        plan::record_progress(&mut pass.status, s);
    }
    match plan::step(source.as_ref(), target.as_ref()) {
        Step::Completed => {
            if let Some(t) = &target {
                plan::record_progress(&mut pass.status, t);
            }
            switch(pass).await
        }
        Step::Failed { reason, message } => pass.fail(&reason, message).await,
        Step::Continue => {
            let vm = pass.vm().await?;
            let memory = vm
                .as_ref()
                .and_then(|v| v.spec.template.as_ref())
                .and_then(|t| operator_core::quantity::parse_bytes(&t.spec.resources.memory.0).ok())
                .unwrap_or(1 << 30);
            let policy = vm.map(|v| v.spec.migration_policy).unwrap_or_default();
            let timeout = plan::completion_timeout(&policy, memory);
            let elapsed = pass
                .status
                .start_time
                .as_ref()
                .map(|t| (Utc::now() - from_k8s_time(t)).to_std().unwrap_or_default())
                .unwrap_or_default();
            // The launcher enforces the timeout itself; this is the bound
            // when it cannot (unreachable source, stuck report). Never in
            // post-copy: cancelling then would lose the VM.
            if elapsed > timeout + Duration::from_secs(60)
                && !plan::in_post_copy(source.as_ref(), target.as_ref())
            {
                let _ = ctx.provider.cancel_migration(&pass.ns, &source_name).await;
                return pass
                    .fail(
                        "MigrationTimeout",
                        format!("the migration did not complete within {timeout:?}"),
                    )
                    .await;
            }
            let message = match (&source, pass.status.progress) {
                (Some(_), Some(p)) => format!(
                    "transferring memory: {p}% ({} of {} bytes remaining)",
                    pass.status.data_remaining_bytes.unwrap_or_default(),
                    pass.status.data_total_bytes.unwrap_or_default()
                ),
                (Some(_), None) => "the transfer is starting".to_owned(),
                (None, _) => "waiting for the launchers to report".to_owned(),
            };
            pass.write(
                MigrationPhase::Running,
                ConditionUpdate::false_(READY, "Running", message),
                None,
            )
            .await?;
            Ok(Action::requeue(POLL))
        }
    }
}

/// The VM runs on the target: delete the source pod, make the target the
/// VM's launcher pod (its config no longer receiving, so a restart of its
/// container boots from the disk like any launcher), record success.
async fn switch(pass: &mut Pass<'_>) -> Result<Action, Error> {
    let ctx = pass.ctx;
    let (target_name, cm_name) = pass.target_names();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pass.ns);
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &pass.ns);
    // Source first: while the target keeps its label, a crash here leaves
    // a migration in flight that the next pass finishes.
    if let Some(source) = pass.status_source_pod()
        && let Some(p) = pods
            .get_opt(&source)
            .await
            .map_err(kube_err("reading the source pod"))?
    {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: p.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        pods.delete(&source, &dp)
            .await
            .map(|_| ())
            .or_else(tolerate(409))
            .map_err(kube_err("deleting the source pod"))?;
    }
    if let Some(mut cm) = cms
        .get_opt(&cm_name)
        .await
        .map_err(kube_err("reading the target launch ConfigMap"))?
        && let Some(text) = cm.data.as_ref().and_then(|d| d.get(LAUNCH_KEY))
        && let Ok(mut config) = serde_json::from_str::<LaunchConfig>(text)
        && config.incoming.is_some()
    {
        config.incoming = None;
        cm.data.get_or_insert_default().insert(
            LAUNCH_KEY.into(),
            serde_json::to_string_pretty(&config).expect("a LaunchConfig serializes"),
        );
        cm.metadata.managed_fields = None;
        cms.replace(&cm_name, &PostParams::default(), &cm)
            .await
            .map_err(kube_err("updating the target launch ConfigMap"))?;
    }
    let patch = serde_json::json!({"metadata": {"labels": {TARGET_LABEL: null}}});
    pods.patch(&target_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_err("promoting the target pod"))?;
    let now = Utc::now();
    pass.status.completion_time = Some(to_k8s_time(now));
    pass.status.progress = Some(100);
    pass.status.data_remaining_bytes = Some(0);
    let took = pass
        .status
        .start_time
        .as_ref()
        .map(|t| {
            format!(
                " in {:.1}s",
                (now - from_k8s_time(t)).num_milliseconds() as f64 / 1000.0
            )
        })
        .unwrap_or_default();
    let message = format!(
        "VirtualMachine {} runs on node {} (launcher pod {target_name}){took}",
        pass.m.spec.vm_name,
        pass.status.target_node.clone().unwrap_or_default()
    );
    let before = pass.status.phase;
    pass.write(
        MigrationPhase::Succeeded,
        ConditionUpdate::true_(READY, "Succeeded", &message),
        Some((false, "Migrated", message.clone())),
    )
    .await?;
    if before != Some(MigrationPhase::Succeeded) {
        ctx.metrics.count("succeeded");
    }
    tracing::info!(migration = %pass.m.name_any(), "{message}");
    Ok(Action::await_change())
}

/// Deletion of the migration object: a migration still under way is
/// cancelled (the VM stays on the source) unless the VM already runs on
/// the target, in which case the switch is finished instead.
/// Remembers on the VM's launcher pod that its drain migration was deleted
/// unfinished, so the drain does not create it again.
async fn decline_drain(pass: &Pass<'_>) -> Result<(), Error> {
    let pod = match pass.status_source_pod() {
        Some(pod) => Some(pod),
        None => pass.vm().await?.and_then(|vm| vm.status?.launcher_pod),
    };
    let Some(pod) = pod else { return Ok(()) };
    let pods: Api<Pod> = Api::namespaced(pass.ctx.client.clone(), &pass.ns);
    let patch = serde_json::json!({"metadata": {"annotations": {DRAIN_DECLINED_ANNOTATION: pass.m.name_any()}}});
    pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .or_else(tolerate(404))
        .map_err(kube_err("marking the declined drain on the launcher pod"))
}

async fn cleanup(m: &VirtualMachineMigration, ctx: &Context) -> Result<Action, Error> {
    let mut pass = Pass {
        ctx,
        m,
        ns: m.namespace().unwrap_or_default(),
        status: m.status.clone().unwrap_or_default(),
    };
    if m.labels().get(TRIGGER_LABEL).map(String::as_str) == Some("drain")
        && pass.status.phase != Some(MigrationPhase::Succeeded)
    {
        decline_drain(&pass).await?;
    }
    match pass.status.phase {
        Some(MigrationPhase::Succeeded) | None | Some(MigrationPhase::Pending) => {}
        Some(MigrationPhase::Failed) => pass.remove_target().await?,
        Some(_) => {
            let (target_name, _) = pass.target_names();
            let target = ctx
                .provider
                .migration(&pass.ns, &target_name)
                .await
                .ok()
                .flatten();
            let arrived = target
                .as_ref()
                .is_some_and(|t| t.phase == LauncherMigrationPhase::Completed);
            if !arrived && plan::in_post_copy(None, target.as_ref()) {
                // Cancelling now would lose the VM: the deletion waits
                // (retried with backoff) until the target has it all.
                return Err(Error::Finalizer(
                    "the migration is in post-copy and cannot be cancelled; the deletion completes once the VM has fully arrived on the target".into(),
                ));
            }
            if arrived {
                switch(&mut pass).await?;
            } else {
                if let Some(source) = pass.status_source_pod() {
                    // Best effort: an unreachable source has no migration
                    // to cancel that outlives its target.
                    if let Err(e) = ctx.provider.cancel_migration(&pass.ns, &source).await {
                        tracing::info!(error = %e, "cancelling at the source");
                    }
                }
                pass.remove_target().await?;
                ctx.metrics.count("cancelled");
                pass.publish(
                    true,
                    "MigrationCancelled",
                    "the migration object was deleted: migration cancelled, the VM keeps running on its source node",
                )
                .await;
            }
        }
    }
    Ok(Action::await_change())
}
