//! The VirtualMachine reconciler: observe -> validate -> build -> apply ->
//! status.
//!
//! - Disks first: data volume claims, the root disk claim and, for http(s)
//!   and marketplace images, an importer Job; the VM waits in `Pending`
//!   until the root disk holds its image (`DiskReady`).
//! - `running: true` (or `runStrategy: Always`/`RerunOnFailure`): the
//!   launch ConfigMap and the launcher pod are applied; the phase follows
//!   the pod (`Starting` until it is Ready) and then the launcher's own
//!   report (`Running` once QEMU runs). A spec change restarts the VM
//!   (`Recreate`): graceful stop, then a new pod.
//! - `running: false`: a graceful shutdown through the launcher (preStop
//!   hook, ACPI power-down, forced stop after the grace period), then the
//!   pod is deleted (`Stopping`, then `Stopped`). Disks stay.
//! - Failures never loop hot: the kubelet restarts a failing launcher with
//!   its backoff, a finished pod is replaced no sooner than
//!   [`RESTART_DELAY`] after it ended, and errors requeue with backoff.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use novacron_launcher::api::{LauncherPhase, LauncherStatus};
use operator_core::apply::{Applier, ApplyError};
use operator_core::conditions::{ConditionUpdate, remove_condition, set_condition};
use operator_core::controller::{ReconcileError, kube_error_reason};
use operator_core::events::Events;
use operator_core::status::apply_status;

use crate::build::disks::{self, ImportState, RootSource};
use crate::build::launch::{VmIdentity, interfaces, launch_config, launch_config_map};
use crate::build::pod::{PodInput, launcher_pod, spec_hash};
use crate::build::{Names, SPEC_HASH_ANNOTATION, stable_hash_hex};
use crate::catalog;
use crate::controllers::{VM_MANAGER, accepted_condition};
use crate::crd::{
    ImportStatus, PullPolicy, RunStrategy, VirtualMachine, VirtualMachineStatus, VmPhase, VmSpec,
};
use crate::import_progress;
use crate::metrics::VmMetrics;
use crate::observe::{
    DISK_READY, HOOKS_SUCCEEDED, PAUSED, PodState, READY, failed_hook, live_migratable, phase_of,
    pod_state, usage,
};
use crate::provider::{LauncherProvider, Provider};
use crate::settings::Settings;
use crate::validate::{self, ImageSource};

/// The least time between a launcher pod ending and its replacement.
pub const RESTART_DELAY: Duration = Duration::from_secs(10);
/// Poll interval while a VM boots or shuts down.
pub const TRANSITION_POLL: Duration = Duration::from_secs(2);
/// Annotation on the launcher pod: when the graceful shutdown was requested.
pub const SHUTDOWN_ANNOTATION: &str = "novacron.io/shutdown-requested-at";

/// What the VM reconciler shares.
pub struct Context {
    pub client: Client,
    pub events: Events,
    pub settings: Settings,
    pub provider: LauncherProvider,
    pub metrics: VmMetrics,
    /// The clock (injectable for tests).
    pub now: fn() -> DateTime<Utc>,
}

/// Why a VM reconcile failed (invalid specs and VM failures end in status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Status(e) | Error::Kube { source: e, .. } => kube_error_reason(e),
            Error::Apply(e) => e.reason(),
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// The result of one pass, before it is written.
struct Outcome {
    phase: VmPhase,
    ready: ConditionUpdate,
    requeue: Option<Duration>,
    /// Warning event to publish if the status changed.
    warning: Option<(String, String)>,
    /// Normal event to publish if the status changed.
    normal: Option<(String, String)>,
}

impl Outcome {
    fn new(phase: VmPhase, reason: &str, message: impl Into<String>) -> Self {
        let ready = if phase == VmPhase::Running {
            ConditionUpdate::true_(READY, reason, message)
        } else {
            ConditionUpdate::false_(READY, reason, message)
        };
        Outcome {
            phase,
            ready,
            requeue: None,
            warning: None,
            normal: None,
        }
    }

    fn requeue(mut self, d: Duration) -> Self {
        self.requeue = Some(d);
        self
    }

