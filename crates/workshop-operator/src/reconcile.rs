//! The Workshop reconciler: observe -> validate -> build -> apply -> prune -> status.
//!
//! Timed behaviour (pre-warm before `startTime`, the expiry warning, expiry, removal after the
//! retention) comes from [`Timeline`], computed from the spec and the creation time, and is
//! driven by `Action::requeue` at the next instant that matters: no polling loop.
//!
//! Lifecycle:
//! - **Scheduled** (before `startTime - prewarm`): credentials and homes exist, no sessions;
//!   phase Pending.
//! - **Active**: every participant has a session; phase Creating until every participant's pod is
//!   Ready, then Ready (Running once `startTime` has passed). A Warning event `ExpiringSoon`
//!   `expiryWarning` before the end.
//! - **Expired** (after `expiresAt`): sessions (Deployments, Services, Ingress, path proxy
//!   configuration) removed; the
//!   credentials and home volumes are kept for `retention.afterExpiry`; phase Expired.
//! - **Removed** (after `expiresAt + retention.afterExpiry`): the operator deletes the Workshop,
//!   and garbage collection everything it owns.
//!
//! A participant removed from the spec loses their session but keeps their home volume and
//! credentials (their work is only deleted with the Workshop).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::apply::{Applier, ApplyError, OWNER_UID_LABEL};
use operator_core::conditions::{
    ConditionUpdate, DEGRADED, PROGRESSING, READY, find, from_k8s_time, set_condition, to_k8s_time,
};
use operator_core::controller::{ReconcileError, kube_error_reason};
use operator_core::status::apply_status;
use rand::Rng;

use crate::build::{self, Inputs, Names, PASSWORD_KEY};
use crate::controllers::{ACCEPTED, Context, FIELD_MANAGER};
use crate::crd::{ParticipantStatus, Workshop, WorkshopPhase, WorkshopStatus};
use crate::validate::{self, ValidWorkshop};

/// Condition: the workshop expires within `spec.expiryWarning`.
pub const EXPIRING_SOON: &str = "ExpiringSoon";
/// Length of generated passwords (alphanumeric: about 119 bits).
pub const PASSWORD_LEN: usize = 20;

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("object has no namespace")]
    MissingNamespace,
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube(e) => kube_error_reason(e),
            Error::Apply(e) => e.reason(),
            Error::MissingNamespace => "MissingNamespace",
        }
    }
}

/// The instants of a workshop's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// `metadata.creationTimestamp`.
    pub created: DateTime<Utc>,
    /// `spec.startTime`, or the creation.
    pub start: DateTime<Utc>,
    /// When the sessions are created: `start - prewarm` with a startTime, else the creation.
    pub provision_at: DateTime<Utc>,
    /// When the expiry warning is due (`None`: no warning).
    pub warn_at: Option<DateTime<Utc>>,
    /// `start + duration + granted extensions`.
    pub expires_at: DateTime<Utc>,
    /// `expires_at + retention.afterExpiry`: the Workshop is deleted.
    pub remove_at: DateTime<Utc>,
}

