//! The local cluster does what operators' tests rely on: nodes, scheduling,
//! Deployments, Jobs, PVC binding, garbage collection, and exec/port-forward
//! through the API server to local processes.

use std::time::Duration;

use envtest::eventually;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, AttachParams, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "spec": { "containers": [ { "name": "main", "image": "busybox" } ] }
    }))
    .unwrap()
}

async fn wait_running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually("pod running", Duration::from_secs(30), || async {
        let p = pods.get(name).await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await
}

#[tokio::test]
async fn fake_nodes_are_ready_with_capacity_labels_and_taints() {
    let client = envtest::client().await.unwrap();
    let nodes: Api<Node> = Api::all(client);
    let gpu = nodes.get("kwok-gpu-0").await.unwrap();
    let status = gpu.status.unwrap();
    assert_eq!(status.allocatable.unwrap()["nvidia.com/gpu"].0, "4");
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let taints = gpu.spec.unwrap().taints.unwrap();
    assert_eq!(taints[0].key, "nvidia.com/gpu");
    assert_eq!(taints[0].effect, "NoSchedule");
    assert_eq!(
        gpu.metadata.labels.unwrap()["nvidia.com/gpu.present"],
        "true"
    );
    let all = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 3, "two general nodes and one GPU node");
}

#[tokio::test]
async fn deployments_jobs_and_pvcs_progress() {
    let ns = envtest::test_namespace("workloads").await.unwrap();
    let deployments: Api<Deployment> = ns.api();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [ { "name": "web", "image": "nginx" } ] }
            }
        }
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    eventually("deployment available", Duration::from_secs(30), || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.available_replicas == Some(2)).then_some(())
    })
    .await;

    let jobs: Api<Job> = ns.api();
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "once" },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [ { "name": "main", "image": "busybox" } ]
        } } }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    eventually("job complete", Duration::from_secs(30), || async {
        let j = jobs.get("once").await.ok()?;
        let done = j
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        done.then_some(())
    })
    .await;

    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "data" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } }
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    let bound = eventually("pvc bound", Duration::from_secs(30), || async {
        let p = pvcs.get("data").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(p)
    })
    .await;
    assert_eq!(
        bound.spec.unwrap().storage_class_name.as_deref(),
        Some("kwok-volume")
    );
}

#[tokio::test]
async fn garbage_collector_deletes_owned_objects() {
    let ns = envtest::test_namespace("gc").await.unwrap();
    let cms: Api<ConfigMap> = ns.api();
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let uid = owner.metadata.uid.unwrap();
    let child: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "child",
            "ownerReferences": [ { "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid } ]
        }
    }))
    .unwrap();
    cms.create(&PostParams::default(), &child).await.unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("child collected", Duration::from_secs(30), || async {
        cms.get_opt("child").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn exec_through_the_api_runs_a_local_process() {
    let ns = envtest::test_namespace("exec").await.unwrap();
    let pods: Api<Pod> = ns.api();
    pods.create(
        &PostParams::default(),
        &pod("shell", json!({"app": "shell"})),
    )
    .await
    .unwrap();
    wait_running(&pods, "shell").await;
    let work_dir = tempfile::tempdir().unwrap();
    std::fs::write(work_dir.path().join("marker.txt"), "from-the-host").unwrap();
    envtest::kwok::exec_locally(
        &ns.client,
        &ns.name,
        "shell",
        work_dir.path(),
        &[("GREETING", "hello")],
    )
    .await
    .unwrap();

    let output = eventually("exec output", Duration::from_secs(20), || async {
        let mut attached = pods
            .exec(
                "shell",
                ["sh", "-c", "echo $GREETING; cat marker.txt"],
                &AttachParams::default().stderr(false),
            )
            .await
            .ok()?;
        let mut out = String::new();
        attached.stdout()?.read_to_string(&mut out).await.ok()?;
        attached.join().await.ok()?;
        (!out.is_empty()).then_some(out)
    })
    .await;
    assert_eq!(output, "hello\nfrom-the-host");
}

#[tokio::test]
async fn port_forward_through_the_api_reaches_a_local_server() {
    let ns = envtest::test_namespace("portforward").await.unwrap();
    let pods: Api<Pod> = ns.api();
    pods.create(
        &PostParams::default(),
        &pod("server", json!({"app": "server"})),
    )
    .await
    .unwrap();
    wait_running(&pods, "server").await;

    // A local echo server stands in for the process inside the pod.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let _ = sock
                    .write_all(format!("echo:{}", String::from_utf8_lossy(&buf[..n])).as_bytes())
                    .await;
            });
        }
    });
    envtest::kwok::forward_port(
        &ns.client,
        &ns.name,
        "server",
        8080,
        envtest::kwok::ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port,
        },
    )
    .await
    .unwrap();

    let reply = eventually("port-forward reply", Duration::from_secs(20), || async {
        let mut pf = pods.portforward("server", &[8080]).await.ok()?;
        let mut stream = pf.take_stream(8080)?;
        stream.write_all(b"ping").await.ok()?;
        // Read the expected length: a closed remote socket is not always
        // reported as EOF through the API server's port-forward.
        let mut reply = vec![0u8; "echo:ping".len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply))
            .await
            .ok()?
            .ok()?;
        drop(stream);
        let _ = pf.join().await;
        (!reply.is_empty()).then(|| String::from_utf8_lossy(&reply).to_string())
    })
    .await;
    assert_eq!(reply, "echo:ping");
}

#[tokio::test]
async fn pod_logs_come_from_a_local_file() {
    let ns = envtest::test_namespace("logs").await.unwrap();
    let pods: Api<Pod> = ns.api();
    pods.create(
        &PostParams::default(),
        &pod("logger", json!({"app": "logger"})),
    )
    .await
    .unwrap();
    wait_running(&pods, "logger").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("main.log");
    std::fs::write(
        &file,
        "2026-11-23T10:00:00.000000000Z stdout F first line\n2026-11-23T10:00:01.000000000Z stderr F second line\n",
    )
    .unwrap();
    envtest::kwok::serve_logs(&ns.client, &ns.name, "logger", &file, false)
        .await
        .unwrap();
    let lines = eventually("pod logs", Duration::from_secs(20), || async {
        let stream = pods.log_stream("logger", &Default::default()).await.ok()?;
        let lines: Vec<String> = stream.lines().try_collect().await.ok()?;
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(lines, vec!["first line", "second line"]);
}

fn crd_yaml(plural: &str, kind: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.envtest.example.com
spec:
  group: envtest.example.com
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
",
        singular = kind.to_ascii_lowercase()
    )
}

#[tokio::test]
async fn a_crd_directory_installs_in_sorted_order_and_is_established() {
    let client = envtest::client().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.yaml"), crd_yaml("widgets", "Widget")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), crd_yaml("gadgets", "Gadget")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let names = envtest::manifest::install_crd_dir(&client, dir.path())
        .await
        .unwrap();
    assert_eq!(
        names,
        ["gadgets.envtest.example.com", "widgets.envtest.example.com"]
    );
    // Established and served: objects of the new kinds can be created.
    let yaml = "apiVersion: envtest.example.com/v1\nkind: Widget\nmetadata:\n  name: w\n";
    let applied = envtest::manifest::apply_yaml(&client, yaml, "default", "envtest-test")
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
}
