//! DevServer: observe (flavor, owner's keys, host keys, pods) -> validate ->
//! build -> apply -> status.
//!
//! The phase comes from the real pods: `Pending` until a pod exists,
//! `Starting` until every pod is Ready, `Running` only then. Expiry is a
//! timer: the reconcile returns `Action::requeue` at `expiresAt`, so nothing
//! lists every DevServer periodically.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::apply::{Applier, ApplyError};
use operator_core::conditions::{ConditionUpdate, from_k8s_time, set_condition, to_k8s_time};

use crate::build::devserver::{
    DevServerObjects, Inputs, Names, SSH_PORT, TEMPLATE_HASH, devserver_objects,
    host_key_from_secret,
};
use crate::build::hostkey::{encode_ed25519, generate_ed25519_seed};
use crate::build::{APP_DEVSERVER, labels};
use crate::controllers::{
    Context, DEVSERVER_MANAGER, Error, READY, devserver_status, report, undecodable,
};
use crate::crd::{
    DevServer, DevServerFlavor, DevServerFlavorSpec, DevServerPhase, DevServerSpec,
    DevServerStatus, DevServerUser, HomeDeletionPolicy, SshConnection,
};
use crate::validate;

/// Condition type: the flavor is known and usable.
pub const FLAVOR_RESOLVED: &str = "FlavorResolved";
/// Condition type: the time to live runs out soon (a Warning event goes
/// with it).
pub const EXPIRING: &str = "Expiring";
/// Stop reason: `running: false`.
pub const STOP_REQUESTED: &str = "Requested";
/// Stop reason: the time to live ran out.
pub const STOP_EXPIRED: &str = "Expired";
/// Stop reason: no SSH session for `idleTimeout`.
pub const STOP_IDLE: &str = "Idle";
/// Condition type: no SSH session lately; the server stops soon (a Warning
/// event goes with it).
pub const IDLE_SOON: &str = "IdleSoon";

/// Why no flavor can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlavorProblem {
    pub reason: &'static str,
    pub message: String,
}

/// Picks the flavor: `spec.flavor` by name, else the one default flavor.
/// Two or more defaults are a problem, never a silent pick.
pub fn resolve_flavor(
    requested: Option<&str>,
    flavors: &[DevServerFlavor],
) -> Result<DevServerFlavor, FlavorProblem> {
    let found = match requested {
        Some(name) => flavors
            .iter()
            .find(|f| f.metadata.name.as_deref() == Some(name))
            .cloned()
            .ok_or_else(|| FlavorProblem {
                reason: "FlavorNotFound",
                message: format!("DevServerFlavor {name:?} does not exist (waiting for it)."),
            })?,
        None => {
            let mut defaults: Vec<_> = flavors.iter().filter(|f| f.spec.default).collect();
            defaults.sort_by_key(|f| f.name_any());
            match defaults.as_slice() {
                [] => {
                    return Err(FlavorProblem {
                        reason: "NoDefaultFlavor",
                        message: "spec.flavor is not set and no DevServerFlavor is marked default."
                            .into(),
                    });
                }
                [one] => (*one).clone(),
                many => {
                    let names: Vec<_> = many.iter().map(|f| f.name_any()).collect();
                    return Err(FlavorProblem {
                        reason: "MultipleDefaultFlavors",
                        message: format!(
                            "spec.flavor is not set and {} flavors are marked default ({}); set spec.flavor or keep one default.",
                            names.len(),
                            names.join(", ")
                        ),
                    });
                }
            }
        }
    };
    if let Err(e) = validate::flavor(&found.spec) {
        return Err(FlavorProblem {
            reason: "InvalidFlavor",
            message: format!("DevServerFlavor {:?} is invalid: {e}", found.name_any()),
        });
    }
    Ok(found)
}

/// When the time to live runs out: creation + `timeToLive`.
pub fn expires_at(spec: &DevServerSpec, created: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let ttl = spec.lifecycle.as_ref()?.time_to_live.as_deref()?;
    let d = operator_core::duration::parse_duration(ttl).ok()?;
    Some(created? + chrono::Duration::from_std(d).ok()?)
}

