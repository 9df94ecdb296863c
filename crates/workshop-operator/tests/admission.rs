//! The Workshop CRD on a real API server (envtest): the committed CRD installs, the original
//! example applies unchanged and gets its defaults, invalid manifests are rejected at admission
//! with clear messages, and the controller records validation in the status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use operator_core::cli::RunArgs;
use operator_core::conditions;
use operator_core::metrics::Metrics;
use serde_json::{Value, json};
use workshop_operator::controllers::ACCEPTED;
use workshop_operator::crd::{IngressRouting, Workshop, WorkshopPhase};

const MANAGER: &str = "workshop-admission-test";
const WAIT: Duration = Duration::from_secs(30);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/workshop-operator")
}

fn yaml_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Installs the committed CRDs (idempotent) and waits until they are served.
async fn install_crds(client: &Client) {
    let names = envtest::manifest::install_crd_dir(client, &deploy_dir().join("crds"))
        .await
        .unwrap();
    assert!(names.contains(&"workshops.orchestra.io".to_string()));
}

fn dynamic_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<Workshop>(&()))
}

/// Merges `patch` into `base` (objects recursively; `null` removes a key).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn workshop(name: &str, patch: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "orchestra.io/v1",
        "kind": "Workshop",
        "metadata": { "name": name },
        "spec": { "name": "Intro to R" },
    });
    merge(&mut obj, &patch);
    obj
}

async fn create(client: &Client, ns: &str, obj: Value) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    dynamic_api(client, ns)
        .create(&PostParams::default(), &obj)
        .await
}

