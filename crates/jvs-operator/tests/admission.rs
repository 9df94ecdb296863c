//! The Workspace and Snapshot CRDs on a real API server (envtest): the committed CRDs install, the
//! document's samples apply unchanged and get their defaults, invalid manifests (including
//! compression jvs cannot do) are rejected at admission with clear messages, and the
//! controllers record validation in the status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jvs_operator::controllers::ACCEPTED;
use jvs_operator::crd::{
    CompressionType, QuiesceMode, Snapshot, SnapshotEngine, SnapshotPhase, StorageDeletionPolicy,
    Workspace, WorkspacePhase,
};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, Resource, ResourceExt};
use operator_core::cli::RunArgs;
use operator_core::conditions;
use operator_core::metrics::Metrics;
use serde_json::{Value, json};

const MANAGER: &str = "jvs-admission-test";
const WAIT: Duration = Duration::from_secs(30);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/jvs-operator")
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
    let mut names = envtest::manifest::install_crd_dir(client, &deploy_dir().join("crds"))
        .await
        .unwrap();
    names.sort();
    assert_eq!(names, ["snapshots.jvs.io", "workspaces.jvs.io"]);
}

fn dynamic_api<K: Resource<DynamicType = ()>>(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()))
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

fn workspace(name: &str, patch: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "jvs.io/v1alpha1",
        "kind": "Workspace",
        "metadata": { "name": name },
        "spec": {},
    });
    merge(&mut obj, &patch);
    obj
}

fn snapshot(name: &str, patch: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "jvs.io/v1alpha1",
        "kind": "Snapshot",
        "metadata": { "name": name },
        "spec": { "workspace": "ml-workspace" },
    });
    merge(&mut obj, &patch);
    obj
}

async fn create(client: &Client, ns: &str, obj: Value) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    let api = match obj.types.as_ref().map(|t| t.kind.as_str()) {
        Some("Workspace") => dynamic_api::<Workspace>(client, ns),
        Some("Snapshot") => dynamic_api::<Snapshot>(client, ns),
        other => panic!("unexpected kind {other:?}"),
    };
    api.create(&PostParams::default(), &obj).await
}

/// Creates each case and collects those not rejected with 422 and the expected substring.
async fn expect_rejections(
    client: &Client,
    ns: &str,
    cases: Vec<(&str, Value, &str)>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (case, obj, expected) in cases {
        match create(client, ns, obj).await {
            Ok(_) => failures.push(format!("{case}: accepted")),
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(expected) => {}
            Err(e) => failures.push(format!("{case}: expected 422 with {expected:?}, got: {e}")),
        }
    }
    failures
}