/// What the pods look like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSummary {
    pub total: usize,
    pub ready: usize,
    /// A reason a pod cannot start (e.g. unschedulable), if any.
    pub waiting: Option<String>,
}

/// The StatefulSet's current revision once its controller has seen its
/// latest spec; `None` while a change is not yet observed.
pub fn update_revision(sts: &StatefulSet) -> Option<String> {
    let status = sts.status.as_ref()?;
    (status.observed_generation? >= sts.metadata.generation?)
        .then(|| status.update_revision.clone())
        .flatten()
}

/// Label the StatefulSet controller puts on each pod: its revision.
const REVISION_LABEL: &str = "controller-revision-hash";

/// Counts the pods; only Ready pods of `revision` (the StatefulSet's
/// current one) count as ready, so a pod about to be replaced by a rollout
/// never makes the server Running.
pub fn summarize(pods: &[Pod], revision: Option<&str>) -> PodSummary {
    let mut s = PodSummary::default();
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        s.total += 1;
        let conds = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let current =
            revision.is_some() && p.labels().get(REVISION_LABEL).map(String::as_str) == revision;
        if current
            && conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            s.ready += 1;
        } else if s.waiting.is_none() {
            s.waiting = conds
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| {
                    format!(
                        "pod {} is not scheduled: {}",
                        p.name_any(),
                        c.message.clone().unwrap_or_default()
                    )
                })
                .or_else(|| (!current).then(|| "Rolling out a change to the pods.".to_string()));
        }
    }
    s
}

/// The phase from what should run and what the pods are.
pub fn derive_phase(
    run: bool,
    expired: bool,
    desired: usize,
    pods: &PodSummary,
    any_pod: bool,
) -> (DevServerPhase, String) {
    if !run {
        if any_pod {
            return (DevServerPhase::Stopping, "Stopping the pods.".into());
        }
        return if expired {
            (
                DevServerPhase::Expired,
                "The time to live ran out; the server is stopped.".into(),
            )
        } else {
            (DevServerPhase::Stopped, "Stopped; the home is kept.".into())
        };
    }
    if pods.total == 0 {
        return (
            DevServerPhase::Pending,
            "Waiting for the pod to be created.".into(),
        );
    }
    if pods.ready >= desired && desired > 0 {
        return (DevServerPhase::Running, "Ready for SSH.".into());
    }
    let msg = pods
        .waiting
        .clone()
        .unwrap_or_else(|| format!("{}/{desired} pods ready.", pods.ready));
    (DevServerPhase::Starting, msg)
}