#[tokio::test]
async fn samples_apply_unchanged_and_read_back_with_defaults() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let samples = yaml_files(&deploy_dir().join("samples"));
    assert!(!samples.is_empty());
    for (file, yaml) in samples {
        let applied = envtest::manifest::apply_yaml(&client, &yaml, "default", MANAGER)
            .await
            .unwrap_or_else(|e| panic!("sample {file} rejected: {e:#}"));
        for obj in applied {
            let ns = obj.namespace().unwrap();
            let api: Api<Workshop> = Api::namespaced(client.clone(), &ns);
            let ws = api.get(&obj.name_any()).await.unwrap();
            // What the sample says is kept...
            let original: Value = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(
                ws.spec.name,
                original["spec"]["name"].as_str().unwrap(),
                "{file}"
            );
            // ...and what it leaves out is defaulted by the API server.
            assert_eq!(ws.spec.extension.step, "30m", "{file}");
            assert_eq!(ws.spec.extension.max, 2, "{file}");
            assert_eq!(ws.spec.extension.granted, 0, "{file}");
            assert_eq!(ws.spec.retention.after_expiry, "24h", "{file}");
            assert_eq!(ws.spec.prewarm, "15m", "{file}");
            assert_eq!(ws.spec.expiry_warning, "10m", "{file}");
            if let Some(ingress) = &ws.spec.ingress {
                assert_eq!(ingress.routing, IngressRouting::Path, "{file}");
            }
            api.delete(&obj.name_any(), &DeleteParams::default())
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_minimal_workshop_gets_every_default_of_the_original() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("ws-defaults").await.unwrap();
    create(&client, &ns.name, workshop("minimal", json!({})))
        .await
        .unwrap();
    let ws = ns.api::<Workshop>().get("minimal").await.unwrap();
    let s = &ws.spec;
    assert_eq!(s.duration, "4h");
    assert_eq!(s.participants, 1);
    assert_eq!(s.image, "rocker/rstudio:latest");
    assert_eq!(
        (
            &*s.resources.cpu,
            &*s.resources.memory,
            &*s.resources.cpu_request,
            &*s.resources.memory_request
        ),
        ("1", "2Gi", "500m", "1Gi")
    );
    assert_eq!(s.storage.size, "10Gi");
    assert_eq!(s.storage.storage_class, None);
    assert_eq!(s.ingress, None);
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_clear_messages() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("ws-invalid").await.unwrap();
    let long_name = "a".repeat(48);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "spaces in duration",
            json!({"spec": {"duration": "1h 30m"}}),
            "must be a duration like 4h",
        ),
        (
            "units out of order",
            json!({"spec": {"duration": "30m2h"}}),
            "must be a duration like 4h",
        ),
        (
            "unitless duration",
            json!({"spec": {"duration": "4"}}),
            "must be a duration like 4h",
        ),
        (
            "zero duration",
            json!({"spec": {"duration": "0h"}}),
            "must be greater than zero",
        ),
        (
            "duration too long",
            json!({"spec": {"duration": "31d"}}),
            "must be at most 30d",
        ),
        (
            "huge duration",
            json!({"spec": {"duration": "99999999999h"}}),
            "must be at most 30d",
        ),
        (
            "prewarm too long",
            json!({"spec": {"prewarm": "8d"}}),
            "must be at most 7d",
        ),
        (
            "bad retention",
            json!({"spec": {"retention": {"afterExpiry": "forever"}}}),
            "must be a duration like",
        ),
        (
            "zero extension step",
            json!({"spec": {"extension": {"step": "0m"}}}),
            "must be greater than zero",
        ),
        (
            "too many extensions granted",
            json!({"spec": {"extension": {"granted": 3}}}),
            "extension.granted must not be greater than extension.max",
        ),
        (
            "no participants",
            json!({"spec": {"participants": 0}}),
            "should be greater than or equal to 1",
        ),
        (
            "too many participants",
            json!({"spec": {"participants": 201}}),
            "should be less than or equal to 200",
        ),
        (
            "count and list disagree",
            json!({"spec": {"participants": 3, "participantList": [{"id": "ada"}, {"id": "grace"}]}}),
            "participants must equal the number of entries in participantList",
        ),
        (
            "duplicate participant",
            json!({"spec": {"participantList": [{"id": "ada"}, {"id": "ada"}]}}),
            "Duplicate value",
        ),
        (
            "participant id not a DNS label",
            json!({"spec": {"participantList": [{"id": "Ada"}]}}),
            "must be lower-case letters, digits and '-'",
        ),
        (
            "bad e-mail",
            json!({"spec": {"participantList": [{"id": "ada", "email": "ada at example.com"}]}}),
            "must be an e-mail address",
        ),
        (
            "cpu not a quantity",
            json!({"spec": {"resources": {"cpu": "two"}}}),
            "must be a quantity such as 500m",
        ),
        (
            "zero memory",
            json!({"spec": {"resources": {"memory": "0"}}}),
            "must be greater than zero",
        ),
        (
            "request above the limit",
            json!({"spec": {"resources": {"cpu": "250m"}}}),
            "cpuRequest (500m by default) must not be greater than cpu",
        ),
        (
            "memory request above the limit",
            json!({"spec": {"resources": {"memory": "1Gi", "memoryRequest": "2Gi"}}}),
            "memoryRequest (1Gi by default) must not be greater than memory",
        ),
        (
            "storage not a quantity",
            json!({"spec": {"storage": {"size": "10 GB"}}}),
            "must be a quantity",
        ),
        (
            "upper-case host",
            json!({"spec": {"ingress": {"host": "Workshop.Example.com"}}}),
            "must be a lower-case DNS name",
        ),
        (
            "underscore in host",
            json!({"spec": {"ingress": {"host": "data_science.example.com"}}}),
            "must be a lower-case DNS name",
        ),
        (
            "host routing without host",
            json!({"spec": {"ingress": {"routing": "Host"}}}),
            "routing Host needs ingress.host",
        ),
        (
            "unknown routing",
            json!({"spec": {"ingress": {"routing": "Cookie"}}}),
            "Unsupported value: \"Cookie\"",
        ),
        (
            "bad TLS secret name",
            json!({"spec": {"ingress": {"tlsSecretName": "My Cert"}}}),
            "must be a Secret name",
        ),
        (
            "image with spaces",
            json!({"spec": {"image": "rocker/rstudio latest"}}),
            "image reference without spaces",
        ),
        (
            "start time not RFC 3339",
            json!({"spec": {"startTime": "tomorrow 9am"}}),
            "date-time",
        ),
        (
            "missing display name",
            json!({"spec": {"name": null}}),
            "Required value",
        ),
        (
            "name starting with a digit",
            json!({"metadata": {"name": "101-intro"}}),
            "metadata.name must start with a lower-case letter",
        ),
        (
            "name too long",
            json!({"metadata": {"name": long_name}}),
            "metadata.name must be at most 47 characters",
        ),
        (
            "name and participant id too long together",
            json!({"metadata": {"name": "a".repeat(40)}, "spec": {"participantList": [{"id": "a".repeat(15)}]}}),
            "metadata.name and each participant id together must be at most 54 characters",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (case, patch, expected)) in cases.into_iter().enumerate() {
        let obj = workshop(&format!("invalid-{i}"), patch);
        match create(&client, &ns.name, obj).await {
            Ok(_) => failures.push(format!("{case}: accepted")),
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(expected) => {}
            Err(e) => failures.push(format!("{case}: expected 422 with {expected:?}, got: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Valid edge values are accepted.
    let valid: Vec<Value> = vec![
        json!({"spec": {"duration": "30d", "extension": {"max": 0}}}),
        json!({"spec": {"duration": "1d2h30m15s"}}),
        json!({"spec": {"participants": 200}}),
        json!({"spec": {"participants": 2, "participantList": [{"id": "ada", "email": "ada@example.com"}, {"id": "grace"}]}}),
        json!({"spec": {"prewarm": "0s", "expiryWarning": "0m", "retention": {"afterExpiry": "0s"}}}),
        json!({"spec": {"resources": {"cpu": "250m", "cpuRequest": "250m"}}}),
        json!({"spec": {"storage": {"storageClass": ""}, "ingress": {"host": ""}}}),
        json!({"spec": {"startTime": "2030-01-06T09:00:00+01:00", "ingress": {"host": "ws.example.com", "routing": "Host", "tlsSecretName": "ws-tls", "ingressClassName": "traefik"}}}),
        json!({"metadata": {"name": "a".repeat(47)}}),
    ];
    for (i, patch) in valid.into_iter().enumerate() {
        let obj = workshop(&format!("valid-{i}"), patch.clone());
        create(&client, &ns.name, obj)
            .await
            .unwrap_or_else(|e| panic!("valid case {patch} rejected: {e}"));
    }
}

/// Updates Kubernetes cannot carry out on existing home volumes are rejected at admission;
/// growing the volumes is accepted.
#[tokio::test]
async fn home_volumes_cannot_shrink_or_change_class() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("ws-storage").await.unwrap();
    create(
        &client,
        &ns.name,
        workshop(
            "homes",
            json!({"spec": {"storage": {"size": "10Gi", "storageClass": "fast-ssd"}}}),
        ),
    )
    .await
    .unwrap();
    let api = dynamic_api(&client, &ns.name);
    let patch = |storage: Value| {
        let api = api.clone();
        async move {
            api.patch(
                "homes",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"storage": storage}})),
            )
            .await
        }
    };
    let cases = [
        (json!({"size": "5Gi"}), "storage.size cannot shrink"),
        (json!({"size": "10000Mi"}), "storage.size cannot shrink"),
        (
            json!({"storageClass": "slow-hdd"}),
            "storage.storageClass cannot change",
        ),
        (
            json!({"storageClass": null}),
            "storage.storageClass cannot change",
        ),
    ];
    for (storage, expected) in cases {
        match patch(storage.clone()).await {
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(expected) => {}
            other => panic!("{storage}: expected 422 with {expected:?}, got {other:?}"),
        }
    }
    // Growing is allowed (the StorageClass decides whether the claims can follow).
    patch(json!({"size": "20Gi"})).await.unwrap();
    patch(json!({"size": "20Gi", "storageClass": "fast-ssd"}))
        .await
        .unwrap();
}