    fn warn(mut self) -> Self {
        self.warning = Some((self.ready.reason.clone(), self.ready.message.clone()));
        self
    }

    fn note(mut self, reason: &str, message: impl Into<String>) -> Self {
        self.normal = Some((reason.into(), message.into()));
        self
    }
}

/// One VM's reconcile.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<VirtualMachine>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let vm = match &guard.0 {
        Ok(vm) => vm,
        Err(invalid) => {
            ctx.events
                .warning(
                    guard.as_ref(),
                    "InvalidObject",
                    "Decode",
                    format!(
                        "the object does not match the VirtualMachine API and is ignored until it changes: {}",
                        invalid.error
                    ),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let started = std::time::Instant::now();
    let result = reconcile_vm(vm, &ctx).await;
    ctx.metrics
        .observe_reconcile("virtualmachine", started.elapsed(), result.is_ok());
    result
}

async fn reconcile_vm(vm: &VirtualMachine, ctx: &Context) -> Result<Action, Error> {
    let now = (ctx.now)();
    let name = vm.name_any();
    let ns = vm.namespace().unwrap_or_default();
    let generation = vm.metadata.generation;
    let verdict = validate::validate_vm(&name, &vm.spec);
    let mut status = vm.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        accepted_condition(&verdict, generation),
        now,
    );
    set_condition(
        &mut status.conditions,
        live_migratable(&vm.spec).observed_generation(generation),
        now,
    );
    // The VM's launcher pod: `<vm>-launcher`, or the target of its last
    // live migration; a migration under way owns both pods.
    let launchers = crate::migration::active::find(&ctx.client, &ns, &name, &uid_of(vm))
        .await
        .map_err(kube_err("reading the launcher pods"))?;
    let pod = launchers.active.clone();
    let migrating = crate::migration::observe_vm(&ctx.client, &ns, &launchers, &mut status)
        .await
        .map_err(kube_err("reading the VM's migration"))?;

    let mut outcome = match &verdict {
        // A running instance is left alone: a spec that became invalid
        // (through an older CRD) must not take the VM down.
        Err(e) => Outcome::new(
            if pod.is_some() {
                status.phase.unwrap_or(VmPhase::Pending)
            } else {
                VmPhase::Failed
            },
            e.reason(),
            e.to_string(),
        ),
        Ok(()) if migrating && pod.is_some() => migrating_outcome(&mut status, pod.as_ref()),
        Ok(()) => drive(vm, ctx, &mut status, pod.as_ref(), now).await?,
    };
    if verdict.is_ok() {
        // Scheduled snapshots: their problems never fail the VM's reconcile.
        let deps = crate::snapshots::vm::Deps {
            client: &ctx.client,
            events: &ctx.events,
            quiesce: &ctx.provider,
        };
        let next = crate::snapshots::reconcile_vm(&deps, vm, outcome.phase, &mut status, now).await;
        outcome.requeue = outcome.requeue.into_iter().chain(next).min();
    }
    finish(vm, ctx, status, outcome, &verdict).await
}

fn uid_of(vm: &VirtualMachine) -> String {
    vm.uid().unwrap_or_default()
}

/// A live migration under way: the VM runs (on the source until the
/// switch); neither pod is touched here.
fn migrating_outcome(status: &mut VirtualMachineStatus, pod: Option<&Pod>) -> Outcome {
    status.node_name = pod.and_then(|p| p.spec.as_ref()?.node_name.clone());
    status.launcher_pod = pod.map(|p| p.name_any());
    let m = status.migration.clone().unwrap_or_default();
    let message = format!(
        "live migration {} {:?}: node {} to {}",
        m.migration_name.unwrap_or_default(),
        m.phase.unwrap_or(crate::crd::MigrationPhase::Pending),
        m.source_node.unwrap_or_default(),
        m.target_node.unwrap_or_else(|| "(not placed yet)".into())
    );
    let mut out = Outcome::new(VmPhase::Migrating, "Migrating", message);
    out.ready = ConditionUpdate::true_(READY, "Migrating", out.ready.message);
    out.requeue(TRANSITION_POLL)
}

