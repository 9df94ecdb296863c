//! The Workshop operator provisioning for real (envtest: API server, controller manager with
//! garbage collection, scheduler, KWOK nodes marking pods Ready and binding volumes), with the
//! controllers running in-process through `operator_core::runtime::run_with_client`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use envtest::{TestNamespace, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use operator_core::cli::RunArgs;
use operator_core::metrics::Metrics;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use workshop_operator::crd::{Workshop, WorkshopPhase};

const MANAGER: &str = "workshop-provisioning-test";
const WAIT: Duration = Duration::from_secs(60);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/workshop-operator")
}

async fn install_crds(client: &Client) {
    let names = envtest::manifest::install_crd_dir(client, &deploy_dir().join("crds"))
        .await
        .unwrap();
    assert_eq!(names, ["workshops.orchestra.io"]);
}

/// The operator, watching only `ns`, until the returned token is cancelled. Its client counts
/// its API requests in the returned metrics, as in production; it serves them on the returned
/// port.
async fn start_operator(
    ns: &TestNamespace,
) -> (CancellationToken, tokio::task::JoinHandle<()>, Metrics, u16) {
    install_crds(&ns.client()).await;
    let metrics = Metrics::new();
    let kubeconfig = kube::config::Kubeconfig::read_from(envtest::shared().kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&metrics.api_layer())
        .build();
    let operator_metrics = metrics.clone();
    let port = envtest::process::free_port().unwrap();
    let args = RunArgs {
        metrics_addr: ([127, 0, 0, 1], port).into(),
        watch_namespace: Some(ns.name.clone()),
        crd_wait: Duration::from_secs(30),
        ..RunArgs::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let result = operator_core::runtime::run_with_client(
            &workshop_operator::OPERATOR,
            args,
            client,
            operator_metrics,
            move |rt| {
                let _ = tx.send(rt.shutdown_token());
                workshop_operator::controllers::run(rt)
            },
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
    });
    (
        rx.await.expect("the operator started"),
        handle,
        metrics,
        port,
    )
}

/// `GET /metrics` from the running operator's HTTP endpoint.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    raw
}

/// The value of the sample `series` (name and labels exactly as served).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn event_reasons(ns: &TestNamespace, name: &str) -> Vec<String> {
    ns.api::<Event>()
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// The operator's write requests so far (create, update, patch, delete) and reconciles.
fn writes_and_reconciles(metrics: &Metrics) -> (u64, u64) {
    let text = metrics.encode();
    let sum = |prefix: &str, needles: &[&str]| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with(prefix)
                    && (needles.is_empty() || needles.iter().any(|n| l.contains(n)))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let writes = sum(
        "operator_api_requests_total",
        &[
            "verb=\"create\"",
            "verb=\"update\"",
            "verb=\"patch\"",
            "verb=\"delete\"",
        ],
    );
    (writes, sum("operator_reconcile_total", &[]))
}

async fn stop(token: CancellationToken, handle: tokio::task::JoinHandle<()>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .expect("the operator stopped")
        .unwrap();
}