fn accepted(ws: &Workshop) -> Option<(String, String, String, Option<i64>)> {
    let status = ws.status.as_ref()?;
    let c = conditions::find(&status.conditions, ACCEPTED)?;
    Some((
        c.status.clone(),
        c.reason.clone(),
        c.message.clone(),
        c.observed_generation,
    ))
}

#[tokio::test]
async fn the_controller_records_validation_in_status() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("ws-controller").await.unwrap();
    let args = RunArgs {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        watch_namespace: Some(ns.name.clone()),
        crd_wait: Duration::from_secs(30),
        ..RunArgs::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let operator = tokio::spawn(operator_core::runtime::run_with_client(
        &workshop_operator::OPERATOR,
        args,
        client.clone(),
        Metrics::new(),
        move |rt| {
            let _ = tx.send(rt.shutdown_token());
            workshop_operator::controllers::run(rt)
        },
    ));
    let shutdown = rx.await.expect("the operator started");

    let api = ns.api::<Workshop>();
    // Valid at admission, but the duration plus every allowed extension exceeds 30 days:
    // only the controller can tell.
    create(
        &client,
        &ns.name,
        workshop(
            "too-long",
            json!({"spec": {"duration": "29d", "extension": {"step": "1d", "max": 2}}}),
        ),
    )
    .await
    .unwrap();
    create(&client, &ns.name, workshop("fine", json!({})))
        .await
        .unwrap();

    let fine = envtest::eventually("fine to be accepted", WAIT, || async {
        let ws = api.get("fine").await.ok()?;
        accepted(&ws).is_some().then_some(ws)
    })
    .await;
    let (status, reason, _, generation) = accepted(&fine).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Valid"));
    let st = fine.status.as_ref().unwrap();
    assert_eq!(st.observed_generation, fine.metadata.generation);
    assert_eq!(generation, fine.metadata.generation);
    // Valid: provisioning starts.
    assert!(
        matches!(
            st.phase,
            Some(WorkshopPhase::Creating | WorkshopPhase::Ready)
        ),
        "{:?}",
        st.phase
    );

    let too_long = envtest::eventually("too-long to be judged", WAIT, || async {
        let ws = api.get("too-long").await.ok()?;
        accepted(&ws).is_some().then_some(ws)
    })
    .await;
    let (status, reason, message, _) = accepted(&too_long).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidDuration")
    );
    assert_eq!(
        message,
        "spec.duration plus every allowed extension (29d + 2 x 1d) must be at most 30d"
    );
    // Invalid: nothing is created, the phase says so.
    assert_eq!(
        too_long.status.as_ref().unwrap().phase,
        Some(WorkshopPhase::Failed)
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let warning = envtest::eventually("a Warning event", WAIT, || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=too-long"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.type_.as_deref() == Some("Warning"))
    })
    .await;
    assert_eq!(warning.reason.as_deref(), Some("InvalidDuration"));
    assert!(
        warning
            .message
            .unwrap_or_default()
            .contains("must be at most 30d")
    );

    // Fixing the spec flips the condition and records the new generation.
    api.patch(
        "too-long",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"extension": {"max": 1}}})),
    )
    .await
    .unwrap();
    let fixed = envtest::eventually("too-long to be accepted", WAIT, || async {
        let ws = api.get("too-long").await.ok()?;
        let (status, ..) = accepted(&ws)?;
        (status == "True").then_some(ws)
    })
    .await;
    assert_eq!(fixed.metadata.generation, Some(2));
    assert_eq!(fixed.status.as_ref().unwrap().observed_generation, Some(2));

    // Steady state: once every session is ready, nothing more is written.
    envtest::eventually("fine to be Ready", WAIT, || async {
        let ws = api.get("fine").await.ok()?;
        (ws.status?.phase == Some(WorkshopPhase::Ready)).then_some(())
    })
    .await;
    let rv = api.get("fine").await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.get("fine").await.unwrap().resource_version(), rv);

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