/// Writes the status and publishes the outcome's events when it changed.
async fn finish(
    vm: &VirtualMachine,
    ctx: &Context,
    mut status: VirtualMachineStatus,
    outcome: Outcome,
    verdict: &Result<(), validate::InvalidSpec>,
) -> Result<Action, Error> {
    let now = (ctx.now)();
    let generation = vm.metadata.generation;
    let was_running = vm.status.as_ref().and_then(|s| s.phase) == Some(VmPhase::Running);
    status.phase = Some(outcome.phase);
    set_condition(
        &mut status.conditions,
        outcome.ready.clone().observed_generation(generation),
        now,
    );
    if outcome.phase != VmPhase::Running && outcome.phase != VmPhase::Migrating {
        ctx.metrics
            .clear_usage(&vm.namespace().unwrap_or_default(), &vm.name_any());
    }
    let api: Api<VirtualMachine> =
        Api::namespaced(ctx.client.clone(), &vm.namespace().unwrap_or_default());
    let written = apply_status(&api, vm, VM_MANAGER, &status)
        .await
        .map_err(Error::Status)?;
    if written {
        if let Err(e) = verdict {
            ctx.events
                .warning(vm, e.reason(), "Validate", e.to_string())
                .await;
        } else if let Some((reason, message)) = &outcome.warning {
            ctx.events.warning(vm, reason, "Reconcile", message).await;
        }
        if let Some((reason, message)) = &outcome.normal {
            ctx.events.normal(vm, reason, "Reconcile", message).await;
        } else if outcome.phase == VmPhase::Running && !was_running {
            ctx.events
                .normal(vm, "Running", "Reconcile", "the VM is running")
                .await;
        }
    }
    Ok(match outcome.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// The VM spec's run intent and children; returns the outcome.
async fn drive(
    vm: &VirtualMachine,
    ctx: &Context,
    status: &mut VirtualMachineStatus,
    pod: Option<&Pod>,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let name = vm.name_any();
    let ns = vm.namespace().unwrap_or_default();
    let uid = vm.uid().unwrap_or_default();
    let template = vm
        .spec
        .template
        .as_ref()
        .expect("validated: has a template");
    let spec = &template.spec;
    let wants = vm.spec.wants_running();
    status.node_name = pod.and_then(|p| p.spec.as_ref()?.node_name.clone());
    status.launcher_pod = pod.map(|p| p.name_any());

    let devices = match ctx.settings.devices.resolve(&spec.devices) {
        Ok(d) => d,
        Err(message) => return Ok(blocked(pod, "DeviceNotMapped", message)),
    };
    let source = match resolve_source(ctx, &ns, &name, spec).await? {
        Ok(s) => s,
        Err((reason, message)) => {
            set_condition(
                &mut status.conditions,
                ConditionUpdate::false_(DISK_READY, reason, &message),
                now,
            );
            // Waiting for the administrator's catalog (or a fixed
            // source): Pending, not Failed.
            let mut out = blocked(pod, reason, message);
            if out.phase == VmPhase::Failed {
                out.phase = VmPhase::Pending;
            }
            return Ok(out);
        }
    };
    let id = VmIdentity {
        name: &name,
        namespace: &ns,
        uid: &uid,
    };
    let config = match launch_config(id, spec, &devices, spec.termination_grace_period_seconds) {
        Ok(c) => crate::migration::tls::with_migration_tls(c, &vm.spec.migration_policy),
        Err(message) => return Ok(blocked(pod, "InvalidLaunchConfig", message)),
    };
    let ifaces = interfaces(&uid, spec);
    let mut desired = launcher_pod(&PodInput {
        config: &config,
        spec,
        metadata: template.metadata.as_ref(),
        interfaces: &ifaces,
        devices: &devices,
        settings: &ctx.settings.pod,
    });
    // The root disk's source is part of what the VM was started from.
    let hash = stable_hash_hex(&[spec_hash(&desired).unwrap_or_default(), &source.hash()]);
    desired
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SPEC_HASH_ANNOTATION.into(), hash.clone());

    if let Some(p) = pod {
        let state = pod_state(p);
        let finished = matches!(state, PodState::Succeeded | PodState::Failed(_));
        let outdated = spec_hash(p) != Some(hash.as_str());
        if !wants || (outdated && !finished) {
            let why = if wants {
                "the VM restarts to apply a spec change"
            } else {
                "the VM is shutting down"
            };
            return stop(ctx, &ns, p, &state, spec, now, why).await;
        }
        if finished {
            return restart(vm, ctx, &ns, p, &state, now).await;
        }
        return observe_running(ctx, status, &ns, p, &state, &config).await;
    }

    if !wants {
        // Stopped: the launch ConfigMap goes, the disks stay.
        let applier = Applier::new(ctx.client.clone(), VM_MANAGER, vm)?;
        applier.prune::<ConfigMap>(&ns, &BTreeSet::new()).await?;
        remove_condition(&mut status.conditions, PAUSED);
        status.ip_addresses.clear();
        status.vm_id = None;
        status.resources = None;
        status.interfaces.clear();
        return Ok(Outcome::new(
            VmPhase::Stopped,
            "Stopped",
            "the VM is stopped",
        ));
    }

    // Start: disks, then the ConfigMap and the pod.
    let applier = Applier::new(ctx.client.clone(), VM_MANAGER, vm)?;
    for pvc in disks::data_volumes(&name, &ns, spec) {
        applier.apply(pvc).await?;
    }
    match ensure_root_disk(ctx, &applier, &ns, &name, spec, &source, &mut status.import).await? {
        DiskState::Ready(reason, message) => set_condition(
            &mut status.conditions,
            ConditionUpdate::true_(DISK_READY, reason, message),
            now,
        ),
        DiskState::NotReady {
            reason,
            message,
            failed,
        } => {
            set_condition(
                &mut status.conditions,
                ConditionUpdate::false_(DISK_READY, reason, &message),
                now,
            );
            let phase = if failed {
                VmPhase::Failed
            } else {
                VmPhase::Pending
            };
            let out = Outcome::new(phase, reason, message);
            return Ok(if failed {
                out.warn().requeue(Duration::from_secs(300))
            } else if reason == IMPORTING {
                // Progress is in the importer's log, which no watch sees.
                out.requeue(import_progress::POLL)
            } else {
                // The Job and claim watches wake us; the requeue is a
                // safety net.
                out.requeue(Duration::from_secs(60))
            });
        }
    };
    if config.migration_tls_dir.is_some()
        && let Err(e) = crate::migration::tls::ensure(&ctx.client, vm).await
    {
        // The pod mounts the certificates: it waits for them.
        return Ok(Outcome::new(
            VmPhase::Pending,
            "MigrationCertificates",
            format!("issuing the VM's migration certificates: {e:#}"),
        )
        .warn()
        .requeue(Duration::from_secs(30)));
    }
    applier.apply(launch_config_map(&config)).await?;
    applier.apply(desired).await?;
    status.ip_addresses.clear();
    status.resources = None;
    Ok(Outcome::new(
        VmPhase::Starting,
        "Starting",
        "the launcher pod was created",
    )
    .requeue(Duration::from_secs(30))
    .note(
        "Starting",
        format!("created launcher pod {}", Names::of(&name).pod()),
    ))
}

/// A VM that cannot start for a reason only an administrator or a spec
/// change fixes; a running instance is left alone.
fn blocked(pod: Option<&Pod>, reason: &str, message: String) -> Outcome {
    let phase = if pod.is_some() {
        VmPhase::Running
    } else {
        VmPhase::Failed
    };
    let mut out = Outcome::new(phase, reason, message);
    if phase == VmPhase::Running {
        out.ready = ConditionUpdate::unknown(READY, reason, out.ready.message);
    }
    out.warn().requeue(Duration::from_secs(300))
}

/// Resolves `image.source` (marketplace names through the catalog).
/// `Ok(Err((reason, message)))` when the VM cannot get its disk yet.
async fn resolve_source(
    ctx: &Context,
    ns: &str,
    vm: &str,
    spec: &VmSpec,
) -> Result<Result<RootSource, (&'static str, String)>, Error> {
    let checksum = spec.image.checksum.clone();
    Ok(match validate::parse_image_source(&spec.image.source) {
        Ok(ImageSource::Http(url)) => Ok(RootSource::Import {
            url: url.to_owned(),
            checksum,
        }),
        Ok(ImageSource::Pvc { namespace, name }) => Ok(RootSource::ClonePvc {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }),
        // A VolumeSnapshot, or a VM snapshot from `status.snapshots`;
        // once restored, the disk says which (the snapshot may be gone).
        Ok(ImageSource::Snapshot(name)) => match restored_from(ctx, ns, vm).await? {
            Some(restored) => Ok(RootSource::Snapshot { name: restored }),
            None => match crate::snapshots::restore::resolve(&ctx.client, ns, name)
                .await
                .map_err(kube_err("reading the snapshot to restore"))?
            {
                Ok(name) => Ok(RootSource::Snapshot { name }),
                Err(e) => Err(("SnapshotNotFound", e.to_string())),
            },
        },
        Ok(ImageSource::Marketplace(image)) => {
            let Some((cns, cname)) = &ctx.settings.catalog else {
                return Ok(Err((
                    "ImageCatalogMissing",
                    format!(
                        "marketplace://{image} needs the image catalog, and the operator has none configured (NOVACRON_IMAGE_CATALOG)"
                    ),
                )));
            };
            let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), cns);
            match cms.get_opt(cname).await {
                Ok(Some(cm)) => catalog::lookup(&cm.data.unwrap_or_default(), image)
                    .map(|i| RootSource::Import {
                        url: i.url,
                        checksum: i.checksum,
                    })
                    .map_err(|m| ("ImageNotFound", m)),
                Ok(None) => Err((
                    "ImageCatalogMissing",
                    format!(
                        "marketplace://{image}: the image catalog ConfigMap {cns}/{cname} does not exist"
                    ),
                )),
                Err(kube::Error::Api(e)) if e.code == 403 => Err((
                    "ImageCatalogForbidden",
                    format!("the operator may not read the image catalog {cns}/{cname}"),
                )),
                Err(e) => return Err(kube_err("reading the image catalog")(e)),
            }
        }
        Err(m) => Err(("InvalidImageSource", m)),
    })
}

