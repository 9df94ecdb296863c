//! The controllers of the operator and what they share. Each one validates
//! its kind and reports the verdict in status (`observedGeneration`, an
//! `Accepted` condition, a summary phase) and, for an invalid spec, in a
//! Warning event. DevServers and DevServerUsers are then provisioned by
//! [`crate::reconcile`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Node, Pod, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use operator_core::Runtime;
use operator_core::apply::ApplyError;
use operator_core::conditions::{ConditionUpdate, set_condition};
use operator_core::controller::{ReconcileError, guarded_controller, kube_error_reason};
use operator_core::events::Events;
use operator_core::labels::NAME;
use serde::de::DeserializeOwned;

use crate::build::devserver::{Images, Names};
use crate::build::sshd::SshLayout;
use crate::build::{APP_DEVSERVER, APP_USER, USER_LABEL};
use crate::config::Config;
use crate::crd::{
    DevServer, DevServerFlavor, DevServerFlavorStatus, DevServerPhase, DevServerStatus,
    DevServerUser, DevServerUserPhase, DevServerUserStatus,
};
use crate::metrics::DevServerMetrics;
use crate::validate::{self, ValidationError};
use kube::runtime::reflector::Store;

/// Condition type: the spec passed validation.
pub const ACCEPTED: &str = "Accepted";
/// Condition type: the object's children are in place and (DevServer) its
/// pods are ready.
pub const READY: &str = "Ready";
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
    /// Default and SSH server images.
    pub images: Images,
    /// Where the injected SSH server's files are, and its port.
    pub ssh: SshLayout,
    /// The operator's own metrics.
    pub metrics: DevServerMetrics,
    /// The DevServer and flavor caches of the controllers (for the gauges).
    pub caches: Option<Caches>,
    /// Karpenter's NodePool API, when its CRD was installed at start-up.
    pub node_pools: Option<ApiResource>,
}

/// Karpenter's NodePool (`karpenter.sh/v1`).
pub fn node_pool_resource() -> ApiResource {
    ApiResource {
        group: "karpenter.sh".into(),
        version: "v1".into(),
        api_version: "karpenter.sh/v1".into(),
        kind: "NodePool".into(),
        plural: "nodepools".into(),
    }
}

/// Whether Karpenter's NodePool CRD is installed (checked once at start-up:
/// installing Karpenter later needs an operator restart to be seen).
async fn node_pools_installed(client: &Client) -> Option<ApiResource> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt("nodepools.karpenter.sh").await {
        Ok(Some(crd)) if crd.spec.versions.iter().any(|v| v.name == "v1" && v.served) => {
            tracing::info!("Karpenter NodePools found: flavors can be AUTOSCALED");
            Some(node_pool_resource())
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check for Karpenter NodePools; ignoring them");
            None
        }
    }
}

/// The controllers' in-memory caches.
#[derive(Clone)]
pub struct Caches {
    pub servers: Store<DeserializeGuard<DevServer>>,
    pub flavors: Store<DeserializeGuard<DevServerFlavor>>,
}

impl Context {
    /// Recounts the gauges from the caches (no API call).
    pub fn recount(&self) {
        let Some(c) = &self.caches else { return };
        let servers = c.servers.state();
        let flavors = c.flavors.state();
        self.metrics.recount(
            servers.iter().filter_map(|g| g.0.as_ref().ok()),
            flavors.iter().filter_map(|g| g.0.as_ref().ok()),
        );
    }
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
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Status { source, .. } | Error::Kube { source, .. } => kube_error_reason(source),
            Error::Apply(e) => e.reason(),
        }
    }
}

/// A metadata-only watch of `api`'s objects, as a trigger stream.
fn meta_stream<K>(
    api: Api<PartialObjectMeta<K>>,
    wc: watcher::Config,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, wc).default_backoff().touched_objects()
}

/// A hash of what makes a node fit a flavor.
fn node_shape(node: &Node) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.metadata.labels.hash(&mut h);
    let spec = node.spec.clone().unwrap_or_default();
    serde_json::to_string(&spec.taints).ok()?.hash(&mut h);
    spec.unschedulable.hash(&mut h);
    serde_json::to_string(&node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
        .ok()?
        .hash(&mut h);
    Some(h.finish())
}