/// Where a workshop is in its life at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Scheduled,
    Active { expiring_soon: bool },
    Expired,
    Removed,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Timeline {
    /// The timeline of `ws`, created at `created`.
    pub fn new(ws: &Workshop, valid: &ValidWorkshop, created: DateTime<Utc>) -> Self {
        let start_time = ws.spec.start_time.as_ref().map(from_k8s_time);
        let start = start_time.unwrap_or(created);
        let provision_at = match start_time {
            Some(s) => (s - delta(valid.prewarm)).min(s),
            None => created,
        };
        let expires_at = start + delta(valid.granted_duration(ws.spec.extension.granted));
        let warn_at =
            (!valid.expiry_warning.is_zero()).then(|| expires_at - delta(valid.expiry_warning));
        Timeline {
            created,
            start,
            provision_at,
            warn_at,
            expires_at,
            remove_at: expires_at + delta(valid.retention),
        }
    }

    pub fn stage(&self, now: DateTime<Utc>) -> Stage {
        if now >= self.remove_at && now >= self.expires_at {
            Stage::Removed
        } else if now >= self.expires_at {
            Stage::Expired
        } else if now < self.provision_at {
            Stage::Scheduled
        } else {
            Stage::Active {
                expiring_soon: self.warn_at.is_some_and(|w| now >= w),
            }
        }
    }

    /// The next instant after `now` at which the stage (or the Ready/Running split at `start`)
    /// changes.
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [
            Some(self.provision_at),
            Some(self.start),
            self.warn_at,
            Some(self.expires_at),
            Some(self.remove_at),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
    }

    /// How long to wait for [`next_change`](Self::next_change) (slightly after it, so the
    /// next reconcile sees the new stage).
    pub fn requeue_after(&self, now: DateTime<Utc>) -> Option<Duration> {
        let next = self.next_change(now)?;
        let wait = (next - now).to_std().unwrap_or_default();
        Some(wait + Duration::from_millis(200))
    }
}

/// What the reconciler saw of the children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Participant ids whose session Deployment has a Ready, up-to-date pod.
    pub ready: BTreeSet<String>,
    /// Home volumes the API server refused to update (e.g. a resize the StorageClass does not
    /// allow), with its message: reported as the Degraded condition, not retried in a loop.
    pub volume_problems: Vec<String>,
}

/// Progressing reasons once every session has been ready at least once: later Creating
/// phases (a participant added, an image rolled out) are updates, not the first provisioning.
const PROVISIONED_REASONS: [&str; 2] = ["Provisioned", "Updating"];

/// Whether `status` says every session has been ready at least once.
pub fn was_provisioned(status: Option<&WorkshopStatus>) -> bool {
    status
        .and_then(|s| find(&s.conditions, PROGRESSING))
        .is_some_and(|c| PROVISIONED_REASONS.contains(&c.reason.as_str()))
}

/// Whether a Deployment (as returned by the API server) has an up-to-date Ready pod.
pub fn deployment_ready(d: &Deployment) -> bool {
    let Some(status) = &d.status else {
        return false;
    };
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= 1
        && status.ready_replicas.unwrap_or(0) >= 1
}