/// The VolumeSnapshot the VM's existing root disk was restored from.
async fn restored_from(ctx: &Context, ns: &str, vm: &str) -> Result<Option<String>, Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let disk = pvcs
        .get_opt(&Names::of(vm).root_disk())
        .await
        .map_err(kube_err("reading the root disk claim"))?;
    Ok(disk
        .and_then(|d| d.spec?.data_source)
        .filter(|s| s.kind == "VolumeSnapshot")
        .map(|s| s.name))
}

enum DiskState {
    Ready(&'static str, String),
    NotReady {
        reason: &'static str,
        message: String,
        failed: bool,
    },
}

/// The `DiskReady` reason while the importer Job runs.
const IMPORTING: &str = "Importing";

/// Creates the root disk and imports its image when needed; `import` is
/// the VM's `status.import` (the import's progress and outcome).
async fn ensure_root_disk(
    ctx: &Context,
    applier: &Applier,
    ns: &str,
    vm: &str,
    spec: &VmSpec,
    source: &RootSource,
    import: &mut Option<ImportStatus>,
) -> Result<DiskState, Error> {
    let names = Names::of(vm);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let existing = pvcs
        .get_opt(&names.root_disk())
        .await
        .map_err(kube_err("reading the root disk claim"))?;
    let policy = spec.image.pull_policy;
    if policy == PullPolicy::Never {
        return Ok(match existing {
            Some(_) => DiskState::Ready(
                "Present",
                "pullPolicy Never: using the existing root disk".into(),
            ),
            None => DiskState::NotReady {
                reason: "RootDiskMissing",
                message: format!(
                    "pullPolicy is Never and the root disk claim {} does not exist",
                    names.root_disk()
                ),
                failed: false,
            },
        });
    }
    let imported = existing.as_ref().is_some_and(|p| match policy {
        PullPolicy::Always => disks::imported_from(p, source),
        _ => disks::root_disk_ready(p, source) || disks::imported_from(p, source),
    });
    let RootSource::Import { url, checksum } = source else {
        // Clones and snapshot restores are filled by the provisioner.
        *import = None;
        let pvc = applier
            .apply(disks::root_disk(vm, ns, spec, source, false))
            .await?;
        let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        return Ok(
            if bound || existing.is_some_and(|p| disks::root_disk_ready(&p, source)) {
                DiskState::Ready("Cloned", "the root disk was created from its source".into())
            } else {
                DiskState::NotReady {
                    reason: "Provisioning",
                    message: "waiting for the root disk claim to be bound".into(),
                    failed: false,
                }
            },
        );
    };
    if imported {
        // Keep the mark (re-applying without it would drop it).
        let keep_mark = existing
            .as_ref()
            .is_some_and(|p| disks::imported_from(p, source));
        if keep_mark {
            applier
                .apply(disks::root_disk(vm, ns, spec, source, true))
                .await?;
        }
        applier.prune::<Job>(ns, &BTreeSet::new()).await?;
        *import = Some(import_progress::finished_status(url, true, import.as_ref()));
        return Ok(DiskState::Ready(
            "Imported",
            format!("the root disk holds {url}"),
        ));
    }
    applier
        .apply(disks::root_disk(vm, ns, spec, source, false))
        .await?;
    let hash = source.hash();
    let job_name = names.import_job(&hash);
    applier
        .prune::<Job>(ns, &BTreeSet::from([job_name.clone()]))
        .await?;
    let job = match jobs
        .get_opt(&job_name)
        .await
        .map_err(kube_err("reading the importer job"))?
    {
        Some(j) => j,
        None => {
            applier
                .apply(disks::importer_job(
                    vm,
                    ns,
                    spec,
                    url,
                    checksum.as_deref(),
                    &hash,
                    &ctx.settings.pod.image,
                ))
                .await?
        }
    };
    Ok(match disks::import_state(&job) {
        ImportState::Running => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
            let latest = import_progress::latest_progress(&pods, &job).await;
            let progress =
                import_progress::running_status(url, &job_name, latest.as_ref(), import.as_ref());
            let message = format!(
                "{} (into {}, job {job_name})",
                import_progress::message(&progress),
                names.root_disk()
            );
            *import = Some(progress);
            DiskState::NotReady {
                reason: IMPORTING,
                message,
                failed: false,
            }
        }
        ImportState::Failed(m) => {
            *import = Some(import_progress::finished_status(
                url,
                false,
                import.as_ref(),
            ));
            DiskState::NotReady {
                reason: "ImportFailed",
                message: format!("importing {url} failed (job {job_name}): {m}"),
                failed: true,
            }
        }
        ImportState::Succeeded => {
            applier
                .apply(disks::root_disk(vm, ns, spec, source, true))
                .await?;
            applier.prune::<Job>(ns, &BTreeSet::new()).await?;
            *import = Some(import_progress::finished_status(url, true, import.as_ref()));
            DiskState::Ready("Imported", format!("the root disk holds {url}"))
        }
    })
}