fn kube_err(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<DevServer>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => return Ok(undecodable(&ctx, guard.as_ref(), invalid).await),
    };
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = (ctx.now)();
    let name = obj.name_any();
    let ns = obj.namespace().unwrap_or_default();
    let generation = obj.meta().generation;
    let api: Api<DevServer> = Api::namespaced(ctx.client.clone(), &ns);
    let verdict = validate::devserver(&obj.spec);
    let mut status = devserver_status(obj.status.as_ref(), generation, &verdict, now);
    if verdict.is_err() {
        let wrote = write_status(&api, obj, &status).await?;
        report(&ctx, obj, wrote, &verdict).await;
        return Ok(Action::await_change());
    }

    let created = obj.meta().creation_timestamp.as_ref().map(from_k8s_time);
    let expires = expires_at(&obj.spec, created);
    let expired = expires.is_some_and(|e| e <= now);
    let run = obj.spec.running && !expired;
    let names = Names::of(&name);

    // The flavor.
    let flavors: Api<DevServerFlavor> = Api::all(ctx.client.clone());
    let flavor = match obj.spec.flavor.as_deref() {
        Some(n) => flavors
            .get_opt(n)
            .await
            .map_err(kube_err("reading the flavor"))?
            .into_iter()
            .collect::<Vec<_>>(),
        None => {
            flavors
                .list(&ListParams::default())
                .await
                .map_err(kube_err("listing flavors"))?
                .items
        }
    };
    let flavor = resolve_flavor(obj.spec.flavor.as_deref(), &flavor);
    let flavor_update = match &flavor {
        Ok(f) => ConditionUpdate::true_(
            FLAVOR_RESOLVED,
            "Resolved",
            format!("Using DevServerFlavor {}.", f.name_any()),
        ),
        Err(p) => ConditionUpdate::false_(FLAVOR_RESOLVED, p.reason, p.message.clone()),
    };
    let had = find(&status.conditions, FLAVOR_RESOLVED).cloned();
    set_condition(
        &mut status.conditions,
        flavor_update.observed_generation(generation),
        now,
    );
    let flavor_problem_is_new = match (&flavor, had) {
        (Err(p), Some(c)) => c.reason != p.reason || c.message != p.message,
        (Err(_), None) => true,
        _ => false,
    };

    // Stopping (requested or expired): say so before the pods go, so the
    // status never claims Running while they are being removed.
    let old_phase = obj.status.as_ref().and_then(|s| s.phase);
    if !run
        && matches!(
            old_phase,
            Some(DevServerPhase::Running | DevServerPhase::Starting)
        )
    {
        let mut interim = status.clone();
        interim.phase = Some(DevServerPhase::Stopping);
        interim.message = Some("Stopping the pods.".into());
        interim.stop_reason = Some(stop_reason(expired, obj.status.as_ref()).into());
        set_condition(
            &mut interim.conditions,
            ConditionUpdate::false_(READY, "Stopping", "Stopping the pods.")
                .observed_generation(generation),
            now,
        );
        write_status(&api, obj, &interim).await?;
    }

    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let current_sts = sts_api
        .get_opt(&names.stateful_set)
        .await
        .map_err(kube_err("reading the StatefulSet"))?;
    let mut sts_exists = current_sts.is_some();
    let mut revision = current_sts.as_ref().and_then(update_revision);
    let mut ssh_node_port = None;
    // The host key's public half, for clients to pin (users may read the
    // DevServer's status but not its Secrets).
    let mut host_public_key = obj
        .status
        .as_ref()
        .and_then(|s| s.ssh.as_ref())
        .and_then(|s| s.host_public_key.clone());
    if let Ok(f) = &flavor {
        status.flavor = Some(f.name_any());
        let objs = build(&ctx, obj, &ns, &f.spec, run).await?;
        host_public_key = host_key_from_secret(&objs.host_keys).map(|k| k.public_line);
        // A new pod template replaces the pods: say so before they go, so
        // the status never claims Running for a pod being replaced.
        let hash = |s: &StatefulSet| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TEMPLATE_HASH).cloned())
        };
        if run
            && old_phase == Some(DevServerPhase::Running)
            && current_sts
                .as_ref()
                .is_some_and(|c| hash(c) != hash(&objs.stateful_set))
        {
            let mut interim = status.clone();
            interim.phase = Some(DevServerPhase::Starting);
            interim.message = Some("Rolling out a change to the pods.".into());
            set_condition(
                &mut interim.conditions,
                ConditionUpdate::false_(READY, "Starting", "Rolling out a change to the pods.")
                    .observed_generation(generation),
                now,
            );
            write_status(&api, obj, &interim).await?;
        }
        let (ssh, sts) = apply(&ctx, obj, objs).await?;
        sts_exists = sts.is_some();
        revision = sts.as_ref().and_then(update_revision);
        ssh_node_port = ssh
            .spec
            .and_then(|s| s.ports)
            .and_then(|p| p.first().and_then(|p| p.node_port));
    }

    // The pods, as they really are.
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = labels(APP_DEVSERVER, &name, "server")
        .selector()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pod_list = if sts_exists {
        pods.list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err("listing pods"))?
            .items
    } else {
        Vec::new()
    };
    let summary = summarize(&pod_list, revision.as_deref());
    let desired = match obj.spec.mode {
        crate::crd::DevServerMode::Distributed => obj
            .spec
            .distributed
            .as_ref()
            .map_or(1, |d| d.world_size.max(1) as usize),
        crate::crd::DevServerMode::Standalone => 1,
    };
    let (mut phase, mut message) =
        derive_phase(run, expired, desired, &summary, !pod_list.is_empty());
    if let (Err(p), DevServerPhase::Pending) = (&flavor, phase) {
        message = p.message.clone();
    }
    if phase == DevServerPhase::Pending && !run {
        phase = DevServerPhase::Stopped;
    }
    status.phase = Some(phase);
    status.message = Some(message.clone());
    status.stop_reason = (!run).then(|| stop_reason(expired, obj.status.as_ref()).into());
    status.expires_at = expires.map(to_k8s_time);
    status.ssh = Some(SshConnection {
        service: Some(names.ssh_service.clone()),
        port: Some(SSH_PORT),
        node_port: ssh_node_port,
        command: Some(format!("devctl ssh {name} -n {ns}")),
        host_public_key,
    });
    // A warning condition (and event) shortly before expiry.
    let expiring = run && is_expiring(expires, created, now);
    let was_expiring = find(&status.conditions, EXPIRING).is_some_and(|c| c.status == "True");
    if expires.is_some() {
        set_condition(
            &mut status.conditions,
            if expiring {
                ConditionUpdate::true_(EXPIRING, "ExpiringSoon", "The time to live runs out soon.")
            } else if expired {
                ConditionUpdate::false_(EXPIRING, "Expired", "The time to live ran out.")
            } else {
                ConditionUpdate::false_(EXPIRING, "NotYet", "The time to live has not run out.")
            }
            .observed_generation(generation),
            now,
        );
    } else {
        operator_core::conditions::remove_condition(&mut status.conditions, EXPIRING);
    }
    let ready = phase == DevServerPhase::Running;
    set_condition(
        &mut status.conditions,
        if ready {
            ConditionUpdate::true_(READY, "Running", message)
        } else {
            ConditionUpdate::false_(READY, phase.to_string(), message)
        }
        .observed_generation(generation),
        now,
    );

    // Idle: the clock starts when the server becomes Running; at the
    // warning time and at the deadline the pod is asked once for sessions.
    let idle = if run && phase == DevServerPhase::Running {
        idle_timeout(&obj.spec)
    } else {
        None
    };
    if phase != DevServerPhase::Running || idle.is_none() {
        operator_core::conditions::remove_condition(&mut status.conditions, IDLE_SOON);
    }
    if phase == DevServerPhase::Running && old_phase != Some(DevServerPhase::Running) {
        status.last_activity = Some(to_k8s_time(now));
    }
    let mut idle_wakeup = None;
    let mut idle_soon_new = false;
    if let Some(timeout) = idle {
        let last = status
            .last_activity
            .as_ref()
            .map(from_k8s_time)
            .unwrap_or(now);
        let (warn_at, _) = idle_times(last, timeout);
        if now >= warn_at {
            match sessions(&ctx, &ns, &format!("{}-0", names.stateful_set)).await {
                Ok(n) if n > 0 => {
                    status.last_activity = Some(to_k8s_time(now));
                    operator_core::conditions::remove_condition(&mut status.conditions, IDLE_SOON);
                    idle_wakeup = Some(idle_times(now, timeout).0);
                }
                Ok(_) if now >= idle_times(last, timeout).1 => {
                    return stop_idle(&ctx, &api, obj, status, timeout, now).await;
                }
                Ok(_) => {
                    idle_soon_new =
                        find(&status.conditions, IDLE_SOON).is_none_or(|c| c.status != "True");
                    set_condition(
                        &mut status.conditions,
                        ConditionUpdate::true_(
                            IDLE_SOON,
                            "NoSession",
                            "No SSH session is active; the server stops at its idle deadline.",
                        )
                        .observed_generation(generation),
                        now,
                    );
                    idle_wakeup = Some(idle_times(last, timeout).1);
                }
                Err(e) => {
                    // Unknown is not idle: keep running and ask again later.
                    tracing::warn!(%ns, %name, error = %e, "idle check failed");
                    idle_wakeup = Some(now + IDLE_CHECK_RETRY);
                }
            }
        } else {
            idle_wakeup = Some(warn_at);
        }
    }

    write_status(&api, obj, &status).await?;
    if idle_soon_new {
        let deadline = status
            .last_activity
            .as_ref()
            .zip(idle)
            .map(|(l, t)| idle_times(from_k8s_time(l), t).1.to_rfc3339())
            .unwrap_or_default();
        ctx.events
            .warning(
                obj,
                "IdleSoon",
                "IdleStop",
                format!(
                    "No SSH session is active; the server stops at {deadline} unless one starts (the home is kept)."
                ),
            )
            .await;
    }
    if let Err(p) = &flavor
        && flavor_problem_is_new
    {
        ctx.events
            .warning(obj, p.reason, "ResolveFlavor", p.message.clone())
            .await;
    }
    if old_phase != Some(phase) {
        if phase == DevServerPhase::Expired {
            ctx.metrics.expired();
        }
        // First Running (lastActivity is set from then on).
        if phase == DevServerPhase::Running
            && obj
                .status
                .as_ref()
                .and_then(|s| s.last_activity.as_ref())
                .is_none()
            && let Some(c) = created
        {
            ctx.metrics
                .running_after((now - c).num_milliseconds() as f64 / 1000.0);
        }
        match phase {
            DevServerPhase::Running => {
                ctx.events
                    .normal(obj, "Running", "Start", "The server is ready for SSH.")
                    .await
            }
            DevServerPhase::Stopped => {
                ctx.events
                    .normal(obj, "Stopped", "Stop", "The server is stopped.")
                    .await
            }
            DevServerPhase::Expired => {
                ctx.events
                    .warning(
                        obj,
                        "Expired",
                        "Expire",
                        "The time to live ran out; the server was stopped.",
                    )
                    .await
            }
            _ => {}
        }
    }

    if expiring && !was_expiring {
        ctx.events
            .warning(
                obj,
                "ExpiringSoon",
                "Expire",
                format!(
                    "The time to live runs out at {}; the server will be stopped (extend spec.lifecycle.timeToLive to keep it).",
                    expires.map(|e| e.to_rfc3339()).unwrap_or_default()
                ),
            )
            .await;
    }

    ctx.recount();
    // Wake up at the warning time, then exactly at expiry; and at the idle
    // check times.
    let wakeup = match (next_wakeup_at(expires, created, now), idle_wakeup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match wakeup {
        Some(at) => {
            let wait = (at - now).to_std().unwrap_or_default() + Duration::from_millis(200);
            Ok(Action::requeue(wait))
        }
        None => Ok(Action::await_change()),
    }
}