/// The status for `stage` (pure). `previous` keeps condition transition times.
pub fn desired_status(
    ws: &Workshop,
    valid: &ValidWorkshop,
    timeline: &Timeline,
    stage: Stage,
    observed: &Observed,
    now: DateTime<Utc>,
) -> WorkshopStatus {
    let generation = ws.meta().generation;
    let mut status = ws.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let spec = &ws.spec;
    let sessions = matches!(stage, Stage::Active { .. });
    status.participants = valid
        .participants
        .iter()
        .map(|p| ParticipantStatus {
            id: p.id.clone(),
            url: build::participant_url(spec, &p.id),
            ready: sessions && observed.ready.contains(&p.id),
            credentials_secret: Some(Names::of(ws).secret(&p.id)),
        })
        .collect();
    let total = valid.participants.len() as i32;
    let ready = status.participants.iter().filter(|p| p.ready).count() as i32;
    status.ready_participants = Some(ready);
    status.total_participants = Some(total);
    status.ready = Some(format!("{ready}/{total}"));
    status.url = build::workshop_url(spec, &valid.participants);
    status.created_at = Some(to_k8s_time(timeline.created));
    status.expires_at = Some(to_k8s_time(timeline.expires_at));

    let expires = timeline
        .expires_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (phase, ready_cond, progressing) = match stage {
        Stage::Scheduled => (
            WorkshopPhase::Pending,
            ConditionUpdate::false_(
                READY,
                "Scheduled",
                format!(
                    "The sessions are created at {}",
                    timeline
                        .provision_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ),
            ConditionUpdate::false_(PROGRESSING, "Scheduled", "Waiting for the pre-warm time"),
        ),
        Stage::Active { .. } if ready == total => (
            if spec.start_time.is_some() && now >= timeline.start {
                WorkshopPhase::Running
            } else {
                WorkshopPhase::Ready
            },
            ConditionUpdate::true_(
                READY,
                "AllParticipantsReady",
                format!("{ready}/{total} sessions ready"),
            ),
            ConditionUpdate::false_(PROGRESSING, "Provisioned", "Every session is ready"),
        ),
        Stage::Active { .. } => (
            WorkshopPhase::Creating,
            ConditionUpdate::false_(
                READY,
                "ParticipantsNotReady",
                format!("{ready}/{total} sessions ready"),
            ),
            ConditionUpdate::true_(
                PROGRESSING,
                if was_provisioned(ws.status.as_ref()) {
                    "Updating"
                } else {
                    "Provisioning"
                },
                format!("{ready}/{total} sessions ready"),
            ),
        ),
        Stage::Expired | Stage::Removed => (
            WorkshopPhase::Expired,
            ConditionUpdate::false_(
                READY,
                "Expired",
                format!(
                    "The sessions stopped at {expires}; home volumes are kept until {}",
                    timeline
                        .remove_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ),
            ConditionUpdate::false_(PROGRESSING, "Expired", "The workshop has expired"),
        ),
    };
    status.phase = Some(phase);
    let degraded = if observed.volume_problems.is_empty() {
        ConditionUpdate::false_(DEGRADED, "AsExpected", "Every home volume is as specified")
    } else {
        ConditionUpdate::true_(
            DEGRADED,
            "HomeVolumeNotUpdated",
            observed.volume_problems.join("; "),
        )
    };
    for c in [
        ConditionUpdate::true_(ACCEPTED, "Valid", "The spec is valid"),
        ready_cond,
        progressing,
        degraded,
    ] {
        set_condition(
            &mut status.conditions,
            c.observed_generation(generation),
            now,
        );
    }
    if let Stage::Active {
        expiring_soon: true,
    } = stage
    {
        set_condition(
            &mut status.conditions,
            ConditionUpdate::true_(
                EXPIRING_SOON,
                "ExpiresSoon",
                format!("The sessions stop at {expires}"),
            )
            .observed_generation(generation),
            now,
        );
    } else {
        operator_core::conditions::remove_condition(&mut status.conditions, EXPIRING_SOON);
    }
    status
}

/// A new random password (alphanumeric).
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Reconciles one Workshop.
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
    let now = Utc::now();
    if ws.meta().deletion_timestamp.is_some() {
        // Garbage collection removes the children; the phase says so while it does (the
        // Workshop stays visible while finalizers, e.g. foreground deletion, hold it).
        return terminating(ws, &api, &ctx, now).await;
    }

    // Validate.
    let valid = match validate::validate(ws) {
        Ok(v) => v,
        Err(e) => return invalid(ws, &api, &ctx, &e, now).await,
    };
    let created = ws
        .meta()
        .creation_timestamp
        .as_ref()
        .map(from_k8s_time)
        .unwrap_or(now);
    let timeline = Timeline::new(ws, &valid, created);
    let stage = timeline.stage(now);
    if stage == Stage::Removed {
        ctx.events
            .normal(
                ws,
                "Removed",
                "Delete",
                "The retention period after expiry is over: removing the workshop and its volumes",
            )
            .await;
        match api
            .delete(&ws.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }

    // Observe: the participants' existing passwords.
    let applier = Applier::new(ctx.client.clone(), FIELD_MANAGER, ws)?;
    let selector = format!("{OWNER_UID_LABEL}={}", applier.owner_uid());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let names = Names::of(ws);
    let existing: BTreeMap<String, String> = secrets
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter_map(|s| {
            let pw = s.data.as_ref()?.get(PASSWORD_KEY)?;
            Some((s.name_any(), String::from_utf8(pw.0.clone()).ok()?))
        })
        .collect();
    let passwords: BTreeMap<String, String> = valid
        .participants
        .iter()
        .map(|p| {
            let pw = existing
                .get(&names.secret(&p.id))
                .filter(|pw| !pw.is_empty())
                .cloned()
                .unwrap_or_else(generate_password);
            (p.id.clone(), pw)
        })
        .collect();

    // Build.
    let desired = build::desired(&Inputs {
        workshop: ws,
        valid: &valid,
        passwords: &passwords,
        sessions: matches!(stage, Stage::Active { .. }),
    });

    // Apply (Secrets and volumes first: the sessions need them).
    for s in desired.secrets {
        applier.apply(s).await?;
    }
    let mut observed = Observed::default();
    for pvc in desired.pvcs {
        let name = pvc.name_any();
        match applier.apply(pvc).await {
            Ok(_) => {}
            // Refused by the API server (a resize the StorageClass does not support, a quota):
            // retrying cannot help until something changes, so report it in the status.
            Err(ApplyError::Apply {
                source: kube::Error::Api(e),
                ..
            }) if matches!(e.code, 403 | 422) => {
                observed
                    .volume_problems
                    .push(format!("{name}: {}", e.message));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut keep_config_maps = BTreeSet::new();
    for c in desired.config_maps {
        keep_config_maps.insert(c.name_any());
        applier.apply(c).await?;
    }
    let mut keep_deployments = BTreeSet::new();
    for d in desired.deployments {
        keep_deployments.insert(d.name_any());
        let participant = d
            .labels()
            .get(build::PARTICIPANT_LABEL)
            .cloned()
            .unwrap_or_default();
        let applied = applier.apply(d).await?;
        if deployment_ready(&applied) {
            observed.ready.insert(participant);
        }
    }
    let mut keep_services = BTreeSet::new();
    for s in desired.services {
        keep_services.insert(s.name_any());
        applier.apply(s).await?;
    }
    let mut keep_ingresses = BTreeSet::new();
    if let Some(i) = desired.ingress {
        keep_ingresses.insert(i.name_any());
        applier.apply(i).await?;
    }

    // Prune sessions that are no longer wanted. Secrets and volumes are never pruned: they go
    // with the Workshop.
    let mut removed = applier.prune::<Deployment>(&ns, &keep_deployments).await?;
    removed.extend(applier.prune::<Service>(&ns, &keep_services).await?);
    removed.extend(applier.prune::<Ingress>(&ns, &keep_ingresses).await?);
    removed.extend(applier.prune::<ConfigMap>(&ns, &keep_config_maps).await?);
    if !removed.is_empty() {
        tracing::info!(workshop = %ws.name_any(), namespace = %ns, ?removed, "removed sessions");
        if matches!(stage, Stage::Active { .. }) {
            ctx.events
                .normal(
                    ws,
                    "SessionsRemoved",
                    "Scale",
                    format!(
                        "Removed {} (home volumes and credentials are kept)",
                        removed.join(", ")
                    ),
                )
                .await;
        }
    }

    // Status.
    let status = desired_status(ws, &valid, &timeline, stage, &observed, now);
    let before = ws.status.as_ref();
    let old_phase = before.and_then(|s| s.phase);
    let was_expiring = before.is_some_and(|s| find(&s.conditions, EXPIRING_SOON).is_some());
    let first_provisioning = !was_provisioned(before);
    let old_generation = before.and_then(|s| s.observed_generation);
    let old_degraded = before.and_then(|s| find(&s.conditions, DEGRADED).cloned());
    let written = apply_status(&api, ws, FIELD_MANAGER, &status).await?;
    if written {
        lifecycle_events(ws, &ctx, old_phase, &status, was_expiring).await;
        if old_generation.is_some() && old_generation != status.observed_generation {
            ctx.events
                .normal(
                    ws,
                    "Updated",
                    "Update",
                    format!(
                        "Applied generation {} to the sessions",
                        status.observed_generation.unwrap_or_default()
                    ),
                )
                .await;
        }
        let degraded = find(&status.conditions, DEGRADED).filter(|c| c.status == "True");
        if let Some(c) = degraded
            && old_degraded.as_ref().map(|o| &o.message) != Some(&c.message)
        {
            ctx.events
                .warning(ws, &c.reason, "Apply", c.message.clone())
                .await;
        }
        record_metrics(&ctx, old_phase, &status, first_provisioning, &timeline, now);
    }
    Ok(match timeline.requeue_after(now) {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Updates the time-to-ready histogram and the expirations counter on a phase change.
fn record_metrics(
    ctx: &Context,
    old_phase: Option<WorkshopPhase>,
    status: &WorkshopStatus,
    first_provisioning: bool,
    timeline: &Timeline,
    now: DateTime<Utc>,
) {
    if status.phase == old_phase {
        return;
    }
    match status.phase {
        Some(WorkshopPhase::Ready | WorkshopPhase::Running) if first_provisioning => {
            let took = (now - timeline.provision_at).to_std().unwrap_or_default();
            ctx.metrics.time_to_ready.observe(took.as_secs_f64());
        }
        Some(WorkshopPhase::Expired) => {
            ctx.metrics.expirations.inc();
        }
        _ => {}
    }
}

async fn lifecycle_events(
    ws: &Workshop,
    ctx: &Context,
    old_phase: Option<WorkshopPhase>,
    status: &WorkshopStatus,
    was_expiring: bool,
) {
    let expires = status
        .expires_at
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    if !was_expiring && find(&status.conditions, EXPIRING_SOON).is_some() {
        ctx.events
            .warning(
                ws,
                "ExpiringSoon",
                "Expire",
                format!("The sessions stop at {expires}: save your work"),
            )
            .await;
    }
    let new_phase = status.phase;
    if new_phase == old_phase {
        return;
    }
    let ready = status.ready.clone().unwrap_or_default();
    match new_phase {
        Some(WorkshopPhase::Pending) => {
            let at = find(&status.conditions, READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.events.normal(ws, "Scheduled", "Schedule", at).await
        }
        Some(WorkshopPhase::Creating) => {
            ctx.events
                .normal(ws, "Provisioning", "Provision", format!("Creating the sessions ({ready} ready)"))
                .await
        }
        Some(WorkshopPhase::Ready | WorkshopPhase::Running) => {
            ctx.events
                .normal(ws, "Ready", "Provision", format!("Every session is ready ({ready})"))
                .await
        }
        Some(WorkshopPhase::Expired) => {
            ctx.events
                .normal(ws, "Expired", "Expire", format!("The sessions stopped at {expires}; home volumes are kept for the retention period"))
                .await
        }
        _ => {}
    }
}

/// The status of a Workshop being deleted: phase Terminating, sessions not ready.
pub fn terminating_status(ws: &Workshop, now: DateTime<Utc>) -> WorkshopStatus {
    let mut status = ws.status.clone().unwrap_or_default();
    status.observed_generation = ws.meta().generation;
    status.phase = Some(WorkshopPhase::Terminating);
    for p in &mut status.participants {
        p.ready = false;
    }
    let total = status.participants.len() as i32;
    status.ready_participants = Some(0);
    status.ready = Some(format!("0/{total}"));
    set_condition(
        &mut status.conditions,
        ConditionUpdate::false_(
            READY,
            "Terminating",
            "The workshop is being deleted with its sessions, credentials and home volumes",
        )
        .observed_generation(ws.meta().generation),
        now,
    );
    operator_core::conditions::remove_condition(&mut status.conditions, EXPIRING_SOON);
    status
}

/// A Workshop being deleted: record it; garbage collection removes the children.
async fn terminating(
    ws: &Workshop,
    api: &Api<Workshop>,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    if ws.status.as_ref().and_then(|s| s.phase) == Some(WorkshopPhase::Terminating) {
        return Ok(Action::await_change());
    }
    match apply_status(api, ws, FIELD_MANAGER, &terminating_status(ws, now)).await {
        Ok(_) => {
            ctx.events
                .normal(
                    ws,
                    "Terminating",
                    "Delete",
                    "Deleting the sessions, credentials and home volumes",
                )
                .await;
        }
        // Already gone: nothing to record.
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// An invalid spec: the children are left as they are, the status says why.
async fn invalid(
    ws: &Workshop,
    api: &Api<Workshop>,
    ctx: &Context,
    e: &validate::ValidationError,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let generation = ws.meta().generation;
    let mut status = ws.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Some(WorkshopPhase::Failed);
    set_condition(
        &mut status.conditions,
        ConditionUpdate::false_(ACCEPTED, e.reason(), e.to_string())
            .observed_generation(generation),
        now,
    );
    let written = apply_status(api, ws, FIELD_MANAGER, &status).await?;
    if written {
        ctx.events
            .warning(ws, e.reason(), "Validate", e.to_string())
            .await;
    }
    tracing::info!(workshop = %ws.name_any(), reason = e.reason(), "invalid spec: {e}");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::build::test_util::workshop;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn setup(spec: serde_json::Value) -> (Workshop, ValidWorkshop, Timeline) {
        let mut ws = workshop(spec);
        ws.metadata.generation = Some(3);
        let valid = validate::validate(&ws).unwrap();
        let t = Timeline::new(&ws, &valid, at("2030-01-06T08:00:00Z"));
        (ws, valid, t)
    }

    #[test]
    fn timeline_from_creation() {
        let (_, _, t) = setup(json!({"duration": "4h", "extension": {"granted": 1}}));
        assert_eq!(
            t,
            Timeline {
                created: at("2030-01-06T08:00:00Z"),
                start: at("2030-01-06T08:00:00Z"),
                provision_at: at("2030-01-06T08:00:00Z"),
                warn_at: Some(at("2030-01-06T12:20:00Z")),
                expires_at: at("2030-01-06T12:30:00Z"),
                remove_at: at("2030-01-07T12:30:00Z"),
            }
        );
        let now = at("2030-01-06T09:00:00Z");
        assert_eq!(
            t.stage(now),
            Stage::Active {
                expiring_soon: false
            }
        );
        assert_eq!(t.next_change(now), Some(at("2030-01-06T12:20:00Z")));
        assert_eq!(
            t.requeue_after(now),
            Some(Duration::from_secs(3 * 3600 + 20 * 60) + Duration::from_millis(200))
        );
        assert_eq!(
            t.stage(at("2030-01-06T12:25:00Z")),
            Stage::Active {
                expiring_soon: true
            }
        );
        assert_eq!(t.stage(at("2030-01-06T12:30:00Z")), Stage::Expired);
        assert_eq!(t.next_change(at("2030-01-06T12:30:00Z")), Some(t.remove_at));
        assert_eq!(t.stage(t.remove_at), Stage::Removed);
        assert_eq!(t.next_change(t.remove_at), None);
    }

    #[test]
    fn timeline_with_a_start_time_and_prewarm() {
        let (_, _, t) = setup(json!({
            "startTime": "2030-01-07T09:00:00+01:00",
            "duration": "2h",
            "prewarm": "30m",
            "expiryWarning": "0s",
            "retention": {"afterExpiry": "0s"}
        }));
        assert_eq!(t.start, at("2030-01-07T08:00:00Z"));
        assert_eq!(t.provision_at, at("2030-01-07T07:30:00Z"));
        assert_eq!(t.warn_at, None);
        assert_eq!(t.expires_at, at("2030-01-07T10:00:00Z"));
        assert_eq!(t.remove_at, t.expires_at);
        assert_eq!(t.stage(at("2030-01-07T07:00:00Z")), Stage::Scheduled);
        assert_eq!(
            t.next_change(at("2030-01-07T07:00:00Z")),
            Some(t.provision_at)
        );
        assert_eq!(
            t.stage(at("2030-01-07T07:45:00Z")),
            Stage::Active {
                expiring_soon: false
            }
        );
        assert_eq!(t.next_change(at("2030-01-07T07:45:00Z")), Some(t.start));
        // Zero retention: removed at expiry.
        assert_eq!(t.stage(t.expires_at), Stage::Removed);
    }

    fn ready(ids: &[&str]) -> Observed {
        Observed {
            ready: ids.iter().map(|s| s.to_string()).collect(),
            ..Observed::default()
        }
    }

    #[test]
    fn status_while_creating_then_ready() {
        let (ws, valid, t) = setup(
            json!({"participants": 2, "ingress": {"host": "ws.example.com", "tlsSecretName": "tls"}}),
        );
        let now = at("2030-01-06T08:00:05Z");
        let s = desired_status(&ws, &valid, &t, t.stage(now), &ready(&["user2"]), now);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "observedGeneration": 3,
                "phase": "Creating",
                "url": "https://ws.example.com/",
                "participants": [
                    {"id": "user1", "url": "https://ws.example.com/user1/", "ready": false, "credentialsSecret": "intro-user1-credentials"},
                    {"id": "user2", "url": "https://ws.example.com/user2/", "ready": true, "credentialsSecret": "intro-user2-credentials"}
                ],
                "readyParticipants": 1,
                "totalParticipants": 2,
                "ready": "1/2",
                "createdAt": "2030-01-06T08:00:00Z",
                "expiresAt": "2030-01-06T12:00:00Z",
                "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Valid", "message": "The spec is valid", "observedGeneration": 3, "lastTransitionTime": "2030-01-06T08:00:05Z"},
                    {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "Every home volume is as specified", "observedGeneration": 3, "lastTransitionTime": "2030-01-06T08:00:05Z"},
                    {"type": "Progressing", "status": "True", "reason": "Provisioning", "message": "1/2 sessions ready", "observedGeneration": 3, "lastTransitionTime": "2030-01-06T08:00:05Z"},
                    {"type": "Ready", "status": "False", "reason": "ParticipantsNotReady", "message": "1/2 sessions ready", "observedGeneration": 3, "lastTransitionTime": "2030-01-06T08:00:05Z"}
                ]
            })
        );

        // Every session ready: Ready; the Accepted condition keeps its transition time.
        let mut ws = ws;
        ws.status = Some(s);
        let later = at("2030-01-06T08:01:00Z");
        let s = desired_status(
            &ws,
            &valid,
            &t,
            t.stage(later),
            &ready(&["user1", "user2"]),
            later,
        );
        assert_eq!(s.phase, Some(WorkshopPhase::Ready));
        assert_eq!(s.ready.as_deref(), Some("2/2"));
        let accepted = find(&s.conditions, ACCEPTED).unwrap();
        assert_eq!(accepted.last_transition_time, to_k8s_time(now));
        let r = find(&s.conditions, READY).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "AllParticipantsReady")
        );
        assert_eq!(r.last_transition_time, to_k8s_time(later));

        // Same inputs again: the same status (no write).
        ws.status = Some(s.clone());
        assert_eq!(
            desired_status(
                &ws,
                &valid,
                &t,
                t.stage(later),
                &ready(&["user1", "user2"]),
                later
            ),
            s
        );
    }

    #[test]
    fn later_provisioning_is_an_update_and_volume_problems_degrade() {
        let (ws, valid, t) = setup(json!({"participants": 2}));
        let now = at("2030-01-06T08:00:05Z");
        let s = desired_status(&ws, &valid, &t, t.stage(now), &ready(&["user1"]), now);
        assert_eq!(
            find(&s.conditions, PROGRESSING).unwrap().reason,
            "Provisioning"
        );
        assert!(!was_provisioned(Some(&s)));
        let mut ws = ws;
        ws.status = Some(s);
        let s = desired_status(
            &ws,
            &valid,
            &t,
            t.stage(now),
            &ready(&["user1", "user2"]),
            now,
        );
        assert!(was_provisioned(Some(&s)));
        // A third participant joins: the workshop is updating, not provisioning for the first time.
        ws.status = Some(s);
        ws.spec.participants = 3;
        let valid = validate::validate(&ws).unwrap();
        let observed = Observed {
            volume_problems: vec!["intro-user1-home: forbidden".into()],
            ..ready(&["user1", "user2"])
        };
        let s = desired_status(&ws, &valid, &t, t.stage(now), &observed, now);
        assert_eq!(s.phase, Some(WorkshopPhase::Creating));
        assert_eq!(find(&s.conditions, PROGRESSING).unwrap().reason, "Updating");
        let d = find(&s.conditions, DEGRADED).unwrap();
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            (
                "True",
                "HomeVolumeNotUpdated",
                "intro-user1-home: forbidden"
            )
        );
    }

    #[test]
    fn terminating_keeps_the_participants_but_none_is_ready() {
        let (ws, valid, t) = setup(json!({"participants": 2}));
        let now = at("2030-01-06T08:00:05Z");
        let mut ws = ws;
        ws.status = Some(desired_status(
            &ws,
            &valid,
            &t,
            t.stage(now),
            &ready(&["user1", "user2"]),
            now,
        ));
        let s = terminating_status(&ws, now);
        assert_eq!(s.phase, Some(WorkshopPhase::Terminating));
        assert_eq!(s.ready.as_deref(), Some("0/2"));
        assert!(s.participants.iter().all(|p| !p.ready));
        assert_eq!(find(&s.conditions, READY).unwrap().reason, "Terminating");
    }

    #[test]
    fn status_when_expiring_and_expired() {
        let (ws, valid, t) = setup(json!({}));
        let soon = at("2030-01-06T11:55:00Z");
        let s = desired_status(&ws, &valid, &t, t.stage(soon), &ready(&["user1"]), soon);
        assert_eq!(s.phase, Some(WorkshopPhase::Ready));
        assert_eq!(
            find(&s.conditions, EXPIRING_SOON).unwrap().message,
            "The sessions stop at 2030-01-06T12:00:00Z"
        );
        let mut ws = ws;
        ws.status = Some(s);
        let after = at("2030-01-06T12:00:01Z");
        let s = desired_status(&ws, &valid, &t, t.stage(after), &ready(&["user1"]), after);
        assert_eq!(s.phase, Some(WorkshopPhase::Expired));
        assert_eq!(s.ready.as_deref(), Some("0/1"));
        assert!(!s.participants[0].ready);
        assert!(find(&s.conditions, EXPIRING_SOON).is_none());
        assert_eq!(find(&s.conditions, READY).unwrap().reason, "Expired");
        // No ingress: no URL, reached through the Service.
        assert_eq!(s.url, None);
    }

    #[test]
    fn running_after_the_start_time() {
        let (ws, valid, t) = setup(json!({"startTime": "2030-01-07T09:00:00Z"}));
        let before = at("2030-01-07T08:50:00Z");
        let s = desired_status(&ws, &valid, &t, t.stage(before), &ready(&["user1"]), before);
        assert_eq!(s.phase, Some(WorkshopPhase::Ready));
        let after = at("2030-01-07T09:00:00Z");
        let s = desired_status(&ws, &valid, &t, t.stage(after), &ready(&["user1"]), after);
        assert_eq!(s.phase, Some(WorkshopPhase::Running));
        let early = at("2030-01-07T08:00:00Z");
        let s = desired_status(&ws, &valid, &t, t.stage(early), &Observed::default(), early);
        assert_eq!(s.phase, Some(WorkshopPhase::Pending));
    }

    #[test]
    fn deployment_readiness() {
        let d = |generation: i64, observed: i64, updated: i32, ready: i32| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": "d", "generation": generation},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "readyReplicas": ready}
            }))
            .unwrap()
        };
        assert!(deployment_ready(&d(2, 2, 1, 1)));
        assert!(!deployment_ready(&d(2, 1, 1, 1)), "stale status");
        assert!(!deployment_ready(&d(2, 2, 1, 0)));
        assert!(!deployment_ready(&d(2, 2, 0, 1)), "old pod");
        assert!(!deployment_ready(&Deployment::default()));
    }

    #[test]
    fn passwords_are_random_and_alphanumeric() {
        let a = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password());
    }
}