async fn create(ns: &TestNamespace, name: &str, spec: Value) -> Workshop {
    let ws: Workshop = serde_json::from_value(json!({
        "apiVersion": "orchestra.io/v1",
        "kind": "Workshop",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    ns.api::<Workshop>()
        .create(&PostParams::default(), &ws)
        .await
        .unwrap()
}

async fn wait_phase(ns: &TestNamespace, name: &str, phase: WorkshopPhase) -> Workshop {
    let api = ns.api::<Workshop>();
    eventually(&format!("{name} to be {phase:?}"), WAIT, || async {
        let ws = api.get(name).await.ok()?;
        let st = ws.status.as_ref()?;
        (st.phase == Some(phase) && st.observed_generation == ws.metadata.generation).then_some(ws)
    })
    .await
}

fn names<K: Resource>(items: &[K]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|o| o.name_any()).collect();
    v.sort();
    v
}

async fn list<K>(ns: &TestNamespace, selector: &str) -> Vec<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    ns.api::<K>()
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .collect()
}

async fn passwords(ns: &TestNamespace, workshop: &str) -> BTreeMap<String, String> {
    list::<Secret>(ns, &format!("workshop={workshop}"))
        .await
        .into_iter()
        .map(|s| {
            let pw = s.data.as_ref().unwrap()["password"].0.clone();
            (s.name_any(), String::from_utf8(pw).unwrap())
        })
        .collect()
}

/// resourceVersion of every object labelled `workshop=<name>`, by kind/name.
async fn versions(ns: &TestNamespace, workshop: &str) -> BTreeMap<String, String> {
    let sel = format!("workshop={workshop}");
    let mut out = BTreeMap::new();
    let mut add = |kind: &str, items: Vec<(String, String)>| {
        for (n, rv) in items {
            out.insert(format!("{kind}/{n}"), rv);
        }
    };
    fn rv<K: Resource>(items: Vec<K>) -> Vec<(String, String)> {
        items
            .into_iter()
            .map(|o| (o.name_any(), o.resource_version().unwrap()))
            .collect()
    }
    add("secret", rv(list::<Secret>(ns, &sel).await));
    add("pvc", rv(list::<PersistentVolumeClaim>(ns, &sel).await));
    add("deployment", rv(list::<Deployment>(ns, &sel).await));
    add("service", rv(list::<Service>(ns, &sel).await));
    add("ingress", rv(list::<Ingress>(ns, &sel).await));
    out
}

/// The original document's example, applied unchanged except for its namespace. Its
/// `fast-ssd` StorageClass does not exist on the test cluster, so a PersistentVolume of that
/// class is provided for the claim (static binding by the controller manager).
#[tokio::test]
async fn the_original_example_provisions_and_goes_ready() {
    let ns = envtest::test_namespace("ws-sample").await.unwrap();
    let (token, handle, _metrics, port) = start_operator(&ns).await;

    let yaml = std::fs::read_to_string(deploy_dir().join("samples/workshop-example.yaml")).unwrap();
    let mut obj: DynamicObject = serde_yaml::from_str(&yaml).unwrap();
    obj.metadata.namespace = Some(ns.name.clone());
    let name = obj.name_any();
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": format!("{}-fast-ssd", ns.name)},
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "fast-ssd",
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": format!("/tmp/{}", ns.name)},
            "claimRef": {"namespace": ns.name, "name": format!("{name}-user1-home")}
        }
    }))
    .unwrap();
    Api::<PersistentVolume>::all(ns.client())
        .create(&PostParams::default(), &pv)
        .await
        .unwrap();
    envtest::manifest::apply_object(&ns.client(), obj, &ns.name, MANAGER)
        .await
        .unwrap();

    let ws = wait_phase(&ns, &name, WorkshopPhase::Ready).await;
    let st = ws.status.clone().unwrap();
    assert_eq!(
        st.url.as_deref(),
        Some("http://workshop.example.com/user1/")
    );
    assert_eq!(st.ready.as_deref(), Some("1/1"));
    assert_eq!(st.participants.len(), 1);
    let p = &st.participants[0];
    assert_eq!(
        (p.id.as_str(), p.ready, p.credentials_secret.as_deref()),
        ("user1", true, Some("data-science-101-user1-credentials"))
    );
    // expiresAt = creation + 4h.
    let created = ws.metadata.creation_timestamp.clone().unwrap();
    assert_eq!(st.created_at, Some(created.clone()));
    assert_eq!(
        st.expires_at.unwrap().0.as_second() - created.0.as_second(),
        4 * 3600
    );

    // Everything is found by the original's label.
    let sel = format!("workshop={name}");
    let pvcs = list::<PersistentVolumeClaim>(&ns, &sel).await;
    assert_eq!(names(&pvcs), ["data-science-101-user1-home"]);
    let pvc = &pvcs[0];
    assert_eq!(
        pvc.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("fast-ssd")
    );
    assert_eq!(pvc.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
    let services = list::<Service>(&ns, &sel).await;
    assert_eq!(
        names(&services),
        ["data-science-101-service", "data-science-101-user1-service"]
    );
    let svc = services
        .iter()
        .find(|s| s.name_any() == "data-science-101-service")
        .unwrap();
    let svc_port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(svc_port.port, 80);
    assert_eq!(
        svc_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8787))
    );
    // Path routing: the participant's Service leads to the path proxy, which strips /user1 and
    // sets X-RStudio-Root-Path (tests/path_proxy.rs runs its configuration).
    let participant_svc = services
        .iter()
        .find(|s| s.name_any() == "data-science-101-user1-service")
        .unwrap();
    assert_eq!(
        participant_svc
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()[0]
            .target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
    );
    let proxy_config = ns
        .api::<k8s_openapi::api::core::v1::ConfigMap>()
        .get("data-science-101-proxy")
        .await
        .unwrap();
    assert!(proxy_config.data.unwrap()["default.conf"].contains("X-RStudio-Root-Path"));
    let pods = list::<k8s_openapi::api::core::v1::Pod>(&ns, &sel).await;
    assert_eq!(pods.len(), 1, "one RStudio pod");
    let pod_spec = pods[0].spec.as_ref().unwrap();
    let containers: Vec<&str> = pod_spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(containers, ["rstudio", "path-proxy"]);
    let c = &pod_spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("rocker/rstudio:latest"));
    let env: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(env.contains(&"PASSWORD") && !env.contains(&"DISABLE_AUTH"));
    assert_eq!(
        c.volume_mounts.as_ref().unwrap()[0].mount_path,
        "/home/rstudio"
    );
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(
        (limits["cpu"].0.as_str(), limits["memory"].0.as_str()),
        ("2", "4Gi")
    );

    let ingresses = list::<Ingress>(&ns, &sel).await;
    assert_eq!(names(&ingresses), ["data-science-101-ingress"]);
    let ing = &ingresses[0];
    assert_eq!(ing.annotations()["kubernetes.io/ingress.class"], "traefik");
    let rule = &ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("workshop.example.com"));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(path.path.as_deref(), Some("/user1"));
    assert_eq!(
        path.backend.service.as_ref().unwrap().name,
        "data-science-101-user1-service"
    );

    // Owned by the Workshop: deleting it removes everything.
    for d in list::<Deployment>(&ns, &sel).await {
        let owner = &d.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Workshop", name.as_str(), Some(true))
        );
    }
    let pw = passwords(&ns, &name).await;
    assert_eq!(pw.len(), 1);
    assert_eq!(pw.values().next().unwrap().len(), 20);

    // The operator's own metrics, scraped from its /metrics endpoint.
    let text = scrape(port).await;
    assert_eq!(
        sample(&text, "operator_workshops{phase=\"Ready\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "operator_workshops{phase=\"Creating\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "operator_workshop_participants_ready"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "operator_workshop_participants"), Some(1.0));
    assert_eq!(
        sample(&text, "operator_workshop_time_to_ready_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "operator_workshop_expirations_total"),
        Some(0.0)
    );
    let reasons = event_reasons(&ns, &name).await;
    for expected in ["Provisioning", "Ready"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} in {reasons:?}"
        );
    }

    // While a deletion is held up (here by a finalizer; foreground deletion does the same),
    // the phase says Terminating.
    let api = ns.api::<Workshop>();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["test.orchestra.io/hold"]}})),
    )
    .await
    .unwrap();
    api.delete(&name, &Default::default()).await.unwrap();
    wait_phase(&ns, &name, WorkshopPhase::Terminating).await;
    eventually("the Terminating event", WAIT, || async {
        event_reasons(&ns, &name)
            .await
            .contains(&"Terminating".to_string())
            .then_some(())
    })
    .await;
    let text = scrape(port).await;
    assert_eq!(
        sample(&text, "operator_workshops{phase=\"Terminating\"}"),
        Some(1.0)
    );

    // Deleting the Workshop removes everything it owns (garbage collection).
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the children to be garbage collected", WAIT, || async {
        (list::<Deployment>(&ns, &sel).await.is_empty()
            && list::<Service>(&ns, &sel).await.is_empty()
            && list::<Ingress>(&ns, &sel).await.is_empty()
            && list::<Secret>(&ns, &sel).await.is_empty()
            && list::<k8s_openapi::api::core::v1::ConfigMap>(&ns, &sel)
                .await
                .is_empty()
            && list::<PersistentVolumeClaim>(&ns, &sel).await.is_empty())
        .then_some(())
    })
    .await;
    let text = scrape(port).await;
    assert_eq!(
        sample(&text, "operator_workshops{phase=\"Terminating\"}"),
        Some(0.0)
    );

    stop(token, handle).await;
}