/// Why a server that should not run is stopped: expiry wins; an idle stop
/// stays recorded until the server is started again.
fn stop_reason(expired: bool, current: Option<&DevServerStatus>) -> &'static str {
    if expired {
        STOP_EXPIRED
    } else if current.and_then(|s| s.stop_reason.as_deref()) == Some(STOP_IDLE) {
        STOP_IDLE
    } else {
        STOP_REQUESTED
    }
}

/// How long to wait before asking again when the idle check fails.
const IDLE_CHECK_RETRY: chrono::Duration = chrono::Duration::seconds(60);

/// `lifecycle.idleTimeout`, if set.
pub fn idle_timeout(spec: &DevServerSpec) -> Option<chrono::Duration> {
    let t = spec.lifecycle.as_ref()?.idle_timeout.as_deref()?;
    chrono::Duration::from_std(operator_core::duration::parse_duration(t).ok()?).ok()
}

/// When to warn and when to stop for a server last active at `last`: the
/// warning a tenth of the timeout (at most 15 minutes) before the deadline.
pub fn idle_times(
    last: DateTime<Utc>,
    timeout: chrono::Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let deadline = last + timeout;
    let lead = (timeout / 10).min(chrono::Duration::minutes(15));
    (deadline - lead, deadline)
}

/// Asks the pod how many SSH sessions are established (see
/// [`crate::build::sshd::activity_command`]).
async fn sessions(ctx: &Context, ns: &str, pod: &str) -> Result<usize, String> {
    use tokio::io::AsyncReadExt;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let check = async {
        let mut attached = pods
            .exec(
                pod,
                crate::build::sshd::activity_command(&ctx.ssh),
                &kube::api::AttachParams::default()
                    .stdin(false)
                    .stdout(true)
                    .stderr(false),
            )
            .await
            .map_err(|e| format!("exec into {pod}: {e}"))?;
        let mut out = String::new();
        if let Some(mut stdout) = attached.stdout() {
            stdout
                .read_to_string(&mut out)
                .await
                .map_err(|e| format!("reading the idle check of {pod}: {e}"))?;
        }
        let _ = attached.join().await;
        Ok(crate::build::sshd::active_sessions(&out, ctx.ssh.port))
    };
    tokio::time::timeout(Duration::from_secs(20), check)
        .await
        .map_err(|_| format!("the idle check of {pod} timed out"))?
}

