//! The controllers of the operator. At this stage each one validates its
//! kind and reports the verdict in status (`observedGeneration`, an
//! `Accepted` condition, a summary phase) and, for an invalid spec, in a
//! Warning event. Provisioning (StatefulSets, SSH, users' namespaces) is
//! built on top of this.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use operator_core::Runtime;
use operator_core::conditions::{ConditionUpdate, set_condition};
use operator_core::controller::{ReconcileError, guarded_controller, kube_error_reason};
use operator_core::events::Events;

use crate::crd::{
    DevServer, DevServerFlavor, DevServerFlavorStatus, DevServerPhase, DevServerStatus,
    DevServerUser, DevServerUserPhase, DevServerUserStatus,
};
use crate::validate::{self, ValidationError};

/// Condition type: the spec passed validation.
pub const ACCEPTED: &str = "Accepted";
/// Condition reason when the spec is valid.
pub const REASON_VALID: &str = "Valid";
/// Condition and event reason when the spec is invalid.
pub const REASON_INVALID: &str = "InvalidSpec";

/// Field manager of each controller's status writes.
pub const DEVSERVER_MANAGER: &str = "devserver-operator/devserver";
pub const FLAVOR_MANAGER: &str = "devserver-operator/flavor";
pub const USER_MANAGER: &str = "devserver-operator/user";

/// What every reconciler shares.
pub struct Context {
    pub client: Client,
    pub events: Events,
    /// The clock (injectable for tests).
    pub now: fn() -> DateTime<Utc>,
}

/// Why a reconcile failed (an invalid spec is not a failure: it ends in
/// status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {kind} {name}: {source}")]
    Status {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Status { source, .. } => kube_error_reason(source),
        }
    }
}

/// Starts the controllers and returns when the runtime shuts down.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        events: rt.events.clone(),
        now: Utc::now,
    });
    let devservers: Api<DeserializeGuard<DevServer>> = match &rt.args.watch_namespace {
        Some(ns) => Api::namespaced(rt.client.clone(), ns),
        None => Api::all(rt.client.clone()),
    };
    let flavors: Api<DeserializeGuard<DevServerFlavor>> = Api::all(rt.client.clone());
    let users: Api<DeserializeGuard<DevServerUser>> = Api::all(rt.client.clone());
    let concurrency = rt.args.concurrency;
    tokio::join!(
        operator_core::controller::run(
            guarded_controller(devservers, watcher::Config::default(), concurrency),
            "devserver",
            rt.metrics.clone(),
            ctx.clone(),
            reconcile_devserver,
            rt.shutdown_signal(),
        ),
        operator_core::controller::run(
            guarded_controller(flavors, watcher::Config::default(), concurrency),
            "devserverflavor",
            rt.metrics.clone(),
            ctx.clone(),
            reconcile_flavor,
            rt.shutdown_signal(),
        ),
        operator_core::controller::run(
            guarded_controller(users, watcher::Config::default(), concurrency),
            "devserveruser",
            rt.metrics.clone(),
            ctx.clone(),
            reconcile_user,
            rt.shutdown_signal(),
        ),
    );
    Ok(())
}

/// Merges the `Accepted` condition for `verdict` into `conditions`.
pub fn set_accepted(
    conditions: &mut Vec<Condition>,
    verdict: &Result<(), ValidationError>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let update = match verdict {
        Ok(()) => ConditionUpdate::true_(ACCEPTED, REASON_VALID, "The spec is valid."),
        Err(e) => ConditionUpdate::false_(ACCEPTED, REASON_INVALID, e.to_string()),
    };
    set_condition(conditions, update.observed_generation(generation), now);
}

/// The status a DevServer gets from validation alone.
pub fn devserver_status(
    current: Option<&DevServerStatus>,
    generation: Option<i64>,
    verdict: &Result<(), ValidationError>,
    now: DateTime<Utc>,
) -> DevServerStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    set_accepted(&mut status.conditions, verdict, generation, now);
    match verdict {
        Ok(()) => {
            status.phase = Some(DevServerPhase::Pending);
            status.message = None;
        }
        Err(e) => {
            status.phase = Some(DevServerPhase::Failed);
            status.message = Some(format!("invalid spec: {e}"));
        }
    }
    status
}

/// The status a DevServerFlavor gets from validation alone.
pub fn flavor_status(
    current: Option<&DevServerFlavorStatus>,
    generation: Option<i64>,
    verdict: &Result<(), ValidationError>,
    now: DateTime<Utc>,
) -> DevServerFlavorStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    set_accepted(&mut status.conditions, verdict, generation, now);
    status
}

/// The status a DevServerUser gets from validation alone.
pub fn user_status(
    current: Option<&DevServerUserStatus>,
    generation: Option<i64>,
    verdict: &Result<(), ValidationError>,
    now: DateTime<Utc>,
) -> DevServerUserStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.observed_generation = generation;
    set_accepted(&mut status.conditions, verdict, generation, now);
    status.phase = Some(match verdict {
        Ok(()) => DevServerUserPhase::Pending,
        Err(_) => DevServerUserPhase::Failed,
    });
    status
}

async fn reconcile_devserver(
    guard: Arc<DeserializeGuard<DevServer>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => return Ok(undecodable(&ctx, guard.as_ref(), invalid).await),
    };
    let verdict = validate::devserver(&obj.spec);
    let status = devserver_status(
        obj.status.as_ref(),
        obj.meta().generation,
        &verdict,
        (ctx.now)(),
    );
    let api: Api<DevServer> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let wrote = operator_core::status::apply_status(&api, obj, DEVSERVER_MANAGER, &status)
        .await
        .map_err(|source| Error::Status {
            kind: "DevServer",
            name: obj.name_any(),
            source,
        })?;
    report(&ctx, obj, wrote, &verdict).await;
    Ok(Action::await_change())
}

