//! The operator runtime against a real API server: HTTP endpoints, CRD
//! wait, graceful shutdown, and leader election between two contenders.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{CustomResource, CustomResourceExt};
use operator_core::cli::RunArgs;
use operator_core::metrics::Metrics;
use operator_core::runtime::{Operator, run_with_client};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runtime.operator-core.io",
    version = "v1",
    kind = "Gadget",
    namespaced
)]
pub struct GadgetSpec {
    pub size: u32,
}

fn crds() -> Vec<CustomResourceDefinition> {
    vec![Gadget::crd()]
}

const OPERATOR: Operator = Operator {
    name: "gadget-operator",
    version: "0.0.0-test",
    revision: "test",
    crds,
};

async fn install() -> kube::Client {
    let client = envtest::client().await.unwrap();
    let yaml = serde_yaml::to_string(&Gadget::crd()).unwrap();
    envtest::manifest::apply_yaml(&client, &yaml, "default", "test")
        .await
        .unwrap();
    client
}

fn args(lease_ns: &str, leader_elect: bool) -> RunArgs {
    RunArgs {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        leader_elect,
        lease_name: Some("gadget-test".into()),
        lease_namespace: Some(lease_ns.into()),
        lease_duration: Duration::from_secs(4),
        crd_wait: Duration::from_secs(30),
        ..RunArgs::default()
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

#[tokio::test]
async fn serves_health_and_metrics_and_stops_on_shutdown() {
    let client = install().await;
    // Find a free port for the endpoint, then run.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut run_args = args("default", false);
    run_args.metrics_addr = addr;
    let (tx, rx) = oneshot::channel();
    let metrics = Metrics::new();
    metrics.init_controller("gadget");
    let task = tokio::spawn(run_with_client(
        &OPERATOR,
        run_args,
        client,
        metrics,
        move |rt| async move {
            let _ = tx.send(rt.shutdown_token());
            rt.shutdown_signal().await;
            Ok(())
        },
    ));
    let token = rx
        .await
        .expect("controllers started after the CRD was established");
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("operator_reconcile_total{controller=\"gadget\"} 0"),
        "{body}"
    );
    assert_eq!(http_get(addr, "/nope").await.0, 404);
    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn missing_crds_fail_with_a_clear_error() {
    let client = envtest::client().await.unwrap();
    let op = Operator {
        crds: || {
            let mut crd = Gadget::crd();
            crd.metadata.name = Some("absent.runtime.operator-core.io".into());
            vec![crd]
        },
        ..OPERATOR
    };
    let mut run_args = args("default", false);
    run_args.crd_wait = Duration::from_secs(1);
    let result = run_with_client(&op, run_args, client, Metrics::new(), |_| async { Ok(()) }).await;
    let message = format!("{:#}", result.unwrap_err());
    assert!(
        message.contains("absent.runtime.operator-core.io"),
        "{message}"
    );
    assert!(message.contains("not established"), "{message}");
}

/// One contender: runs until its token is cancelled; `leading` is true while
/// its controllers run.
struct Contender {
    leading: Arc<AtomicBool>,
    token: Arc<std::sync::Mutex<Option<CancellationToken>>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn contender(client: kube::Client, ns: &str, overlap: Arc<AtomicUsize>) -> Contender {
    let leading = Arc::new(AtomicBool::new(false));
    let token = Arc::new(std::sync::Mutex::new(None));
    let (l, t) = (leading.clone(), token.clone());
    let task = tokio::spawn(run_with_client(
        &OPERATOR,
        args(ns, true),
        client,
        Metrics::new(),
        move |rt| async move {
            *t.lock().unwrap() = Some(rt.shutdown_token());
            if overlap.fetch_add(1, Ordering::SeqCst) != 0 {
                panic!("two leaders reconciling at once");
            }
            l.store(true, Ordering::SeqCst);
            rt.shutdown_signal().await;
            l.store(false, Ordering::SeqCst);
            overlap.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        },
    ));
    Contender {
        leading,
        token,
        task,
    }
}

async fn eventually(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn leader_election_hands_over_and_a_lost_lease_stops_reconciling() {
    let client = install().await;
    let ns = envtest::test_namespace("lease").await.unwrap();
    let overlap = Arc::new(AtomicUsize::new(0));
    let a = contender(client.clone(), &ns.name, overlap.clone());
    eventually("a leads", Duration::from_secs(20), || {
        a.leading.load(Ordering::SeqCst)
    })
    .await;
    let b = contender(client.clone(), &ns.name, overlap.clone());
    // b waits while a holds the lease (well past one lease duration).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !b.leading.load(Ordering::SeqCst),
        "standby started reconciling while the leader held the lease"
    );

    // a shuts down cleanly: it releases the lease and b takes over promptly.
    let a_token = a.token.lock().unwrap().clone().unwrap();
    a_token.cancel();
    assert!(a.task.await.unwrap().is_ok());
    eventually("b leads", Duration::from_secs(10), || {
        b.leading.load(Ordering::SeqCst)
    })
    .await;

    // Someone else takes the lease: b notices, stops reconciling and exits with an error.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let steal = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {
            "holderIdentity": "intruder",
            "acquireTime": now.to_string(),
            "renewTime": now.to_string(),
            "leaseDurationSeconds": 60,
        }
    });
    leases
        .patch(
            "gadget-test",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&steal),
        )
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), b.task)
        .await
        .expect("b noticed the lost lease")
        .unwrap();
    assert!(!b.leading.load(Ordering::SeqCst));
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("leadership lost"), "{message}");
}
