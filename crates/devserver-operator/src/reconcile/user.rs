//! DevServerUser: observe -> validate -> build -> apply -> status.
//!
//! Every child carries an owner reference to the (cluster-scoped) user, so
//! Kubernetes garbage collection removes them when the user is deleted; the
//! namespace gets one only under `namespaceDeletionPolicy: Delete`. No
//! finalizer is needed.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::apply::Applier;
use operator_core::conditions::{ConditionUpdate, set_condition};

use crate::build::user::{LIMIT_RANGE_NAME, QUOTA_NAME, user_objects};
use crate::controllers::{Context, Error, READY, USER_MANAGER, report, undecodable, user_status};
use crate::crd::{DevServerUser, DevServerUserPhase, NamespaceDeletionPolicy};
use crate::validate;

pub async fn reconcile(
    guard: Arc<DeserializeGuard<DevServerUser>>,
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
    let generation = obj.meta().generation;
    let verdict = validate::user(&obj.spec);
    let mut status = user_status(obj.status.as_ref(), generation, &verdict, now);
    if verdict.is_ok() {
        let ns_phase = apply_children(&ctx, obj).await?;
        let ns = crate::validate::user_namespace(&obj.spec.username);
        status.namespace = Some(ns.clone());
        let ready = ns_phase.as_deref() == Some("Active");
        status.phase = Some(if ready {
            DevServerUserPhase::Ready
        } else {
            DevServerUserPhase::Pending
        });
        let update = if ready {
            ConditionUpdate::true_(
                READY,
                "Provisioned",
                format!("Namespace {ns}, its ServiceAccount and RBAC are in place."),
            )
        } else {
            ConditionUpdate::false_(
                READY,
                "NamespaceNotActive",
                format!(
                    "Namespace {ns} is {}.",
                    ns_phase.as_deref().unwrap_or("not created yet")
                ),
            )
        };
        set_condition(
            &mut status.conditions,
            update.observed_generation(generation),
            now,
        );
    }
    let api: Api<DevServerUser> = Api::all(ctx.client.clone());
    let wrote = operator_core::status::apply_status(&api, obj, USER_MANAGER, &status)
        .await
        .map_err(|source| Error::Status {
            kind: "DevServerUser",
            name: obj.name_any(),
            source,
        })?;
    report(&ctx, obj, wrote, &verdict).await;
    if wrote && status.phase == Some(DevServerUserPhase::Ready) {
        let was_ready = obj
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p == DevServerUserPhase::Ready);
        if !was_ready {
            ctx.events
                .normal(
                    obj,
                    "Provisioned",
                    "Provision",
                    format!(
                        "Namespace {} is ready",
                        status.namespace.unwrap_or_default()
                    ),
                )
                .await;
        }
    }
    Ok(Action::await_change())
}

/// Applies the user's objects; returns the namespace's phase.
async fn apply_children(ctx: &Context, user: &DevServerUser) -> Result<Option<String>, Error> {
    let o = user_objects(&user.name_any(), &user.spec);
    let applier = Applier::new(ctx.client.clone(), USER_MANAGER, user)?;
    let ns_name = o.namespace.name_any();
    let namespace = match user.spec.namespace_deletion_policy {
        NamespaceDeletionPolicy::Delete => applier.apply_cluster(o.namespace).await?,
        // Labelled but not owned: garbage collection must not delete it.
        // The same field manager, so switching from Delete drops the owner
        // reference.
        NamespaceDeletionPolicy::Retain => {
            let api: Api<Namespace> = Api::all(ctx.client.clone());
            api.patch(
                &ns_name,
                &PatchParams::apply(USER_MANAGER).force(),
                &Patch::Apply(&o.namespace),
            )
            .await
            .map_err(|source| Error::Kube {
                action: "applying the user's namespace",
                source,
            })?
        }
    };
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Some("Terminating".into()));
    }
    applier.apply(o.service_account).await?;
    applier.apply(o.role).await?;
    let mut bindings = BTreeSet::new();
    for rb in o.role_bindings {
        bindings.insert(rb.name_any());
        applier.apply(rb).await?;
    }
    applier.prune::<RoleBinding>(&ns_name, &bindings).await?;
    applier.apply_cluster(o.cluster_role).await?;
    applier.apply_cluster(o.cluster_role_binding).await?;
    let mut keep = BTreeSet::new();
    if let Some(q) = o.resource_quota {
        keep.insert(QUOTA_NAME.to_string());
        applier.apply(q).await?;
    }
    applier.prune::<ResourceQuota>(&ns_name, &keep).await?;
    let mut keep = BTreeSet::new();
    if let Some(l) = o.limit_range {
        keep.insert(LIMIT_RANGE_NAME.to_string());
        applier.apply(l).await?;
    }
    applier.prune::<LimitRange>(&ns_name, &keep).await?;
    Ok(namespace.status.and_then(|s| s.phase))
}