async fn reconcile_flavor(
    guard: Arc<DeserializeGuard<DevServerFlavor>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => return Ok(undecodable(&ctx, guard.as_ref(), invalid).await),
    };
    let verdict = validate::flavor(&obj.spec);
    let status = flavor_status(
        obj.status.as_ref(),
        obj.meta().generation,
        &verdict,
        (ctx.now)(),
    );
    let api: Api<DevServerFlavor> = Api::all(ctx.client.clone());
    let wrote = operator_core::status::apply_status(&api, obj, FLAVOR_MANAGER, &status)
        .await
        .map_err(|source| Error::Status {
            kind: "DevServerFlavor",
            name: obj.name_any(),
            source,
        })?;
    report(&ctx, obj, wrote, &verdict).await;
    Ok(Action::await_change())
}

async fn reconcile_user(
    guard: Arc<DeserializeGuard<DevServerUser>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => return Ok(undecodable(&ctx, guard.as_ref(), invalid).await),
    };
    let verdict = validate::user(&obj.spec);
    let status = user_status(
        obj.status.as_ref(),
        obj.meta().generation,
        &verdict,
        (ctx.now)(),
    );
    let api: Api<DevServerUser> = Api::all(ctx.client.clone());
    let wrote = operator_core::status::apply_status(&api, obj, USER_MANAGER, &status)
        .await
        .map_err(|source| Error::Status {
            kind: "DevServerUser",
            name: obj.name_any(),
            source,
        })?;
    report(&ctx, obj, wrote, &verdict).await;
    Ok(Action::await_change())
}

/// A Warning event for an invalid spec, once per change of the verdict (the
/// status write is the signal), so a steady invalid object makes no writes.
async fn report<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    wrote: bool,
    verdict: &Result<(), ValidationError>,
) {
    if let (true, Err(e)) = (wrote, verdict) {
        tracing::info!(kind = %K::kind(&()), name = %obj.meta().name.as_deref().unwrap_or_default(), error = %e, "invalid spec");
        ctx.events
            .warning(obj, REASON_INVALID, "Validate", e.to_string())
            .await;
    }
}

/// An object whose stored form does not decode into the Rust types: say so
/// on the object and wait for it to change.
async fn undecodable<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &DeserializeGuard<K>,
    invalid: &InvalidObject,
) -> Action {
    let name = invalid.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(kind = %K::kind(&()), name, error = %invalid.error, "cannot decode object");
    ctx.events
        .warning(
            obj,
            "Undecodable",
            "Decode",
            format!(
                "the object does not match the {} API: {}",
                K::kind(&()),
                invalid.error
            ),
        )
        .await;
    Action::await_change()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Problem;
    use chrono::TimeZone;

    fn invalid(msg: &str) -> Result<(), ValidationError> {
        Err(ValidationError {
            problems: vec![Problem {
                field: "spec.x".into(),
                message: msg.into(),
            }],
        })
    }

    #[test]
    fn a_valid_devserver_is_accepted_and_pending() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let s = devserver_status(None, Some(1), &Ok(()), t0);
        assert_eq!(s.phase, Some(DevServerPhase::Pending));
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.conditions.len(), 1);
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (ACCEPTED, "True", REASON_VALID)
        );
        assert_eq!(c.observed_generation, Some(1));
    }

    #[test]
    fn recomputing_an_unchanged_status_changes_nothing() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap();
        let s = devserver_status(None, Some(3), &invalid("bad"), t0);
        assert_eq!(devserver_status(Some(&s), Some(3), &invalid("bad"), t1), s);
        let f = flavor_status(None, Some(1), &Ok(()), t0);
        assert_eq!(flavor_status(Some(&f), Some(1), &Ok(()), t1), f);
        let u = user_status(None, Some(1), &Ok(()), t0);
        assert_eq!(user_status(Some(&u), Some(1), &Ok(()), t1), u);
    }

    #[test]
    fn an_invalid_spec_is_reported_and_fixing_it_flips_the_condition() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap();
        let s = devserver_status(None, Some(1), &invalid("is wrong"), t0);
        assert_eq!(s.phase, Some(DevServerPhase::Failed));
        assert_eq!(s.conditions[0].status, "False");
        assert_eq!(s.conditions[0].reason, REASON_INVALID);
        assert_eq!(s.conditions[0].message, "spec.x: is wrong");
        assert!(s.message.as_deref().unwrap().contains("spec.x: is wrong"));
        let fixed = devserver_status(Some(&s), Some(2), &Ok(()), t1);
        assert_eq!(fixed.conditions[0].status, "True");
        assert_eq!(
            fixed.conditions[0].last_transition_time,
            operator_core::conditions::to_k8s_time(t1)
        );
        assert_eq!(fixed.message, None);
        assert_eq!(fixed.observed_generation, Some(2));
    }

    #[test]
    fn user_phase_follows_the_verdict() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            user_status(None, None, &Ok(()), t0).phase,
            Some(DevServerUserPhase::Pending)
        );
        assert_eq!(
            user_status(None, None, &invalid("x"), t0).phase,
            Some(DevServerUserPhase::Failed)
        );
        assert_eq!(user_status(None, None, &Ok(()), t0).namespace, None);
    }
}