#[tokio::test]
async fn participants_scale_down_keeping_homes_and_passwords() {
    let ns = envtest::test_namespace("ws-scale").await.unwrap();
    let (token, handle, metrics, _port) = start_operator(&ns).await;
    let api = ns.api::<Workshop>();
    create(
        &ns,
        "class",
        json!({
            "name": "R for beginners",
            "participants": 3,
            "resources": {"cpu": "500m", "memory": "1Gi", "cpuRequest": "100m", "memoryRequest": "256Mi"},
            "storage": {"size": "1Gi"},
            "ingress": {"host": "ws.example.com", "routing": "Host", "tlsSecretName": "wildcard-tls", "ingressClassName": "traefik"}
        }),
    )
    .await;
    let ws = wait_phase(&ns, "class", WorkshopPhase::Ready).await;
    let st = ws.status.unwrap();
    let urls: Vec<&str> = st
        .participants
        .iter()
        .map(|p| p.url.as_deref().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "https://user1.ws.example.com/",
            "https://user2.ws.example.com/",
            "https://user3.ws.example.com/"
        ]
    );
    assert_eq!(st.url.as_deref(), Some("https://ws.example.com/"));
    assert_eq!(
        (st.ready_participants, st.total_participants),
        (Some(3), Some(3))
    );
    let sel = "workshop=class";
    assert_eq!(
        names(&list::<Deployment>(&ns, sel).await),
        ["class-user1", "class-user2", "class-user3"]
    );
    let pvc_names = ["class-user1-home", "class-user2-home", "class-user3-home"];
    assert_eq!(
        names(&list::<PersistentVolumeClaim>(&ns, sel).await),
        pvc_names
    );
    let before = passwords(&ns, "class").await;
    assert_eq!(before.len(), 3);
    let distinct: std::collections::BTreeSet<&String> = before.values().collect();
    assert_eq!(distinct.len(), 3, "each participant has their own password");
    let ing = &list::<Ingress>(&ns, sel).await[0];
    let spec = ing.spec.as_ref().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("traefik"));
    assert_eq!(
        spec.tls.as_ref().unwrap()[0].secret_name.as_deref(),
        Some("wildcard-tls")
    );

    // 3 -> 2: user3's session goes, their home and credentials stay.
    api.patch(
        "class",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"participants": 2}})),
    )
    .await
    .unwrap();
    eventually("user3's session to be removed", WAIT, || async {
        let d = list::<Deployment>(&ns, sel).await;
        let s = list::<Service>(&ns, sel).await;
        (names(&d) == ["class-user1", "class-user2"]
            && names(&s)
                == [
                    "class-service",
                    "class-user1-service",
                    "class-user2-service",
                ])
        .then_some(())
    })
    .await;
    let ws = wait_phase(&ns, "class", WorkshopPhase::Ready).await;
    let st = ws.status.unwrap();
    assert_eq!(st.ready.as_deref(), Some("2/2"));
    assert_eq!(st.participants.len(), 2);
    assert_eq!(
        names(&list::<PersistentVolumeClaim>(&ns, sel).await),
        pvc_names
    );
    assert_eq!(passwords(&ns, "class").await, before);
    let rules = list::<Ingress>(&ns, sel).await[0]
        .spec
        .clone()
        .unwrap()
        .rules
        .unwrap();
    assert_eq!(rules.len(), 2);

    // Steady state: no writes at all, not even no-op patches, and no reconciles.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let versions_before = versions(&ns, "class").await;
    let ws_rv = api.get("class").await.unwrap().resource_version();
    let counts = writes_and_reconciles(&metrics);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(versions(&ns, "class").await, versions_before);
    assert_eq!(api.get("class").await.unwrap().resource_version(), ws_rv);
    assert_eq!(
        writes_and_reconciles(&metrics),
        counts,
        "(writes, reconciles) while idle"
    );

    // A re-reconcile (a spec change that does not affect the children) rewrites nothing, and
    // the passwords survive it.
    api.patch(
        "class",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"name": "R for beginners (spring)"}})),
    )
    .await
    .unwrap();
    let ws = wait_phase(&ns, "class", WorkshopPhase::Ready).await;
    assert_eq!(ws.metadata.generation, Some(3));
    assert_eq!(versions(&ns, "class").await, versions_before);
    assert_eq!(passwords(&ns, "class").await, before);

    // Updates take effect: the image and resources roll out (new pods, Ready again), the
    // duration moves expiresAt.
    let old_pods = names(&list::<k8s_openapi::api::core::v1::Pod>(&ns, sel).await);
    api.patch(
        "class",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "image": "rocker/rstudio:4.4.1",
            "duration": "8h",
            "resources": {"cpu": "750m", "memory": "1536Mi", "cpuRequest": "200m", "memoryRequest": "512Mi"}
        }})),
    )
    .await
    .unwrap();
    let ws = wait_phase(&ns, "class", WorkshopPhase::Ready).await;
    for d in list::<Deployment>(&ns, sel).await {
        let c = d.spec.unwrap().template.spec.unwrap().containers[0].clone();
        assert_eq!(c.image.as_deref(), Some("rocker/rstudio:4.4.1"));
        let r = c.resources.unwrap();
        assert_eq!(r.limits.unwrap()["memory"].0, "1536Mi");
        assert_eq!(r.requests.unwrap()["cpu"].0, "200m");
    }
    let pods = eventually("only updated pods", WAIT, || async {
        let pods = list::<k8s_openapi::api::core::v1::Pod>(&ns, sel).await;
        let updated = pods.iter().all(|p| {
            p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("rocker/rstudio:4.4.1")
        });
        (updated && pods.len() == 2).then_some(pods)
    })
    .await;
    assert!(
        names(&pods).iter().all(|p| !old_pods.contains(p)),
        "new pods {:?}, old {old_pods:?}",
        names(&pods)
    );
    let reasons = event_reasons(&ns, "class").await;
    for expected in ["SessionsRemoved", "Updated"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} in {reasons:?}"
        );
    }
    let st = ws.status.unwrap();
    assert_eq!(
        st.expires_at.unwrap().0.as_second() - st.created_at.unwrap().0.as_second(),
        8 * 3600
    );

    // Back to 3: user3 gets their old home and password again.
    api.patch(
        "class",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"participants": 3}})),
    )
    .await
    .unwrap();
    let ws = wait_phase(&ns, "class", WorkshopPhase::Ready).await;
    assert_eq!(ws.status.unwrap().ready.as_deref(), Some("3/3"));
    assert_eq!(passwords(&ns, "class").await, before);

    // Growing the homes where the StorageClass cannot expand volumes (the test cluster's
    // kwok-volume): the sessions keep running, the status and a Warning event say why.
    api.patch(
        "class",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"storage": {"size": "2Gi"}}})),
    )
    .await
    .unwrap();
    let ws = wait_phase(&ns, "class", WorkshopPhase::Ready).await;
    let degraded = operator_core::conditions::find(
        &ws.status.as_ref().unwrap().conditions,
        operator_core::conditions::DEGRADED,
    )
    .unwrap()
    .clone();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "HomeVolumeNotUpdated"),
        "{degraded:?}"
    );
    assert!(
        degraded.message.contains("class-user1-home"),
        "{}",
        degraded.message
    );
    eventually("the HomeVolumeNotUpdated event", WAIT, || async {
        event_reasons(&ns, "class")
            .await
            .contains(&"HomeVolumeNotUpdated".to_string())
            .then_some(())
    })
    .await;

    stop(token, handle).await;
}