/// Graceful stop: ask the launcher to shut down, wait for it (bounded by
/// the grace period), then delete the pod (whose own SIGTERM handling is
/// graceful too).
async fn stop(
    ctx: &Context,
    ns: &str,
    pod: &Pod,
    state: &PodState,
    spec: &VmSpec,
    now: DateTime<Utc>,
    why: &str,
) -> Result<Outcome, Error> {
    let stopping = |m: String| Outcome::new(VmPhase::Stopping, "Stopping", m);
    if *state == PodState::Terminating {
        return Ok(
            stopping(format!("{why}: waiting for the launcher pod to end"))
                .requeue(TRANSITION_POLL),
        );
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod_name = pod.name_any();
    let requested_at = pod
        .annotations()
        .get(SHUTDOWN_ANNOTATION)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let deadline = chrono::Duration::seconds(spec.termination_grace_period_seconds + 30);
    let delete_now = match (state, requested_at) {
        (PodState::Ready, None) => match ctx.provider.request_shutdown(ns, &pod_name).await {
            Ok(s) if s.phase.is_final() => true,
            Ok(_) => {
                let patch = serde_json::json!({"metadata": {"annotations": {
                    SHUTDOWN_ANNOTATION: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }}});
                pods.patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(kube_err("marking the launcher pod as shutting down"))?;
                return Ok(stopping(format!("{why}: graceful shutdown requested"))
                    .requeue(TRANSITION_POLL)
                    .note("Stopping", format!("{why}: graceful shutdown requested")));
            }
            // Unreachable launcher: the pod's SIGTERM handling shuts down.
            Err(e) => {
                tracing::info!(pod = %pod_name, error = %e, "launcher unreachable; deleting its pod");
                true
            }
        },
        (PodState::Ready, Some(at)) => {
            if now - at > deadline {
                true
            } else {
                match ctx.provider.status(ns, &pod_name).await {
                    Ok(s) => s.phase.is_final(),
                    Err(_) => true,
                }
            }
        }
        _ => true,
    };
    if delete_now {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&pod_name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(kube_err("deleting the launcher pod")(e)),
        }
        return Ok(
            stopping(format!("{why}: the launcher pod is being deleted")).requeue(TRANSITION_POLL),
        );
    }
    Ok(stopping(format!("{why}: waiting for the guest to power off")).requeue(TRANSITION_POLL))
}