/// Stops an idle server: records the reason, then sets `running: false`
/// (so `devctl start` or `running: true` starts it again; the home stays).
async fn stop_idle(
    ctx: &Context,
    api: &Api<DevServer>,
    obj: &DevServer,
    mut status: DevServerStatus,
    timeout: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    status.phase = Some(DevServerPhase::Stopping);
    status.stop_reason = Some(STOP_IDLE.into());
    status.message = Some("No SSH session for the idle timeout; stopping.".into());
    operator_core::conditions::remove_condition(&mut status.conditions, IDLE_SOON);
    set_condition(
        &mut status.conditions,
        ConditionUpdate::false_(READY, "Stopping", "Stopping the pods (idle).")
            .observed_generation(obj.meta().generation),
        now,
    );
    write_status(api, obj, &status).await?;
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"running": false}})),
    )
    .await
    .map_err(kube_err("stopping the idle server"))?;
    ctx.metrics.idle_stopped();
    ctx.recount();
    ctx.events
        .warning(
            obj,
            "IdleStopped",
            "IdleStop",
            format!(
                "No SSH session for {}s; the server was stopped (the home is kept; set running: true to start it).",
                timeout.num_seconds()
            ),
        )
        .await;
    Ok(Action::await_change())
}

/// How long before expiry the `ExpiringSoon` warning comes: a tenth of the
/// time to live, at most 15 minutes.
pub fn warning_lead(expires: DateTime<Utc>, created: Option<DateTime<Utc>>) -> chrono::Duration {
    let ttl = created.map_or(chrono::Duration::zero(), |c| expires - c);
    (ttl / 10).min(chrono::Duration::minutes(15))
}