#[tokio::test]
async fn samples_apply_unchanged_and_read_back_with_defaults() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let samples = yaml_files(&deploy_dir().join("samples"));
    assert_eq!(samples.len(), 4);
    let mut applied = Vec::new();
    for (file, yaml) in &samples {
        let objs = envtest::manifest::apply_yaml(&client, yaml, "default", MANAGER)
            .await
            .unwrap_or_else(|e| panic!("sample {file} rejected: {e:#}"));
        applied.extend(objs);
    }

    let workspaces: Api<Workspace> = Api::namespaced(client.clone(), "default");
    let ws = workspaces.get("ml-workspace").await.unwrap();
    let s = &ws.spec;
    assert_eq!(s.storage, "50Gi");
    assert_eq!(s.default_engine, SnapshotEngine::Copy);
    let jfs = s.juice_fs_config.as_ref().expect("juiceFsConfig is kept");
    assert_eq!(
        jfs.source.as_deref(),
        Some("redis://redis.default.svc.cluster.local:6379/0")
    );
    assert_eq!(jfs.cache_dir.as_deref(), Some("/mnt/cache"));
    let retention = s.retention_policy.as_ref().unwrap();
    assert_eq!(
        (retention.keep_min_snapshots, &*retention.keep_min_age),
        (20, "48h")
    );
    assert_eq!(retention.keep_tags, ["production", "release"]);
    let auto = s.auto_snapshot.as_ref().unwrap();
    assert_eq!(auto.schedule.as_deref(), Some("0 */4 * * *"));
    assert_eq!(auto.max_snapshots, 50);
    // Defaults of the added fields.
    assert_eq!(s.quiesce.mode, QuiesceMode::ScaleDown);
    assert_eq!(s.quiesce.timeout, "5m");
    assert_eq!(s.storage_deletion_policy, StorageDeletionPolicy::Retain);

    let snapshots: Api<Snapshot> = Api::namespaced(client.clone(), "default");
    let manual = snapshots.get("pre-deployment-snapshot").await.unwrap();
    let compression = manual.spec.compression.as_ref().unwrap();
    assert_eq!(
        (compression.type_, compression.level),
        (CompressionType::Gzip, Some(6))
    );
    assert_eq!(manual.spec.tags, ["pre-deploy", "model-v2"]);
    let restore = snapshots.get("test-restore-snapshot").await.unwrap();
    assert!(restore.spec.restore_on_create);
    assert_eq!(
        restore.spec.restore_worktree.as_deref(),
        Some("test-branch")
    );
    let templated = snapshots.get("experiment-checkpoint").await.unwrap();
    assert!(!templated.spec.restore_on_create);

    for obj in applied {
        let api = match obj.types.as_ref().unwrap().kind.as_str() {
            "Workspace" => dynamic_api::<Workspace>(&client, "default"),
            _ => dynamic_api::<Snapshot>(&client, "default"),
        };
        api.delete(&obj.name_any(), &DeleteParams::default())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_minimal_workspace_gets_the_original_defaults() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("jvs-defaults").await.unwrap();
    create(
        &client,
        &ns.name,
        workspace(
            "minimal",
            json!({"spec": {"retentionPolicy": {}, "autoSnapshot": {}}}),
        ),
    )
    .await
    .unwrap();
    let ws = ns.api::<Workspace>().get("minimal").await.unwrap();
    let s = &ws.spec;
    assert_eq!((s.replicas, &*s.storage), (1, "10Gi"));
    assert_eq!(s.default_engine, SnapshotEngine::Copy);
    let retention = s.retention_policy.as_ref().unwrap();
    assert_eq!(
        (retention.keep_min_snapshots, &*retention.keep_min_age),
        (10, "24h")
    );
    let auto = s.auto_snapshot.as_ref().unwrap();
    assert!(!auto.enabled);
    assert_eq!(auto.max_snapshots, 30);
}