/// A launcher pod that ended: the guest powered off or the pod failed.
async fn restart(
    vm: &VirtualMachine,
    ctx: &Context,
    ns: &str,
    pod: &Pod,
    state: &PodState,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let failed_msg = match state {
        PodState::Failed(m) => Some(m.clone()),
        _ => None,
    };
    if failed_msg.is_none() && vm.spec.run_strategy == Some(RunStrategy::RerunOnFailure) {
        // The finished pod stays as the record that the guest chose to stop.
        return Ok(Outcome::new(
            VmPhase::Stopped,
            "GuestShutdown",
            "the guest powered off; runStrategy RerunOnFailure leaves it stopped",
        ));
    }
    let ended = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
        .map(|t| operator_core::conditions::from_k8s_time(&t))
        .unwrap_or(now);
    let (phase, reason, message) = match &failed_msg {
        Some(m) => (
            VmPhase::Failed,
            "LauncherFailed",
            format!("the launcher pod failed: {m}; restarting"),
        ),
        None => (
            VmPhase::Stopped,
            "GuestShutdown",
            "the guest powered off; restarting it (running: true)".to_owned(),
        ),
    };
    let wait = chrono::Duration::from_std(RESTART_DELAY).unwrap_or_default() - (now - ended);
    if wait > chrono::Duration::zero() {
        let out =
            Outcome::new(phase, reason, message).requeue(wait.to_std().unwrap_or(RESTART_DELAY));
        return Ok(if failed_msg.is_some() {
            out.warn()
        } else {
            out
        });
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(kube_err("deleting the ended launcher pod")(e)),
    }
    let out = Outcome::new(phase, reason, message).requeue(TRANSITION_POLL);
    Ok(if failed_msg.is_some() {
        out.warn()
    } else {
        out
    })
}