#[tokio::test]
async fn a_short_workshop_expires_keeps_homes_then_is_removed() {
    let ns = envtest::test_namespace("ws-expiry").await.unwrap();
    let (token, handle, _metrics, port) = start_operator(&ns).await;
    let api = ns.api::<Workshop>();
    create(
        &ns,
        "short",
        json!({
            "name": "Lunch break R",
            "duration": "5s",
            "participants": 2,
            "resources": {"cpu": "500m", "memory": "1Gi", "cpuRequest": "100m", "memoryRequest": "256Mi"},
            "storage": {"size": "1Gi"},
        }),
    )
    .await;
    let sel = "workshop=short";
    let ws = wait_phase(&ns, "short", WorkshopPhase::Expired).await;
    let st = ws.status.unwrap();
    let expires = st.expires_at.clone().unwrap();
    assert_eq!(
        expires.0.as_second() - st.created_at.unwrap().0.as_second(),
        5
    );
    // On time (requeue at expiresAt, not a polling interval).
    let now = k8s_openapi::jiff::Timestamp::now();
    assert!(
        now.as_second() - expires.0.as_second() < 10,
        "expired late: now {now}, expiresAt {}",
        expires.0
    );
    assert_eq!(st.ready.as_deref(), Some("0/2"));
    eventually("the sessions to stop", WAIT, || async {
        (list::<Deployment>(&ns, sel).await.is_empty()
            && list::<Service>(&ns, sel).await.is_empty())
        .then_some(())
    })
    .await;
    // The work is kept (default retention 24h).
    assert_eq!(
        names(&list::<PersistentVolumeClaim>(&ns, sel).await),
        ["short-user1-home", "short-user2-home"]
    );
    assert_eq!(passwords(&ns, "short").await.len(), 2);

    let events: Api<Event> = ns.api();
    let reasons: Vec<String> = events
        .list(&ListParams::default().fields("involvedObject.name=short"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for expected in ["ExpiringSoon", "Expired"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} in {reasons:?}"
        );
    }
    let text = scrape(port).await;
    assert_eq!(
        sample(&text, "operator_workshop_expirations_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "operator_workshops{phase=\"Expired\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "operator_workshop_participants_ready"),
        Some(0.0)
    );

    // Once the retention is over, the workshop and everything it owns go.
    api.patch(
        "short",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"retention": {"afterExpiry": "1s"}}})),
    )
    .await
    .unwrap();
    eventually("the workshop to be removed", WAIT, || async {
        api.get_opt("short").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually("its volumes to be garbage collected", WAIT, || async {
        list::<PersistentVolumeClaim>(&ns, sel)
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    stop(token, handle).await;
}

#[tokio::test]
async fn a_scheduled_workshop_is_prewarmed_then_running() {
    let ns = envtest::test_namespace("ws-scheduled").await.unwrap();
    let (token, handle, _metrics, _port) = start_operator(&ns).await;
    let start = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(12))
        .unwrap();
    let start = k8s_openapi::jiff::Timestamp::from_second(start.as_second()).unwrap();
    create(
        &ns,
        "morning",
        json!({
            "name": "Morning class",
            "startTime": start.to_string(),
            "prewarm": "6s",
            "resources": {"cpu": "500m", "memory": "1Gi", "cpuRequest": "100m", "memoryRequest": "256Mi"},
            "storage": {"size": "1Gi"},
        }),
    )
    .await;
    let sel = "workshop=morning";
    // Before the pre-warm time: credentials and home, no session.
    let ws = wait_phase(&ns, "morning", WorkshopPhase::Pending).await;
    assert_eq!(
        ws.status.unwrap().expires_at.unwrap().0.as_second(),
        start.as_second() + 4 * 3600
    );
    assert_eq!(
        names(&list::<PersistentVolumeClaim>(&ns, sel).await),
        ["morning-user1-home"]
    );
    assert!(list::<Deployment>(&ns, sel).await.is_empty());
    // Pre-warmed: the session is created ahead of the start, so the class does not wait.
    let deployment = eventually("the pre-warmed session", WAIT, || async {
        list::<Deployment>(&ns, sel).await.into_iter().next()
    })
    .await;
    let created = deployment.metadata.creation_timestamp.unwrap().0;
    assert!(
        created < start && created.as_second() >= start.as_second() - 7,
        "session created at {created}, start {start}"
    );
    // After the start: Running.
    wait_phase(&ns, "morning", WorkshopPhase::Running).await;
    stop(token, handle).await;
}