/// Whether `now` is inside the warning window before `expires`.
pub fn is_expiring(
    expires: Option<DateTime<Utc>>,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    expires.is_some_and(|e| now < e && now >= e - warning_lead(e, created))
}

/// The next time the reconcile must run on its own: the warning time, then
/// the expiry; none once expired.
pub fn next_wakeup_at(
    expires: Option<DateTime<Utc>>,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let e = expires.filter(|e| *e > now)?;
    let warn = e - warning_lead(e, created);
    Some(if warn > now { warn } else { e })
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

async fn write_status(
    api: &Api<DevServer>,
    obj: &DevServer,
    status: &DevServerStatus,
) -> Result<bool, Error> {
    operator_core::status::apply_status(api, obj, DEVSERVER_MANAGER, status)
        .await
        .map_err(|source| Error::Status {
            kind: "DevServer",
            name: obj.name_any(),
            source,
        })
}

/// Observes the host key and the owner's keys, then builds.
async fn build(
    ctx: &Context,
    obj: &DevServer,
    ns: &str,
    flavor: &DevServerFlavorSpec,
    run: bool,
) -> Result<DevServerObjects, Error> {
    let name = obj.name_any();
    let names = Names::of(&name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    // Generated once, then read back: clients can pin the host key.
    let host_key = secrets
        .get_opt(&names.host_keys)
        .await
        .map_err(kube_err("reading the host keys"))?
        .as_ref()
        .and_then(host_key_from_secret)
        .unwrap_or_else(|| encode_ed25519(&generate_ed25519_seed(), &format!("{name}.{ns}")));
    let mut authorized = obj
        .spec
        .ssh
        .as_ref()
        .and_then(|s| s.public_key.clone())
        .filter(|k| !k.trim().is_empty())
        .unwrap_or_default();
    if authorized.is_empty()
        && let Some(owner) = &obj.spec.owner
    {
        let users: Api<DevServerUser> = Api::all(ctx.client.clone());
        // A DevServerUser named like the owner (names that are not DNS
        // names, such as e-mail addresses, have none).
        if crate::validate::is_dns_subdomain(owner)
            && let Some(u) = users
                .get_opt(owner)
                .await
                .map_err(kube_err("reading the owner's DevServerUser"))?
        {
            authorized = u.spec.ssh_public_keys.unwrap_or_default().join("\n");
        }
    }
    if !authorized.is_empty() && !authorized.ends_with('\n') {
        authorized.push('\n');
    }
    Ok(devserver_objects(&Inputs {
        name: &name,
        namespace: ns,
        spec: &obj.spec,
        flavor,
        host_key: &host_key,
        authorized_keys: &authorized,
        images: &ctx.images,
        layout: &ctx.ssh,
        run,
    }))
}

/// Applies the children and prunes Services no longer built. Returns the
/// applied SSH Service and StatefulSet (none while it is being replaced).
async fn apply(
    ctx: &Context,
    obj: &DevServer,
    o: DevServerObjects,
) -> Result<(Service, Option<StatefulSet>), Error> {
    let applier = Applier::new(ctx.client.clone(), DEVSERVER_MANAGER, obj)?;
    applier.apply(o.host_keys).await?;
    applier.apply(o.ssh_config).await?;
    if let Some(home) = o.home {
        match obj.spec.home_deletion_policy {
            HomeDeletionPolicy::Delete => {
                applier.apply(home).await?;
            }
            // Not owned, so deleting the DevServer keeps it; the same field
            // manager, so switching from Delete drops the owner reference.
            HomeDeletionPolicy::Retain => {
                let ns = home.namespace().unwrap_or_default();
                let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
                pvcs.patch(
                    &home.name_any(),
                    &PatchParams::apply(DEVSERVER_MANAGER).force(),
                    &Patch::Apply(&home),
                )
                .await
                .map_err(kube_err("applying the home claim"))?;
            }
        }
    }
    let sts = apply_stateful_set(ctx, &applier, o.stateful_set).await?;
    let mut keep = BTreeSet::new();
    keep.insert(o.ssh_service.name_any());
    let ssh = applier.apply(o.ssh_service).await?;
    if let Some(h) = o.headless_service {
        keep.insert(h.name_any());
        applier.apply(h).await?;
    }
    let ns = obj.namespace().unwrap_or_default();
    applier.prune::<Service>(&ns, &keep).await?;
    Ok((ssh, sts))
}

/// Applies the StatefulSet; when an edit touches a field the API server
/// does not let change (the headless Service name when switching modes, the
/// claim templates), replaces it. Homes survive: standalone homes are
/// separate claims and claim templates are retained.
async fn apply_stateful_set(
    ctx: &Context,
    applier: &Applier,
    sts: StatefulSet,
) -> Result<Option<StatefulSet>, Error> {
    match applier.apply(sts.clone()).await {
        Ok(applied) => Ok(Some(applied)),
        Err(ApplyError::Apply {
            source: kube::Error::Api(e),
            ..
        }) if e.code == 422 && e.message.contains("Forbidden") => {
            let name = sts.name_any();
            let ns = sts.namespace().unwrap_or_default();
            tracing::info!(%ns, %name, reason = %e.message, "replacing the StatefulSet");
            let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
            api.delete(&name, &DeleteParams::foreground())
                .await
                .map_err(kube_err("replacing the StatefulSet"))?;
            // Applied again once it is gone (its deletion wakes us up).
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn flavor(name: &str, default: bool) -> DevServerFlavor {
        let mut f: DevServerFlavor = serde_yaml::from_str(&format!(
            "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata: {{name: {name}}}\nspec: {{default: {default}}}\n"
        ))
        .unwrap();
        f.metadata.name = Some(name.into());
        f
    }

    #[test]
    fn flavors_resolve_by_name_or_the_single_default() {
        let fs = [flavor("a", false), flavor("b", true)];
        assert_eq!(resolve_flavor(Some("a"), &fs).unwrap().name_any(), "a");
        assert_eq!(resolve_flavor(None, &fs).unwrap().name_any(), "b");
        assert_eq!(
            resolve_flavor(Some("zzz"), &fs).unwrap_err().reason,
            "FlavorNotFound"
        );
        assert_eq!(
            resolve_flavor(None, &[flavor("a", false)])
                .unwrap_err()
                .reason,
            "NoDefaultFlavor"
        );
        let two = [flavor("b", true), flavor("a", true)];
        let e = resolve_flavor(None, &two).unwrap_err();
        assert_eq!(e.reason, "MultipleDefaultFlavors");
        assert!(e.message.contains("a, b"), "{}", e.message);
        // Naming a flavor sidesteps the conflict.
        assert_eq!(resolve_flavor(Some("a"), &two).unwrap().name_any(), "a");
    }

    #[test]
    fn expiry_counts_from_creation() {
        let spec: DevServerSpec = serde_yaml::from_str("lifecycle: {timeToLive: 2h30m}").unwrap();
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            expires_at(&spec, Some(t0)),
            Some(Utc.with_ymd_and_hms(2025, 1, 1, 2, 30, 0).unwrap())
        );
        let none: DevServerSpec = serde_yaml::from_str("{}").unwrap();
        assert_eq!(expires_at(&none, Some(t0)), None);
    }

    #[test]
    fn the_warning_comes_before_expiry_and_then_the_expiry_wakes_up() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let e = t0 + chrono::Duration::hours(2);
        let at = |m: i64| t0 + chrono::Duration::minutes(m);
        assert_eq!(warning_lead(e, Some(t0)), chrono::Duration::minutes(12));
        assert_eq!(next_wakeup_at(Some(e), Some(t0), t0), Some(at(108)));
        assert!(!is_expiring(Some(e), Some(t0), at(107)));
        assert!(is_expiring(Some(e), Some(t0), at(108)));
        assert_eq!(next_wakeup_at(Some(e), Some(t0), at(110)), Some(e));
        assert!(!is_expiring(Some(e), Some(t0), e));
        assert_eq!(next_wakeup_at(Some(e), Some(t0), e), None);
        assert_eq!(next_wakeup_at(None, Some(t0), t0), None);
        // A long time to live warns 15 minutes ahead.
        let week = t0 + chrono::Duration::days(7);
        assert_eq!(warning_lead(week, Some(t0)), chrono::Duration::minutes(15));
    }

    fn pod(ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"controller-revision-hash": "r2"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn running_only_when_every_pod_is_ready() {
        let p = |pods: &[Pod]| summarize(pods, Some("r2"));
        assert_eq!(
            derive_phase(true, false, 1, &p(&[]), false).0,
            DevServerPhase::Pending
        );
        assert_eq!(
            derive_phase(true, false, 1, &p(&[pod(false)]), true).0,
            DevServerPhase::Starting
        );
        assert_eq!(
            derive_phase(true, false, 1, &p(&[pod(true)]), true).0,
            DevServerPhase::Running
        );
        // A ready pod of an older revision, or before the StatefulSet
        // controller saw the change, is being replaced: Starting.
        for rev in [Some("r3"), None] {
            let s = summarize(&[pod(true)], rev);
            assert_eq!(s.ready, 0);
            let (phase, msg) = derive_phase(true, false, 1, &s, true);
            assert_eq!(phase, DevServerPhase::Starting);
            assert!(msg.contains("Rolling out"), "{msg}");
        }
        assert_eq!(
            derive_phase(true, false, 2, &p(&[pod(true)]), true).0,
            DevServerPhase::Starting
        );
        assert_eq!(
            derive_phase(false, false, 1, &p(&[pod(true)]), true).0,
            DevServerPhase::Stopping
        );
        assert_eq!(
            derive_phase(false, false, 1, &p(&[]), false).0,
            DevServerPhase::Stopped
        );
        assert_eq!(
            derive_phase(false, true, 1, &p(&[]), false).0,
            DevServerPhase::Expired
        );
    }
}