/// A current launcher pod that has not ended: phase from the pod and the
/// launcher's report.
async fn observe_running(
    ctx: &Context,
    status: &mut VirtualMachineStatus,
    ns: &str,
    pod: &Pod,
    state: &PodState,
    config: &novacron_launcher::config::LaunchConfig,
) -> Result<Outcome, Error> {
    let now = (ctx.now)();
    Ok(match state {
        PodState::Terminating => Outcome::new(
            VmPhase::Stopping,
            "PodTerminating",
            "the launcher pod is being deleted",
        )
        .requeue(TRANSITION_POLL),
        PodState::Unschedulable(m) => Outcome::new(
            VmPhase::Pending,
            "Unschedulable",
            format!("the launcher pod cannot be scheduled: {m}"),
        )
        .warn(),
        PodState::Starting(m) => Outcome::new(VmPhase::Starting, "PodStarting", m.clone())
            .requeue(Duration::from_secs(30)),
        PodState::CrashLooping(m) => {
            if m.contains("preStart") {
                set_condition(
                    &mut status.conditions,
                    ConditionUpdate::false_(HOOKS_SUCCEEDED, "PreStartHookFailed", m.clone()),
                    now,
                );
            }
            Outcome::new(
                VmPhase::Failed,
                "LauncherCrashLoop",
                format!("the launcher keeps failing (the kubelet retries with backoff): {m}"),
            )
            .warn()
            .requeue(Duration::from_secs(60))
        }
        PodState::Ready => match ctx.provider.status(ns, &pod.name_any()).await {
            Ok(s) => launcher_outcome(ctx, status, ns, pod, &s, config, now),
            Err(e) => {
                let mut out = Outcome::new(
                    VmPhase::Starting,
                    e.reason(),
                    format!("cannot read the launcher's status: {e}"),
                );
                if matches!(status.phase, Some(VmPhase::Running | VmPhase::Migrating)) {
                    // Keep reporting the VM as running; only the view is lost.
                    out.phase = VmPhase::Running;
                    out.ready = ConditionUpdate::unknown(READY, e.reason(), out.ready.message);
                }
                out.requeue(Duration::from_secs(10))
            }
        },
        PodState::Succeeded | PodState::Failed(_) => {
            unreachable!("ended pods are handled by restart()")
        }
    })
}