#[tokio::test]
async fn invalid_workspaces_are_rejected_with_clear_messages() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("jvs-invalid-ws").await.unwrap();
    let w = |patch: Value| workspace("ws", patch);
    let cases = vec![
        (
            "upper-case name",
            workspace("ML-Workspace", json!({})),
            "metadata.name must be a DNS label",
        ),
        (
            "long name",
            workspace(&"a".repeat(51), json!({})),
            "at most 50 characters",
        ),
        (
            "negative replicas",
            w(json!({"spec": {"replicas": -1}})),
            "should be greater than or equal to 0",
        ),
        (
            "storage not a quantity",
            w(json!({"spec": {"storage": "lots"}})),
            "must be a quantity",
        ),
        (
            "zero storage",
            w(json!({"spec": {"storage": "0"}})),
            "must be greater than zero",
        ),
        (
            "bad storage class",
            w(json!({"spec": {"storageClassName": "Fast_SSD"}})),
            "must be a StorageClass name",
        ),
        (
            "unknown engine",
            w(json!({"spec": {"defaultEngine": "btrfs"}})),
            "Unsupported value: \"btrfs\"",
        ),
        (
            "JuiceFS without source",
            w(json!({"spec": {"juiceFsConfig": {}}})),
            "juiceFsConfig needs source",
        ),
        (
            "JuiceFS source not a URL",
            w(json!({"spec": {"juiceFsConfig": {"source": "localhost:6379"}}})),
            "must be a JuiceFS metadata URL",
        ),
        (
            "relative cache dir",
            w(
                json!({"spec": {"juiceFsConfig": {"source": "redis://r:6379/0", "cacheDir": "mnt/cache"}}}),
            ),
            "must be an absolute path",
        ),
        (
            "secret key with a space",
            w(
                json!({"spec": {"juiceFsConfig": {"secretsRef": {"name": "jfs", "keys": {"source": "REDIS URL"}}}}}),
            ),
            "values must be Secret keys",
        ),
        (
            "fractional keepMinAge",
            w(json!({"spec": {"retentionPolicy": {"keepMinAge": "1.5h"}}})),
            "must be a duration like 24h",
        ),
        (
            "keepMinAge too long",
            w(json!({"spec": {"retentionPolicy": {"keepMinAge": "3651d"}}})),
            "must be at most 3650d",
        ),
        (
            "bad keep tag",
            w(json!({"spec": {"retentionPolicy": {"keepTags": ["prod uction"]}}})),
            "tags may contain only letters",
        ),
        (
            "enabled without schedule",
            w(json!({"spec": {"autoSnapshot": {"enabled": true}}})),
            "autoSnapshot.schedule is required when autoSnapshot is enabled",
        ),
        (
            "schedule in words",
            w(json!({"spec": {"autoSnapshot": {"schedule": "every 4 hours"}}})),
            "must be a cron schedule",
        ),
        (
            "schedule with seconds",
            w(json!({"spec": {"autoSnapshot": {"schedule": "0 0 */4 * * *"}}})),
            "must be a cron schedule",
        ),
        (
            "time zone with a space",
            w(json!({"spec": {"autoSnapshot": {"timeZone": "Europe Berlin"}}})),
            "must be an IANA time zone",
        ),
        (
            "unknown template",
            w(json!({"spec": {"autoSnapshot": {"template": "nightly"}}})),
            "Unsupported value: \"nightly\"",
        ),
        (
            "zero max snapshots",
            w(json!({"spec": {"autoSnapshot": {"maxSnapshots": 0}}})),
            "should be greater than or equal to 1",
        ),
        (
            "exec quiesce without command",
            w(json!({"spec": {"quiesce": {"mode": "Exec"}}})),
            "quiesce mode Exec needs preSnapshot",
        ),
        (
            "long quiesce timeout",
            w(json!({"spec": {"quiesce": {"timeout": "2h"}}})),
            "must be at most 1h",
        ),
        (
            "runner image with a space",
            w(json!({"spec": {"runner": {"image": "jvs runner"}}})),
            "must be an image reference without spaces",
        ),
        (
            "unknown deletion policy",
            w(json!({"spec": {"storageDeletionPolicy": "Orphan"}})),
            "Unsupported value: \"Orphan\"",
        ),
        (
            "relative mount path",
            w(json!({"spec": {"workload": {"mountPath": "workspace"}}})),
            "must be an absolute path",
        ),
    ];
    let failures = expect_rejections(&client, &ns.name, cases).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Valid edge values are accepted; the pod template's spec is kept as given.
    let valid = vec![
        json!({"spec": {"replicas": 0, "storageDeletionPolicy": "Delete", "defaultEngine": "juicefs-clone"}}),
        json!({"spec": {"juiceFsConfig": {"secretsRef": {"name": "juicefs-credentials", "keys": {"source": "REDIS_URL"}}}}}),
        json!({"spec": {"autoSnapshot": {"enabled": true, "schedule": "@daily", "timeZone": "Europe/Berlin", "template": "archive"}}}),
        json!({"spec": {"retentionPolicy": {"keepMinAge": "0s", "keepMinSnapshots": 0}}}),
        json!({"spec": {"quiesce": {"mode": "Exec", "preSnapshot": ["sh", "-c", "sync"], "timeout": "1h"}}}),
        json!({"spec": {"workload": {"template": {"metadata": {"labels": {"app": "trainer"}}, "spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}}}}),
    ];
    for (i, patch) in valid.into_iter().enumerate() {
        create(
            &client,
            &ns.name,
            workspace(&format!("valid-{i}"), patch.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("valid case {patch} rejected: {e}"));
    }
    let with_template = ns.api::<Workspace>().get("valid-5").await.unwrap();
    let template = with_template.spec.workload.unwrap().template.unwrap();
    assert_eq!(
        template.spec.unwrap().containers[0].image.as_deref(),
        Some("python:3.12")
    );
}

#[tokio::test]
async fn invalid_snapshots_are_rejected_with_clear_messages() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("jvs-invalid-snap").await.unwrap();
    let s = |patch: Value| snapshot("snap", patch);
    let cases = vec![
        (
            "no workspace",
            s(json!({"spec": {"workspace": null}})),
            "Required value",
        ),
        (
            "workspace not a name",
            s(json!({"spec": {"workspace": "ML_Workspace"}})),
            "must be the name of a Workspace",
        ),
        (
            "tag with a space",
            s(json!({"spec": {"tags": ["has space"]}})),
            "tags may contain only letters",
        ),
        (
            "tag with a comma",
            s(json!({"spec": {"tags": ["a,b"]}})),
            "tags may contain only letters",
        ),
        (
            "duplicate tag",
            s(json!({"spec": {"tags": ["wip", "wip"]}})),
            "Duplicate value",
        ),
        (
            "unknown template",
            s(json!({"spec": {"template": "nightly"}})),
            "Unsupported value: \"nightly\"",
        ),
        (
            "zstd",
            s(json!({"spec": {"compression": {"type": "zstd", "level": 3}}})),
            "jvs compresses snapshots with gzip only",
        ),
        (
            "gzip level jvs does not offer",
            s(json!({"spec": {"compression": {"type": "gzip", "level": 5}}})),
            "jvs compresses with gzip at level 1 (fast), 6 (default) or 9 (max) only",
        ),
        (
            "level without compression",
            s(json!({"spec": {"compression": {"type": "none", "level": 6}}})),
            "level must be omitted (or 0) when type is none",
        ),
        (
            "level out of range",
            s(json!({"spec": {"compression": {"level": 10}}})),
            "should be less than or equal to 9",
        ),
        (
            "restore into main",
            s(json!({"spec": {"restoreOnCreate": true, "restoreWorktree": "main"}})),
            "restoreWorktree cannot be main",
        ),
        (
            "restore worktree with a slash",
            s(json!({"spec": {"restoreOnCreate": true, "restoreWorktree": "a/b"}})),
            "restoreWorktree may contain only letters",
        ),
        (
            "restore worktree without restore",
            s(json!({"spec": {"restoreWorktree": "test-branch"}})),
            "restoreWorktree is used only with restoreOnCreate: true",
        ),
    ];
    let failures = expect_rejections(&client, &ns.name, cases).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let valid = vec![
        json!({"spec": {"compression": {"type": "gzip", "level": 1}}}),
        json!({"spec": {"compression": {"type": "gzip", "level": 9}}}),
        json!({"spec": {"compression": {"level": 6}}}),
        json!({"spec": {"compression": {"type": "none"}}}),
        json!({"spec": {"template": "archive", "tags": ["v1.0_rc", "model-v2"]}}),
        json!({"spec": {"restoreOnCreate": true}}),
    ];
    for (i, patch) in valid.into_iter().enumerate() {
        create(
            &client,
            &ns.name,
            snapshot(&format!("valid-{i}"), patch.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("valid case {patch} rejected: {e}"));
    }
    let defaulted = ns.api::<Snapshot>().get("valid-2").await.unwrap();
    assert_eq!(
        defaulted.spec.compression.unwrap().type_,
        CompressionType::Gzip
    );
}

#[tokio::test]
async fn updates_that_jvs_cannot_follow_are_rejected() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("jvs-updates").await.unwrap();
    create(
        &client,
        &ns.name,
        workspace(
            "ws",
            json!({"spec": {"storage": "50Gi", "storageClassName": "fast-ssd"}}),
        ),
    )
    .await
    .unwrap();
    create(
        &client,
        &ns.name,
        snapshot("snap", json!({"spec": {"note": "before"}})),
    )
    .await
    .unwrap();

    let workspaces = ns.api::<Workspace>();
    let snapshots = ns.api::<Snapshot>();
    let patch = |v: Value| Patch::Merge(v);
    let pp = PatchParams::default();
    let shrink = workspaces
        .patch("ws", &pp, &patch(json!({"spec": {"storage": "10Gi"}})))
        .await;
    assert!(message(shrink).contains("storage can grow but not shrink"));
    let class = workspaces
        .patch(
            "ws",
            &pp,
            &patch(json!({"spec": {"storageClassName": "standard"}})),
        )
        .await;
    assert!(message(class).contains("storageClassName cannot be changed"));
    workspaces
        .patch(
            "ws",
            &pp,
            &patch(json!({"spec": {"storage": "100Gi", "replicas": 2}})),
        )
        .await
        .expect("growing the volume and scaling are allowed");

    let edit = snapshots
        .patch("snap", &pp, &patch(json!({"spec": {"note": "after"}})))
        .await;
    assert!(message(edit).contains("the spec of a Snapshot cannot be changed"));
    snapshots
        .patch(
            "snap",
            &pp,
            &patch(json!({"metadata": {"labels": {"kept": "yes"}}})),
        )
        .await
        .expect("metadata of a Snapshot can change");
}

fn message<T>(r: Result<T, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => s.message,
        Ok(_) => "accepted".to_string(),
        Err(e) => e.to_string(),
    }
}

fn accepted(conditions: &[Condition]) -> Option<(String, String, String, Option<i64>)> {
    let c = conditions::find(conditions, ACCEPTED)?;
    Some((
        c.status.clone(),
        c.reason.clone(),
        c.message.clone(),
        c.observed_generation,
    ))
}

#[tokio::test]
async fn the_controllers_record_validation_in_status() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;
    let ns = envtest::test_namespace("jvs-controller").await.unwrap();
    let args = RunArgs {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        watch_namespace: Some(ns.name.clone()),
        crd_wait: Duration::from_secs(30),
        ..RunArgs::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let operator = tokio::spawn(operator_core::runtime::run_with_client(
        &jvs_operator::OPERATOR,
        args,
        client.clone(),
        Metrics::new(),
        move |rt| {
            let _ = tx.send(rt.shutdown_token());
            jvs_operator::controllers::run(rt)
        },
    ));
    let shutdown = rx.await.expect("the operator started");

    // Hour 25 passes the CEL shape check (5 fields) but not the cron parser: only the controller
    // can tell.
    create(
        &client,
        &ns.name,
        workspace(
            "bad-schedule",
            json!({"spec": {"autoSnapshot": {"enabled": true, "schedule": "0 25 * * *"}}}),
        ),
    )
    .await
    .unwrap();
    create(&client, &ns.name, workspace("ml-workspace", json!({})))
        .await
        .unwrap();
    create(
        &client,
        &ns.name,
        snapshot("snap", json!({"spec": {"template": "checkpoint"}})),
    )
    .await
    .unwrap();

    let workspaces = ns.api::<Workspace>();
    let snapshots = ns.api::<Snapshot>();
    let good = envtest::eventually("ml-workspace to be accepted", WAIT, || async {
        let ws = workspaces.get("ml-workspace").await.ok()?;
        accepted(&ws.status.as_ref()?.conditions).map(|_| ws)
    })
    .await;
    let status = good.status.as_ref().unwrap();
    let (cond, reason, _, generation) = accepted(&status.conditions).unwrap();
    assert_eq!((cond.as_str(), reason.as_str()), ("True", "Valid"));
    assert_eq!(status.observed_generation, good.metadata.generation);
    assert_eq!(generation, good.metadata.generation);
    assert_eq!(status.phase, Some(WorkspacePhase::Pending));

    let bad = envtest::eventually("bad-schedule to be judged", WAIT, || async {
        let ws = workspaces.get("bad-schedule").await.ok()?;
        accepted(&ws.status.as_ref()?.conditions).map(|_| ws)
    })
    .await;
    let (cond, reason, message, _) = accepted(&bad.status.as_ref().unwrap().conditions).unwrap();
    assert_eq!(
        (cond.as_str(), reason.as_str()),
        ("False", "InvalidSchedule")
    );
    assert!(
        message.starts_with("spec.autoSnapshot: invalid cron expression \"0 25 * * *\""),
        "{message}"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let warning = envtest::eventually("a Warning event", WAIT, || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=bad-schedule"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.type_.as_deref() == Some("Warning"))
    })
    .await;
    assert_eq!(warning.reason.as_deref(), Some("InvalidSchedule"));

    let snap = envtest::eventually("the snapshot to be accepted", WAIT, || async {
        let s = snapshots.get("snap").await.ok()?;
        accepted(&s.status.as_ref()?.conditions).map(|_| s)
    })
    .await;
    let status = snap.status.as_ref().unwrap();
    assert_eq!(accepted(&status.conditions).unwrap().0, "True");
    assert_eq!(status.phase, Some(SnapshotPhase::Pending));
    assert_eq!(
        status.snapshot_id, None,
        "no snapshot id before jvs made one"
    );

    // Fixing the schedule flips the condition.
    workspaces
        .patch(
            "bad-schedule",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"autoSnapshot": {"schedule": "0 23 * * *"}}})),
        )
        .await
        .unwrap();
    let fixed = envtest::eventually("bad-schedule to be accepted", WAIT, || async {
        let ws = workspaces.get("bad-schedule").await.ok()?;
        let (cond, ..) = accepted(&ws.status.as_ref()?.conditions)?;
        (cond == "True").then_some(ws)
    })
    .await;
    assert_eq!(fixed.status.unwrap().observed_generation, Some(2));

    // Steady state: nothing more is written.
    let rv = workspaces
        .get("ml-workspace")
        .await
        .unwrap()
        .resource_version();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        workspaces
            .get("ml-workspace")
            .await
            .unwrap()
            .resource_version(),
        rv
    );

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