/// Starts the controllers, configured from the environment (see
/// [`crate::config`]), and returns when the runtime shuts down.
pub async fn run(rt: Runtime) -> anyhow::Result<()> {
    run_with_config(rt, Config::from_env()?).await
}

/// Starts the controllers with `config`.
pub async fn run_with_config(rt: Runtime, config: Config) -> anyhow::Result<()> {
    let client = rt.client.clone();
    fn scoped<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let watch_ns = rt.args.watch_namespace.clone();
    let concurrency = rt.args.concurrency;

    // DevServers, woken by their children, by flavor changes (no generation
    // predicate: it would hide deletions) (servers using
    // the flavor, or any flavor for servers that use the default) and by
    // their owner's DevServerUser (SSH keys).
    let owned = watcher::Config::default().labels(&format!("{}={}", NAME, APP_DEVSERVER));
    let devservers = guarded_controller(
        scoped::<DeserializeGuard<DevServer>>(&client, &watch_ns),
        watcher::Config::default(),
        concurrency,
    );
    let store = devservers.store();
    let servers_cache = store.clone();
    let flavor_store = store.clone();
    let pod_store = store.clone();
    let flavor_events = meta_stream(
        Api::<PartialObjectMeta<DevServerFlavor>>::all(client.clone()),
        Default::default(),
    );
    let user_events = meta_stream(
        Api::<PartialObjectMeta<DevServerUser>>::all(client.clone()),
        Default::default(),
    );
    let devservers = devservers
        .owns_stream(meta_stream(
            scoped::<PartialObjectMeta<StatefulSet>>(&client, &watch_ns),
            owned.clone(),
        ))
        .owns_stream(meta_stream(
            scoped::<PartialObjectMeta<Service>>(&client, &watch_ns),
            owned.clone(),
        ))
        .owns_stream(meta_stream(
            scoped::<PartialObjectMeta<Secret>>(&client, &watch_ns),
            owned.clone(),
        ))
        .owns_stream(meta_stream(
            scoped::<PartialObjectMeta<ConfigMap>>(&client, &watch_ns),
            owned.clone(),
        ))
        // Pods (metadata only; any change, readiness included, bumps the
        // resourceVersion): the phase follows the real pods.
        .watches_stream(
            meta_stream(
                scoped::<PartialObjectMeta<Pod>>(&client, &watch_ns),
                owned.clone(),
            ),
            move |pod| {
                let ns = pod.namespace();
                let Some(sts) = pod
                    .owner_references()
                    .iter()
                    .find(|o| o.kind == "StatefulSet")
                    .map(|o| o.name.clone())
                else {
                    return Vec::new();
                };
                pod_store
                    .state()
                    .into_iter()
                    .filter(|g| g.namespace() == ns && Names::of(&g.name_any()).stateful_set == sts)
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(flavor_events, move |flavor| {
            let name = flavor.name_any();
            flavor_store
                .state()
                .into_iter()
                .filter(|g| match &g.0 {
                    Ok(ds) => ds.spec.flavor.as_deref().is_none_or(|f| f == name),
                    Err(_) => false,
                })
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(user_events, move |user| {
            let name = user.name_any();
            store
                .state()
                .into_iter()
                .filter(|g| match &g.0 {
                    Ok(ds) => ds.spec.owner.as_deref() == Some(name.as_str()),
                    Err(_) => false,
                })
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        });

    // Users, woken by their children and their namespace.
    let user_owned = watcher::Config::default().labels(&format!("{}={}", NAME, APP_USER));
    let users = guarded_controller(
        Api::<DeserializeGuard<DevServerUser>>::all(client.clone()),
        watcher::Config::default(),
        concurrency,
    )
    .watches_stream(
        meta_stream(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            user_owned.clone(),
        ),
        |ns| {
            ns.labels()
                .get(USER_LABEL)
                .map(|u| ObjectRef::new(u))
                .into_iter()
                .collect::<Vec<_>>()
        },
    )
    .owns_stream(meta_stream(
        Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
        user_owned.clone(),
    ))
    .owns_stream(meta_stream(
        Api::<PartialObjectMeta<Role>>::all(client.clone()),
        user_owned.clone(),
    ))
    .owns_stream(meta_stream(
        Api::<PartialObjectMeta<RoleBinding>>::all(client.clone()),
        user_owned.clone(),
    ))
    .owns_stream(meta_stream(
        Api::<PartialObjectMeta<ClusterRole>>::all(client.clone()),
        user_owned.clone(),
    ))
    .owns_stream(meta_stream(
        Api::<PartialObjectMeta<ClusterRoleBinding>>::all(client.clone()),
        user_owned.clone(),
    ))
    .owns_stream(meta_stream(
        Api::<PartialObjectMeta<ResourceQuota>>::all(client.clone()),
        user_owned.clone(),
    ))
    .owns_stream(meta_stream(
        Api::<PartialObjectMeta<LimitRange>>::all(client.clone()),
        user_owned,
    ));

    // Flavors; any flavor change re-checks the default ones (a new second
    // default is reported on both).
    let flavors: Api<DeserializeGuard<DevServerFlavor>> = Api::all(client.clone());
    let flavor_controller = guarded_controller(flavors, watcher::Config::default(), concurrency);
    let defaults_store = flavor_controller.store();
    let flavors_cache = flavor_controller.store();
    let nodes_store = flavor_controller.store();
    let flavor_controller = flavor_controller.watches_stream(
        // Only what decides fit: labels, taints, allocatable, cordoning
        // (not heartbeats).
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .predicate_filter(node_shape, Default::default()),
        move |_| {
            nodes_store
                .state()
                .into_iter()
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    let flavor_controller = flavor_controller.watches_stream(
        meta_stream(
            Api::<PartialObjectMeta<DevServerFlavor>>::all(client.clone()),
            Default::default(),
        ),
        move |_| {
            defaults_store
                .state()
                .into_iter()
                .filter(|g| g.0.as_ref().is_ok_and(|f| f.spec.default))
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    let node_pools = node_pools_installed(&client).await;
    let flavor_controller = match &node_pools {
        // Any NodePool change re-checks every flavor.
        Some(ar) => {
            let pools_store = flavor_controller.store();
            flavor_controller.watches_stream_with(
                watcher(
                    Api::<DynamicObject>::all_with(client.clone(), ar),
                    watcher::Config::default(),
                )
                .default_backoff()
                .touched_objects(),
                move |_| {
                    pools_store
                        .state()
                        .into_iter()
                        .map(|g| ObjectRef::from_obj(g.as_ref()))
                        .collect::<Vec<_>>()
                },
                ar.clone(),
            )
        }
        None => flavor_controller,
    };
    let ctx = Arc::new(Context {
        node_pools,
        client: rt.client.clone(),
        events: rt.events.clone(),
        now: Utc::now,
        images: config.images,
        ssh: config.ssh,
        metrics: DevServerMetrics::register(&rt.metrics),
        caches: Some(Caches {
            servers: servers_cache,
            flavors: flavors_cache,
        }),
    });
    // Deletions run no reconcile: recount the gauges from memory now and
    // then too.
    let recount = {
        let ctx = ctx.clone();
        let shutdown = rt.shutdown_signal();
        async move {
            let tick = async {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    ctx.recount();
                }
            };
            tokio::select! {
                _ = tick => {}
                _ = shutdown => {}
            }
        }
    };
    tokio::join!(
        recount,
        operator_core::controller::run(
            devservers,
            "devserver",
            rt.metrics.clone(),
            ctx.clone(),
            crate::reconcile::devserver::reconcile,
            rt.shutdown_signal(),
        ),
        operator_core::controller::run(
            flavor_controller,
            "devserverflavor",
            rt.metrics.clone(),
            ctx.clone(),
            reconcile_flavor,
            rt.shutdown_signal(),
        ),
        operator_core::controller::run(
            users,
            "devserveruser",
            rt.metrics.clone(),
            ctx.clone(),
            crate::reconcile::user::reconcile,
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

async fn reconcile_flavor(
    guard: Arc<DeserializeGuard<DevServerFlavor>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => return Ok(undecodable(&ctx, guard.as_ref(), invalid).await),
    };
    let now = (ctx.now)();
    let verdict = validate::flavor(&obj.spec);
    let mut status = flavor_status(obj.status.as_ref(), obj.meta().generation, &verdict, now);
    let api: Api<DevServerFlavor> = Api::all(ctx.client.clone());
    // At most one default: every default flavor reports the others.
    let other_defaults: Vec<String> = if obj.spec.default {
        let mut names: Vec<String> = api
            .list(&kube::api::ListParams::default())
            .await
            .map_err(|source| Error::Kube {
                action: "listing flavors",
                source,
            })?
            .items
            .into_iter()
            .filter(|f| f.spec.default && f.name_any() != obj.name_any())
            .map(|f| f.name_any())
            .collect();
        names.sort();
        names
    } else {
        Vec::new()
    };
    // Whether a node fits it (the nodes' shape, not their current load).
    if verdict.is_ok() {
        let nodes = Api::<Node>::all(ctx.client.clone())
            .list(&kube::api::ListParams::default())
            .await
            .map_err(|source| Error::Kube {
                action: "listing nodes",
                source,
            })?;
        let pools = match &ctx.node_pools {
            Some(ar) => Api::<DynamicObject>::all_with(ctx.client.clone(), ar)
                .list(&kube::api::ListParams::default())
                .await
                .map_err(|source| Error::Kube {
                    action: "listing Karpenter NodePools",
                    source,
                })?
                .items
                .into_iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect(),
            None => Vec::new(),
        };
        status.schedulable = Some(crate::schedulable::schedulable_with_pools(
            &obj.spec,
            &nodes.items,
            &pools,
        ));
    }
    let conflict_was = operator_core::conditions::is_true(&status.conditions, DEFAULT_CONFLICT);
    set_default_conflict(
        &mut status.conditions,
        obj.spec.default,
        &other_defaults,
        obj.meta().generation,
        now,
    );
    let wrote = operator_core::status::apply_status(&api, obj, FLAVOR_MANAGER, &status)
        .await
        .map_err(|source| Error::Status {
            kind: "DevServerFlavor",
            name: obj.name_any(),
            source,
        })?;
    report(&ctx, obj, wrote, &verdict).await;
    if !other_defaults.is_empty() && !conflict_was {
        ctx.events
            .warning(
                obj,
                "MultipleDefaultFlavors",
                "Validate",
                default_conflict_message(&other_defaults),
            )
            .await;
    }
    Ok(Action::await_change())
}

/// Condition type on a default flavor: another flavor is default too.
pub const DEFAULT_CONFLICT: &str = "DefaultConflict";

fn default_conflict_message(others: &[String]) -> String {
    format!(
        "Other flavors are marked default too ({}); DevServers without spec.flavor will not start until only one is.",
        others.join(", ")
    )
}

/// Sets (default flavors) or removes (others) the `DefaultConflict`
/// condition.
pub fn set_default_conflict(
    conditions: &mut Vec<Condition>,
    is_default: bool,
    other_defaults: &[String],
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    if !is_default {
        operator_core::conditions::remove_condition(conditions, DEFAULT_CONFLICT);
        return;
    }
    let update = if other_defaults.is_empty() {
        ConditionUpdate::false_(
            DEFAULT_CONFLICT,
            "OnlyDefault",
            "This is the only default flavor.",
        )
    } else {
        ConditionUpdate::true_(
            DEFAULT_CONFLICT,
            "MultipleDefaultFlavors",
            default_conflict_message(other_defaults),
        )
    };
    set_condition(conditions, update.observed_generation(generation), now);
}

/// A Warning event for an invalid spec, once per change of the verdict (the
/// status write is the signal), so a steady invalid object makes no writes.
pub(crate) async fn report<K: Resource<DynamicType = ()>>(
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
pub(crate) async fn undecodable<K: Resource<DynamicType = ()>>(
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
    fn a_second_default_flavor_is_a_conflict() {
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let mut c = Vec::new();
        set_default_conflict(&mut c, true, &[], Some(1), t0);
        assert_eq!(
            (c[0].status.as_str(), c[0].reason.as_str()),
            ("False", "OnlyDefault")
        );
        set_default_conflict(&mut c, true, &["b".into(), "c".into()], Some(1), t0);
        assert_eq!(c[0].status, "True");
        assert!(c[0].message.contains("(b, c)"), "{}", c[0].message);
        set_default_conflict(&mut c, false, &[], Some(2), t0);
        assert!(c.is_empty());
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
