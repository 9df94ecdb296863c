//! operator-core against a real API server, with a test-only `Widget` CRD:
//! apply with ownership, pruning that spares foreign objects, status and
//! conditions without needless writes, finalizers, undecodable objects,
//! events, metrics and the HTTP endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use envtest::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use operator_core::apply::{Applier, OWNER_UID_LABEL};
use operator_core::conditions::{ConditionUpdate, READY, set_condition};
use operator_core::controller::{ReconcileError, guarded_controller};
use operator_core::events::Events;
use operator_core::metrics::Metrics;
use operator_core::status::apply_status;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A test-only kind: one ConfigMap per entry of `spec.configs`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "test.operator-core.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Typed here, but the installed CRD accepts anything: lets a test
    /// create an object this code cannot decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

const FINALIZER: &str = "test.operator-core.io/cleanup";
const MANAGER: &str = "operator-core-test/widget";

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Apply(#[from] operator_core::apply::ApplyError),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Apply(e) => e.reason(),
            Error::Kube(e) => operator_core::controller::kube_error_reason(e),
            Error::Finalizer(_) => "Finalizer",
        }
    }
    fn retry_after(&self) -> Duration {
        Duration::from_secs(1)
    }
}

struct Ctx {
    client: kube::Client,
    events: Events,
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

async fn reconcile(guard: Arc<DeserializeGuard<Widget>>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let widget = match &guard.0 {
        Ok(w) => w.clone(),
        Err(invalid) => {
            ctx.events
                .warning(
                    guard.as_ref(),
                    "InvalidSpec",
                    "Decode",
                    format!("cannot decode: {}", invalid.error),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let ns = widget.namespace().unwrap_or_default();
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, Arc::new(widget), |event| async {
        match event {
            FinalizerEvent::Apply(w) => apply_widget(&w, &ctx).await,
            FinalizerEvent::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

fn desired_children(w: &Widget) -> Vec<ConfigMap> {
    w.spec
        .configs
        .iter()
        .map(|(k, v)| {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": format!("{}-{k}", w.name_any()), "labels": { "app.kubernetes.io/managed-by": "operator-core-test" } },
                "data": { "value": v },
            }))
            .unwrap()
        })
        .collect()
}

async fn apply_widget(w: &Widget, ctx: &Ctx) -> Result<Action, Error> {
    let ns = w.namespace().unwrap_or_default();
    let applier = Applier::new(ctx.client.clone(), MANAGER, w)?;
    let mut keep = BTreeSet::new();
    for cm in desired_children(w) {
        keep.insert(cm.name_any());
        applier.apply(cm).await?;
    }
    applier.prune::<ConfigMap>(&ns, &keep).await?;

    let mut status = w.status.clone().unwrap_or_default();
    status.observed_generation = w.meta().generation;
    set_condition(
        &mut status.conditions,
        ConditionUpdate::true_(
            READY,
            "ChildrenApplied",
            format!("{} config maps", keep.len()),
        )
        .observed_generation(w.meta().generation),
        Utc::now(),
    );
    apply_status(
        &Api::<Widget>::namespaced(ctx.client.clone(), &ns),
        w,
        MANAGER,
        &status,
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The CRD as installed: `replicas` is loosened so invalid objects can exist.
fn installed_crd() -> serde_json::Value {
    let mut crd = serde_json::to_value(Widget::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"] =
        json!({ "x-kubernetes-int-or-string": true });
    crd
}

async fn install_crd(client: &kube::Client) {
    let yaml = serde_yaml::to_string(&installed_crd()).unwrap();
    envtest::manifest::apply_yaml(client, &yaml, "default", "test")
        .await
        .unwrap();
    envtest::manifest::wait_crds_established(
        client,
        &["widgets.test.operator-core.io".into()],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
}

/// Starts the widget controller for one namespace; returns its context,
/// metrics and a handle that stops it.
async fn start_controller(ns: &str) -> (Arc<Ctx>, Metrics, tokio_util::sync::CancellationToken) {
    let metrics = Metrics::new();
    let kubeconfig = kube::config::Kubeconfig::read_from(envtest::shared().kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    // The controller's client counts its API requests, as in production.
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&metrics.api_layer())
        .build();
    install_crd(&client).await;
    let ctx = Arc::new(Ctx {
        events: Events::new(client.clone(), "operator-core-test"),
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
        cleanups: AtomicUsize::new(0),
    });
    let api: Api<DeserializeGuard<Widget>> = Api::namespaced(client.clone(), ns);
    let controller = guarded_controller(api, watcher::Config::default(), 2).owns(
        Api::<ConfigMap>::namespaced(client.clone(), ns),
        watcher::Config::default(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    };
    tokio::spawn(operator_core::controller::run(
        controller,
        "widget",
        metrics.clone(),
        ctx.clone(),
        reconcile,
        signal,
    ));
    (ctx, metrics, stop)
}

fn widget(name: &str, configs: &[(&str, &str)]) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            replicas: None,
        },
    )
}

#[tokio::test]
async fn apply_prune_status_and_finalizer() {
    let ns = envtest::test_namespace("apply").await.unwrap();
    let (ctx, metrics, stop) = start_controller(&ns.name).await;
    let widgets: Api<Widget> = ns.api();
    let cms: Api<ConfigMap> = ns.api();

    // A foreign object carrying the owner label must survive pruning.
    let created = widgets
        .create(
            &PostParams::default(),
            &widget("w", &[("a", "1"), ("b", "2")]),
        )
        .await
        .unwrap();
    let uid = created.uid().unwrap();
    let foreign: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "w-foreign", "labels": { OWNER_UID_LABEL: uid } }
    }))
    .unwrap();
    cms.create(&PostParams::default(), &foreign).await.unwrap();

    let ready = eventually("widget ready", Duration::from_secs(30), || async {
        let w = widgets.get("w").await.ok()?;
        let st = w.status.clone()?;
        (st.observed_generation == w.metadata.generation
            && st.conditions.iter().any(|c| c.type_ == READY))
        .then_some(w)
    })
    .await;
    assert_eq!(ready.finalizers(), [FINALIZER.to_string()]);
    let a = cms.get("w-a").await.unwrap();
    let owner = &a.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Widget", uid.as_str(), Some(true))
    );
    assert_eq!(a.labels()[OWNER_UID_LABEL], uid);
    assert_eq!(a.data.unwrap()["value"], "1");
    let managers: Vec<_> = a
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&MANAGER.to_string()),
        "field manager: {managers:?}"
    );
    let first_transition = ready.status.as_ref().unwrap().conditions[0]
        .last_transition_time
        .clone();

    // Steady state: reconciling again writes nothing.
    let rv_before = (
        widgets.get("w").await.unwrap().resource_version(),
        cms.get("w-a").await.unwrap().resource_version(),
    );
    let patches_before = count(&metrics.encode(), "verb=\"patch\"");
    let n = ctx.reconciles.load(Ordering::SeqCst);
    // Nudge a reconcile through a child (the owner's spec is unchanged).
    cms.patch(
        "w-b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})),
    )
    .await
    .unwrap();
    eventually("another reconcile", Duration::from_secs(30), || async {
        (ctx.reconciles.load(Ordering::SeqCst) > n).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w_after = widgets.get("w").await.unwrap();
    assert_eq!(
        w_after.status.as_ref().unwrap().conditions[0].last_transition_time,
        first_transition
    );
    assert_eq!(
        cms.get("w-a").await.unwrap().resource_version(),
        rv_before.1,
        "unchanged child rewritten"
    );
    assert_eq!(
        w_after.resource_version(),
        rv_before.0,
        "unchanged status rewritten"
    );
    let patches = count(&metrics.encode(), "verb=\"patch\"") - patches_before;
    // One reconcile applies the two children (server-side no-ops) and skips
    // the unchanged status: two patches, not three.
    assert!(
        patches > 0 && patches.is_multiple_of(2),
        "expected only child applies, saw {patches} patches"
    );

    // Removing a key prunes its ConfigMap, never the foreign one.
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"configs": {"b": null}}})),
        )
        .await
        .unwrap();
    eventually("w-b pruned", Duration::from_secs(30), || async {
        cms.get_opt("w-b").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        cms.get_opt("w-foreign").await.unwrap().is_some(),
        "foreign object was pruned"
    );
    assert!(cms.get_opt("w-a").await.unwrap().is_some());

    // Deleting runs the finalizer's cleanup, then the object goes.
    widgets.delete("w", &DeleteParams::default()).await.unwrap();
    eventually("widget gone", Duration::from_secs(30), || async {
        widgets.get_opt("w").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);

    let text = metrics.encode();
    assert!(
        text.contains("operator_reconcile_total{controller=\"widget\"}"),
        "{text}"
    );
    assert!(count(&text, "verb=\"list\"") > 0, "{text}");
    assert!(count(&text, "verb=\"watch\"") > 0, "{text}");
    assert!(count(&text, "code=\"200\"") > 0, "{text}");
    stop.cancel();
}

#[tokio::test]
async fn undecodable_objects_get_a_warning_and_do_not_stop_others() {
    let ns = envtest::test_namespace("guard").await.unwrap();
    let (_ctx, _metrics, stop) = start_controller(&ns.name).await;
    let client = ns.client();
    let resource = kube::api::ApiResource::erase::<Widget>(&());
    let dynamic: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns.name, &resource);
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.operator-core.io/v1", "kind": "Widget",
        "metadata": { "name": "bad" }, "spec": { "replicas": "many" }
    }))
    .unwrap();
    dynamic.create(&PostParams::default(), &bad).await.unwrap();
    let widgets: Api<Widget> = ns.api();
    widgets
        .create(&PostParams::default(), &widget("good", &[("a", "1")]))
        .await
        .unwrap();

    eventually(
        "good widget reconciled",
        Duration::from_secs(30),
        || async {
            let w = widgets.get("good").await.ok()?;
            w.status?.observed_generation.map(|_| ())
        },
    )
    .await;
    let events: Api<CoreEvent> = ns.api();
    let warning = eventually("warning event on bad", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some("bad")
                && e.reason.as_deref() == Some("InvalidSpec")
        })
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        warning
            .message
            .unwrap_or_default()
            .contains("cannot decode")
    );
    stop.cancel();
}

fn count(text: &str, needle: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("operator_api_requests_total") && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn condition_transition_time_is_kept_without_a_flip() {
    let mut conditions = Vec::new();
    let t0 = Utc::now() - chrono::Duration::hours(1);
    assert!(set_condition(
        &mut conditions,
        ConditionUpdate::true_(READY, "A", "m"),
        t0
    ));
    assert!(!set_condition(
        &mut conditions,
        ConditionUpdate::true_(READY, "A", "m"),
        Utc::now()
    ));
    assert!(set_condition(
        &mut conditions,
        ConditionUpdate::true_(READY, "B", "m2"),
        Utc::now()
    ));
    assert_eq!(
        conditions[0].last_transition_time,
        operator_core::conditions::to_k8s_time(t0)
    );
}