fn launcher_outcome(
    ctx: &Context,
    status: &mut VirtualMachineStatus,
    ns: &str,
    pod: &Pod,
    s: &LauncherStatus,
    config: &novacron_launcher::config::LaunchConfig,
    now: DateTime<Utc>,
) -> Outcome {
    let (phase, reason) = phase_of(s);
    status.vm_id = pod.uid();
    let mut ips: Vec<String> = pod
        .status
        .as_ref()
        .and_then(|st| st.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
        .unwrap_or_default();
    for ip in &s.ip_addresses {
        if !ips.contains(ip) {
            ips.push(ip.clone());
        }
    }
    status.ip_addresses = ips;
    status.interfaces = config
        .nics
        .iter()
        .map(|n| crate::crd::InterfaceStatus {
            name: n.name.clone(),
            mac_address: Some(n.mac.clone()),
            ip_addresses: Vec::new(),
        })
        .collect();
    status.resources = usage(s, config.vcpus, config.memory_bytes);
    let node = status.node_name.clone().unwrap_or_default();
    if phase == VmPhase::Running {
        ctx.metrics.set_usage(
            ns,
            &config.name,
            &node,
            s.cpu_usage_cores,
            s.memory_usage_bytes,
        );
    }
    let paused = s.phase == LauncherPhase::Paused;
    set_condition(
        &mut status.conditions,
        if paused {
            ConditionUpdate::true_(
                PAUSED,
                "Paused",
                format!(
                    "QEMU reports {}",
                    s.qemu_status.as_deref().unwrap_or("paused")
                ),
            )
        } else {
            ConditionUpdate::false_(PAUSED, "NotPaused", "the guest is not paused")
        },
        now,
    );
    let hook_failure = failed_hook(s);
    if !s.hooks.is_empty() {
        let update = match &hook_failure {
            Some((reason, message)) => ConditionUpdate::false_(HOOKS_SUCCEEDED, reason, message),
            None => ConditionUpdate::true_(
                HOOKS_SUCCEEDED,
                "HooksSucceeded",
                "every hook run so far succeeded",
            ),
        };
        set_condition(&mut status.conditions, update, now);
    }
    let message = if s.message.is_empty() {
        match phase {
            VmPhase::Running => "the VM is running".to_owned(),
            _ => format!("the launcher reports {:?}", s.phase),
        }
    } else {
        s.message.clone()
    };
    let reason = if !s.reason.is_empty() && phase == VmPhase::Failed {
        s.reason.as_str()
    } else {
        reason
    };
    let mut out = Outcome::new(phase, reason, message);
    if phase == VmPhase::Running && !paused && hook_failure.is_none() {
        out = out.requeue(ctx.settings.status_interval);
    } else {
        out = out.requeue(TRANSITION_POLL);
    }
    if phase == VmPhase::Failed {
        out = out.warn();
    } else if let Some((reason, message)) = hook_failure {
        out.warning = Some((reason, message));
    }
    out
}
