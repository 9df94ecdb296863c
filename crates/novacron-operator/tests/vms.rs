//! VirtualMachines on the real control plane (envtest: kube-apiserver,
//! controller-manager, scheduler, KWOK nodes that run pods and Jobs and bind
//! claims). One operator runs in-process for the whole binary with its
//! admission webhook on a loopback TLS listener that the real API server
//! calls, and its metrics on a loopback port. It authenticates as the
//! deploy manifests' ServiceAccount, so every test also proves that the
//! shipped RBAC (`rbac.yaml`, `webhook/webhook.yaml`) is enough.
//!
//! KWOK runs no containers, so each launcher pod's control port is routed
//! (KWOK `PortForward`) to a small stand-in launcher in this process that
//! speaks the launcher's control API (`novacron_launcher::api` types):
//! the operator reaches it exactly as it reaches a real launcher, through
//! the API server's pod port-forward. The real launcher and QEMU are tested
//! in the launcher crate.

mod shipped_rbac;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use envtest::kwok::{ForwardTarget, forward_port};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use novacron_launcher::api::{HookStatus, LauncherPhase, LauncherStatus};
use novacron_launcher::config::LaunchConfig;
use novacron_operator::crd::{ImportPhase, VirtualMachine, VmPhase};
use novacron_operator::settings::{Settings, WebhookSettings};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MANAGER: &str = "novacron-tests";
const TIMEOUT: Duration = Duration::from_secs(90);
const CATALOG_NS: &str = "novacron-catalog";
/// The configurations' name in the deploy manifests (their RBAC rule names
/// them).
const WEBHOOK_CONFIG: &str = "novacron-operator";

struct Operator {
    metrics_addr: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the CRDs, the catalog, the webhook configurations and the operator
/// once for this binary, on a runtime of its own.
fn operator() -> &'static Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| {
        let metrics_port = free_port();
        let webhook_port = free_port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let client = envtest::client().await.unwrap();
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../deploy/novacron-operator/crds");
                envtest::manifest::install_crd_dir(&client, &dir)
                    .await
                    .unwrap();
                install_catalog(&client).await;
                install_webhooks(&client, webhook_port).await;
                // The operator runs with its ServiceAccount's token and the
                // RBAC of the deploy manifests, nothing else.
                let client =
                    shipped_rbac::operator_client(&client, &["rbac.yaml", "webhook/webhook.yaml"])
                        .await;
                let settings = Settings {
                    catalog: Some((CATALOG_NS.into(), "images".into())),
                    status_interval: Duration::from_secs(5),
                    webhook: Some(WebhookSettings {
                        addr: ([127, 0, 0, 1], webhook_port).into(),
                        hosts: vec!["127.0.0.1".into(), "localhost".into()],
                        configuration: WEBHOOK_CONFIG.into(),
                        secret: Some((
                            "novacron-system".into(),
                            novacron_operator::settings::WEBHOOK_SECRET.into(),
                        )),
                    }),
                    ..Settings::default()
                };
                let args = operator_core::cli::RunArgs {
                    metrics_addr: ([127, 0, 0, 1], metrics_port).into(),
                    concurrency: 8,
                    ..Default::default()
                };
                let op = operator_core::Operator {
                    name: novacron_operator::controllers::OPERATOR,
                    version: env!("CARGO_PKG_VERSION"),
                    revision: "test",
                    crds: novacron_operator::crd::all,
                };
                let run_client = client.clone();
                let run = tokio::spawn(async move {
                    operator_core::runtime::run_with_client(
                        &op,
                        args,
                        run_client,
                        operator_core::metrics::Metrics::new(),
                        move |rt| novacron_operator::controllers::run_with(rt, settings),
                    )
                    .await
                });
                // Ready once the CA is injected (the webhook serves by then).
                let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
                envtest::eventually("CA injected", TIMEOUT, || async {
                    let c = configs.get(WEBHOOK_CONFIG).await.ok()?;
                    c.webhooks?[0].client_config.ca_bundle.as_ref().map(|_| ())
                })
                .await;
                tx.send(()).unwrap();
                run.await.unwrap().unwrap();
            });
        });
        rx.recv_timeout(Duration::from_secs(180))
            .expect("the operator started");
        Operator {
            metrics_addr: ([127, 0, 0, 1], metrics_port).into(),
        }
    })
}

async fn install_catalog(client: &Client) {
    envtest::manifest::apply_yaml(
        client,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {CATALOG_NS}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: images\n  namespace: {CATALOG_NS}\ndata:\n  cirros: http://images.example.com/cirros.qcow2 sha256:{}\n",
            "0".repeat(64)
        ),
        CATALOG_NS,
        MANAGER,
    )
    .await
    .unwrap();
}

async fn install_webhooks(client: &Client, port: u16) {
    let hook = |name: &str, path: &str, policy: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": policy,
            "timeoutSeconds": 10,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}")},
            "rules": [{
                "apiGroups": ["novacron.io"], "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["virtualmachines", "virtualmachinemigrations"],
            }],
        })
    };
    for (kind, hook) in [
        (
            "ValidatingWebhookConfiguration",
            hook("validate.virtualmachines.novacron.io", "/validate", "Fail"),
        ),
        (
            "MutatingWebhookConfiguration",
            hook("defaults.virtualmachines.novacron.io", "/mutate", "Ignore"),
        ),
    ] {
        let obj = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": WEBHOOK_CONFIG},
            "webhooks": [hook],
        });
        envtest::manifest::apply_yaml(client, &obj.to_string(), "default", MANAGER)
            .await
            .unwrap();
    }
}

/// A stand-in launcher: the control API with a scripted VM.
#[derive(Clone)]
struct FakeLauncher {
    state: Arc<Mutex<LauncherStatus>>,
    shutdowns: Arc<Mutex<u32>>,
    port: u16,
}

impl FakeLauncher {
    async fn start(status: LauncherStatus) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = FakeLauncher {
            state: Arc::new(Mutex::new(status)),
            shutdowns: Arc::default(),
            port,
        };
        let server = me.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&buf)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let (code, body) = server.answer(&line);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        me
    }

    fn answer(&self, request_line: &str) -> (u16, String) {
        let mut state = self.state.lock().unwrap();
        if request_line.starts_with("POST /shutdown") {
            *self.shutdowns.lock().unwrap() += 1;
            // The guest powers off at once.
            state.phase = LauncherPhase::Stopped;
            state.qemu_status = Some("shutdown".into());
            return (202, serde_json::to_string(&*state).unwrap());
        }
        if request_line.starts_with("GET /status") {
            return (200, serde_json::to_string(&*state).unwrap());
        }
        (404, "{}".into())
    }

    fn set(&self, f: impl FnOnce(&mut LauncherStatus)) {
        f(&mut self.state.lock().unwrap());
    }

    /// Routes port 8100 of `vm`'s launcher pod to this server.
    async fn route(&self, client: &Client, ns: &str, vm: &str) {
        forward_port(
            client,
            ns,
            &format!("{vm}-launcher"),
            8100,
            ForwardTarget::Address {
                address: "127.0.0.1".into(),
                port: self.port,
            },
        )
        .await
        .unwrap();
    }
}

fn running() -> LauncherStatus {
    LauncherStatus {
        phase: LauncherPhase::Running,
        qemu_status: Some("running".into()),
        cpu_usage_cores: Some(0.25),
        memory_usage_bytes: Some(300 << 20),
        ip_addresses: vec!["10.0.2.15".into()],
        accel: Some("tcg".into()),
        ..LauncherStatus::default()
    }
}

async fn apply_vm(client: &Client, ns: &str, vm: &Value) {
    envtest::manifest::apply_yaml(client, &vm.to_string(), ns, MANAGER)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{vm:#}"));
}

fn vm(name: &str, spec: Value) -> Value {
    let mut v = json!({
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "running": true,
            "template": {"spec": {
                "resources": {"cpu": 2, "memory": "1Gi", "disk": "10Gi"},
                "image": {"source": "marketplace://cirros"},
                "terminationGracePeriodSeconds": 10,
            }},
        },
    });
    merge(&mut v["spec"], &spec);
    v
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn phase(vm: &VirtualMachine) -> Option<VmPhase> {
    vm.status.as_ref().and_then(|s| s.phase)
}

fn condition(vm: &VirtualMachine, t: &str) -> Option<(String, String, String)> {
    vm.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_phase(vms: &Api<VirtualMachine>, name: &str, want: VmPhase) -> VirtualMachine {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let vm = vms.get(name).await.unwrap();
        if phase(&vm) == Some(want) {
            return vm;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name} to be {want:?}: {:#?}",
            vm.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_vm_imports_its_disk_runs_stops_and_starts_again() {
    operator();
    let ns = envtest::test_namespace("nc-run").await.unwrap();
    let client = ns.client();
    let vms: Api<VirtualMachine> = ns.api();
    let pods: Api<Pod> = ns.api();
    let launcher = FakeLauncher::start(running()).await;
    launcher.route(&client, &ns.name, "web").await;

    apply_vm(
        &client,
        &ns.name,
        &vm(
            "web",
            json!({"template": {
                "metadata": {"labels": {"team": "blue"}},
                "spec": {
                    "volumes": [{"name": "data", "size": "5Gi"}],
                    "userData": "#cloud-config\nhostname: web\n",
                    "networks": [
                        {"name": "default", "type": "masquerade"},
                        {"name": "storage", "type": "bridge",
                         "ipv4": {"method": "static", "address": "10.0.1.10/24", "gateway": "10.0.1.1", "dns": ["10.0.1.2"]}}],
                }
            }}),
        ),
    )
    .await;

    // The disk is imported by a Job that runs the launcher's importer with
    // the catalog's URL and checksum (KWOK completes it).
    let jobs: Api<Job> = ns.api();
    let job = envtest::eventually("importer job", TIMEOUT, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args[0], "import");
    assert!(
        args.contains(&"http://images.example.com/cirros.qcow2".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&format!("sha256:{}", "0".repeat(64))),
        "{args:?}"
    );

    let vm = wait_phase(&vms, "web", VmPhase::Running).await;
    let status = vm.status.clone().unwrap();
    let pod = pods.get("web-launcher").await.unwrap();
    assert_eq!(status.node_name, pod.spec.as_ref().unwrap().node_name);
    assert!(status.node_name.is_some());
    assert_eq!(status.vm_id, pod.uid());
    assert!(
        status.ip_addresses.contains(&"10.0.2.15".to_string()),
        "{status:?}"
    );
    assert_eq!(condition(&vm, "Ready").unwrap().0, "True");
    assert_eq!(condition(&vm, "DiskReady").unwrap().1, "Imported");
    assert_eq!(
        condition(&vm, "LiveMigratable").unwrap().1,
        "MigrationDisabled"
    );
    assert_eq!(condition(&vm, "Paused").unwrap().0, "False");
    let usage = status.resources.unwrap();
    assert_eq!(usage.cpu.unwrap().used.as_deref(), Some("250m"));
    // The importer Job is gone once the disk holds the image.
    envtest::eventually("importer job removed", TIMEOUT, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;

    // The launcher pod: the control port, the user's labels, the launch
    // config with the rendered cloud-init.
    assert_eq!(pod.labels()["team"], "blue");
    let c = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8100);
    let cms: Api<ConfigMap> = ns.api();
    let cm = cms.get("web-launch").await.unwrap();
    let config: LaunchConfig = serde_json::from_str(&cm.data.unwrap()["launch.json"]).unwrap();
    assert_eq!(config.vcpus, 2);
    assert_eq!(config.memory_bytes, 1 << 30);
    assert_eq!(config.disks.len(), 2);
    let ci = config.cloud_init.unwrap();
    assert!(ci.user_data.unwrap().contains("hostname: web"));
    assert!(ci.network_config.unwrap().contains("10.0.1.10/24"));
    // The bridge network is a Multus attachment with the VM's stable MAC.
    let multus: Value =
        serde_json::from_str(&pod.annotations()["k8s.v1.cni.cncf.io/networks"]).unwrap();
    assert_eq!(multus[0]["name"], "storage");
    assert_eq!(multus[0]["interface"], "net1");
    assert_eq!(multus[0]["mac"], json!(config.nics[1].mac));
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let mut claims: Vec<String> = pvcs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    claims.sort();
    assert_eq!(claims, ["web-data", "web-rootdisk"]);

    // running: false -> graceful shutdown through the launcher, pod gone.
    vms.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"running": false}})),
    )
    .await
    .unwrap();
    let vm = wait_phase(&vms, "web", VmPhase::Stopped).await;
    assert!(
        *launcher.shutdowns.lock().unwrap() >= 1,
        "no graceful shutdown request"
    );
    assert!(pods.get_opt("web-launcher").await.unwrap().is_none());
    assert_eq!(condition(&vm, "Ready").unwrap().1, "Stopped");
    assert!(vm.status.as_ref().unwrap().ip_addresses.is_empty());
    // The disks stay; the launch config goes.
    assert_eq!(
        pvcs.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    envtest::eventually("launch config removed", TIMEOUT, || async {
        cms.get_opt("web-launch")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // And back on: no second import, running again.
    launcher.set(|s| *s = running());
    vms.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"running": true}})),
    )
    .await
    .unwrap();
    wait_phase(&vms, "web", VmPhase::Running).await;
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn gpu_vms_land_only_on_gpu_nodes_and_unknown_models_wait() {
    operator();
    let ns = envtest::test_namespace("nc-gpu").await.unwrap();
    let client = ns.client();
    let vms: Api<VirtualMachine> = ns.api();
    let pods: Api<Pod> = ns.api();
    for name in ["gpu", "plain"] {
        FakeLauncher::start(running())
            .await
            .route(&client, &ns.name, name)
            .await;
    }
    apply_vm(
        &client,
        &ns.name,
        &vm("gpu", json!({"template": {"spec": {"devices": [{"type": "gpu", "vendor": "nvidia", "count": 2}]}}})),
    )
    .await;
    apply_vm(&client, &ns.name, &vm("plain", json!({}))).await;
    apply_vm(
        &client,
        &ns.name,
        &vm("t4", json!({"template": {"spec": {"devices": [{"type": "gpu", "vendor": "nvidia", "model": "tesla-t4"}]}}})),
    )
    .await;

    let gpu = wait_phase(&vms, "gpu", VmPhase::Running).await;
    assert_eq!(gpu.status.unwrap().node_name.as_deref(), Some("kwok-gpu-0"));
    let pod = pods.get("gpu-launcher").await.unwrap();
    let limits = pod.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "2");
    let plain = wait_phase(&vms, "plain", VmPhase::Running).await;
    assert_ne!(
        plain.status.unwrap().node_name.as_deref(),
        Some("kwok-gpu-0")
    );
    // No node has a tesla-t4: the model is a node selector.
    let t4 = envtest::eventually("t4 unschedulable", TIMEOUT, || async {
        let vm = vms.get("t4").await.ok()?;
        (condition(&vm, "Ready")?.1 == "Unschedulable").then_some(vm)
    })
    .await;
    assert_eq!(phase(&t4), Some(VmPhase::Pending));
    let msg = condition(&t4, "Ready").unwrap().2;
    assert!(msg.contains("node"), "{msg}");
    let pod = pods.get("t4-launcher").await.unwrap();
    assert_eq!(
        pod.spec.unwrap().node_selector.unwrap(),
        BTreeMap::from([("nvidia.com/gpu.product".to_string(), "tesla-t4".to_string())])
    );
}

#[tokio::test]
async fn hooks_reach_the_launcher_and_their_failures_are_reported() {
    operator();
    let ns = envtest::test_namespace("nc-hooks").await.unwrap();
    let client = ns.client();
    let vms: Api<VirtualMachine> = ns.api();
    let launcher = FakeLauncher::start(running()).await;
    launcher.route(&client, &ns.name, "hooked").await;
    apply_vm(
        &client,
        &ns.name,
        &vm(
            "hooked",
            json!({"template": {"spec": {"lifecycle": {
                "preStart": {"exec": {"command": ["/bin/sh", "-c", "echo prepared"]}, "timeoutSeconds": 5},
                "preStop": {"httpGet": {"path": "/drain", "port": 8080, "host": "10.0.0.5"}, "timeoutSeconds": 7},
            }}}}),
        ),
    )
    .await;
    wait_phase(&vms, "hooked", VmPhase::Running).await;
    let cms: Api<ConfigMap> = ns.api();
    let config: LaunchConfig =
        serde_json::from_str(&cms.get("hooked-launch").await.unwrap().data.unwrap()["launch.json"])
            .unwrap();
    let pre_start = config.hooks.pre_start.unwrap();
    assert_eq!(
        pre_start.exec.unwrap().command,
        ["/bin/sh", "-c", "echo prepared"]
    );
    assert_eq!(pre_start.timeout_seconds, 5);
    assert_eq!(
        config.hooks.pre_stop.unwrap().http_get.unwrap().url(),
        "http://10.0.0.5:8080/drain"
    );

    // The launcher reports a hook failure: condition and Warning event.
    launcher.set(|s| {
        s.hooks = vec![
            HookStatus {
                name: "preStart".into(),
                succeeded: true,
                message: String::new(),
            },
            HookStatus {
                name: "preStop".into(),
                succeeded: false,
                message: "GET http://10.0.0.5:8080/drain: timed out after 7s".into(),
            },
        ]
    });
    let vm = envtest::eventually("hook failure reported", TIMEOUT, || async {
        let vm = vms.get("hooked").await.ok()?;
        (condition(&vm, "HooksSucceeded")?.0 == "False").then_some(vm)
    })
    .await;
    let (_, reason, message) = condition(&vm, "HooksSucceeded").unwrap();
    assert_eq!(reason, "PreStopHookFailed");
    assert!(message.contains("timed out after 7s"), "{message}");
    let events: Api<CoreEvent> = ns.api();
    envtest::eventually("warning event", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("PreStopHookFailed")
            })
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn the_webhook_rejects_invalid_vms_with_clear_messages() {
    let op = operator();
    let ns = envtest::test_namespace("nc-webhook").await.unwrap();
    let vms: Api<VirtualMachine> = ns.api();
    // Each passes the CRD schema and its CEL rules: only the webhook (the
    // operator's validate.rs) can refuse it.
    let cases = [
        (
            json!({"snapshotPolicy": {"schedule": "@daily", "timeZone": "Mars/Olympus"}}),
            "spec.snapshotPolicy.timeZone: unknown time zone \"Mars/Olympus\"",
        ),
        (
            json!({"template": {"spec": {"networks": [{"name": "mgmt", "type": "bridge",
                "ipv4": {"method": "static", "address": "10.0.1.10/24", "gateway": "10.0.2.1"}}]}}}),
            "spec.template.spec.networks[0].ipv4.gateway: 10.0.2.1 is not in the subnet of 10.0.1.10/24",
        ),
        (
            json!({"template": {"spec": {"networks": [
                {"name": "a", "type": "bridge", "macAddress": "02:00:00:00:00:01"},
                {"name": "b", "type": "bridge", "macAddress": "02:00:00:00:00:01"}]}}}),
            "networks[1]",
        ),
        (
            json!({"snapshotPolicy": {"schedule": "61 * * * *"}}),
            "spec.snapshotPolicy.schedule",
        ),
    ];
    for (i, (spec, want)) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        let obj: VirtualMachine = serde_json::from_value(vm(&name, spec.clone())).unwrap();
        let err = vms
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("case {i} was admitted: {spec}"));
        let msg = err.to_string();
        assert!(
            msg.contains(
                "admission webhook \"validate.virtualmachines.novacron.io\" denied the request"
            ),
            "case {i}: not refused by the webhook: {msg}"
        );
        assert!(
            msg.contains(&format!("VirtualMachine {name} is invalid")) && msg.contains(want),
            "case {i}: {msg} does not say {want:?}"
        );
    }
    // Valid VMs pass, and get both policies.
    let ok: VirtualMachine = serde_json::from_value(vm("fine", json!({"running": false}))).unwrap();
    let created = vms.create(&PostParams::default(), &ok).await.unwrap();
    assert_eq!(
        serde_json::to_value(&created.spec.update_strategy).unwrap(),
        json!({"type": "Recreate"})
    );
    assert!(created.spec.migration_policy.encrypted);
    // Both webhooks were called by the API server.
    let text = scrape(op).await;
    assert!(
        text.contains(r#"novacron_webhook_requests_total{webhook="validate",allowed="false"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"novacron_webhook_requests_total{webhook="mutate",allowed="true"}"#),
        "{text}"
    );
}

async fn scrape(op: &Operator) -> String {
    let mut conn = tokio::net::TcpStream::connect(op.metrics_addr)
        .await
        .unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn metrics_have_the_document_names() {
    let op = operator();
    let ns = envtest::test_namespace("nc-metrics").await.unwrap();
    let client = ns.client();
    let vms: Api<VirtualMachine> = ns.api();
    FakeLauncher::start(running())
        .await
        .route(&client, &ns.name, "m1")
        .await;
    apply_vm(&client, &ns.name, &vm("m1", json!({}))).await;
    apply_vm(&client, &ns.name, &vm("m2", json!({"running": false}))).await;
    let m1 = wait_phase(&vms, "m1", VmPhase::Running).await;
    wait_phase(&vms, "m2", VmPhase::Stopped).await;
    let node = m1.status.unwrap().node_name.unwrap();
    let want = [
        format!(
            r#"novacron_vm_total{{namespace="{}",phase="Running"}} 1"#,
            ns.name
        ),
        format!(
            r#"novacron_vm_total{{namespace="{}",phase="Stopped"}} 1"#,
            ns.name
        ),
        format!(
            r#"novacron_vm_cpu_usage_cores{{namespace="{}",vm="m1",node="{node}"}} 0.25"#,
            ns.name
        ),
        format!(
            r#"novacron_vm_memory_usage_bytes{{namespace="{}",vm="m1",node="{node}"}} {}"#,
            ns.name,
            300u64 << 20
        ),
        r#"novacron_reconcile_total{controller="virtualmachine",result="success"}"#.to_string(),
        r#"novacron_reconcile_duration_seconds_count{controller="virtualmachine"}"#.to_string(),
    ];
    let text = envtest::eventually("metrics", TIMEOUT, || async {
        let text = scrape(op).await;
        want.iter()
            .all(|w| text.contains(w.as_str()))
            .then_some(text)
    })
    .await;
    assert!(text.contains("operator_reconcile_total"), "{text}");
}

/// The launcher binary of this workspace. `CARGO_BIN_EXE_*` exists only for
/// a package's own binaries, and running cargo from inside a test races the
/// outer `cargo test` over the target directory, so the test uses the binary
/// that `cargo test --workspace` (hack/test.sh) or `cargo build -p
/// novacron-launcher` put into the target directory, and fails, saying so,
/// when it is missing or older than the launcher's sources.
fn launcher_binary() -> std::path::PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    let bin = target.join("debug/novacron-launcher");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build it with `cargo build -p novacron-launcher` (cargo test --workspace does)",
                bin.display()
            )
        });
    let sources = workspace.join("crates/novacron-launcher/src");
    for entry in std::fs::read_dir(&sources).unwrap() {
        let path = entry.unwrap().path();
        let changed = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(
            changed <= built,
            "{} is older than {}: rebuild it with `cargo build -p novacron-launcher`",
            bin.display(),
            path.display()
        );
    }
    bin
}

fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install qemu-system-x86, qemu-utils and genisoimage (hack/test.sh does)"
    );
}

#[tokio::test]
async fn a_vm_runs_under_the_real_launcher_and_qemu() {
    for tool in ["qemu-system-x86_64", "qemu-img", "genisoimage"] {
        require_tool(tool);
    }
    let bin = launcher_binary();
    operator();
    let ns = envtest::test_namespace("nc-qemu").await.unwrap();
    let client = ns.client();
    let vms: Api<VirtualMachine> = ns.api();
    let cms: Api<ConfigMap> = ns.api();
    let port = free_port();
    forward_port(
        &client,
        &ns.name,
        "real-launcher",
        8100,
        ForwardTarget::Address {
            address: "127.0.0.1".into(),
            port,
        },
    )
    .await
    .unwrap();
    apply_vm(
        &client,
        &ns.name,
        &vm(
            "real",
            json!({"template": {"spec": {
                "resources": {"cpu": 1, "memory": "512Mi", "disk": "1Gi"},
                "userData": "#cloud-config\nhostname: real\n",
                "terminationGracePeriodSeconds": 3,
            }}}),
        ),
    )
    .await;

    // The launcher runs here with the operator's launch config, its pod
    // paths moved into a temporary directory.
    let cm = envtest::eventually("launch config", TIMEOUT, || async {
        cms.get_opt("real-launch").await.ok()?
    })
    .await;
    let mut config: LaunchConfig = serde_json::from_str(&cm.data.unwrap()["launch.json"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("64M")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    config.disks[0].path = disk;
    config.run_dir = dir.path().join("run");
    std::fs::create_dir_all(&config.run_dir).unwrap();
    config.termination_message_path = dir.path().join("termination-log");
    config.accel = novacron_launcher::config::Accel::Tcg;
    let config_path = dir.path().join("launch.json");
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let log = std::fs::File::create(dir.path().join("launcher.log")).unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .arg("--config")
        .arg(&config_path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let launcher_log =
        || std::fs::read_to_string(dir.path().join("launcher.log")).unwrap_or_default();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let vm = loop {
        let vm = vms.get("real").await.unwrap();
        if phase(&vm) == Some(VmPhase::Running) {
            break vm;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not Running: {:#?}\nlauncher log:\n{}",
            vm.status,
            launcher_log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // QEMU's real memory use, read by the launcher and reported in status.
    let memory = vm.status.unwrap().resources.unwrap().memory.unwrap();
    assert!(memory.used.is_some(), "{memory:?}");
    // The cloud-init seed the launcher attached.
    assert!(
        config.seed_iso_path().is_file(),
        "no seed ISO\n{}",
        launcher_log()
    );

    // running: false -> ACPI power-down through the launcher (a guest
    // without an OS ignores it), then the forced stop after the grace period;
    // the launcher exits and the pod goes.
    vms.patch(
        "real",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"running": false}})),
    )
    .await
    .unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| panic!("the launcher did not exit\n{}", launcher_log()))
        .unwrap();
    assert!(exited.success(), "{exited:?}\n{}", launcher_log());
    wait_phase(&vms, "real", VmPhase::Stopped).await;
}

/// KWOK's stock `pod-complete` stage (Running pods owned by a Job succeed at
/// once) with extra selector expressions.
fn job_pod_complete_stage(name: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: {name}
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values:
      - 'Job'
{extra}
  next:
    statusTemplate: |
      {{{{ $now := Now }}}}
      containerStatuses:
      {{{{ range $index, $item := .spec.containers }}}}
      - image: {{{{ $item.image | Quote }}}}
        name: {{{{ $item.name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{{{ $now | Quote }}}}
            reason: Completed
            startedAt: {{{{ $now | Quote }}}}
      {{{{ end }}}}
      phase: Succeeded
"#
    )
}

/// The annotation that completes a held Job pod (see [`hold_job_pods`]).
const COMPLETE_ANNOTATION: &str = "novacron.test/complete";

/// Job pods in `ns` stay Running (KWOK otherwise completes them at once)
/// until they carry [`COMPLETE_ANNOTATION`]: the stock `pod-complete` stage
/// leaves `ns` out, and a second stage completes annotated pods.
async fn hold_job_pods(client: &Client, ns: &str) {
    let skip_ns = format!("    - cel:\n        expression: self.metadata.namespace != '{ns}'");
    envtest::kwok::apply_stage(client, &job_pod_complete_stage("pod-complete", &skip_ns))
        .await
        .unwrap();
    let on_request = format!(
        "    - cel:\n        expression: has(self.metadata.annotations) && '{COMPLETE_ANNOTATION}' in self.metadata.annotations"
    );
    envtest::kwok::apply_stage(
        client,
        &job_pod_complete_stage("pod-complete-on-request", &on_request),
    )
    .await
    .unwrap();
}

/// Serves `body` at `/disk.img` at about `bytes_per_second`, so a download
/// takes a while.
async fn serve_slowly(body: Vec<u8>, bytes_per_second: usize) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut chunk = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&chunk[..n]),
                    }
                }
                if !req.starts_with(b"GET /disk.img ") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // Ten slices a second.
                for slice in body.chunks((bytes_per_second / 10).max(1)) {
                    if conn.write_all(slice).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

/// The real importer (`novacron-launcher import`, with the importer Job's
/// own arguments) downloads from a slow local server while KWOK serves its
/// stdout as the Job pod's log: the operator reads the log's tail and the
/// VM status shows the percentage climbing, then `Imported` once the Job
/// completes.
#[tokio::test]
async fn import_progress_from_the_importer_log_shows_in_status() {
    require_tool("qemu-img");
    let bin = launcher_binary();
    operator();
    let ns = envtest::test_namespace("nc-import").await.unwrap();
    let client = ns.client();
    hold_job_pods(&client, &ns.name).await;
    let vms: Api<VirtualMachine> = ns.api();
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    let launcher = FakeLauncher::start(running()).await;
    launcher.route(&client, &ns.name, "slow").await;

    // A 10 MiB raw disk of incompressible bytes at 512 KiB/s: a 20 s
    // download, several operator polls long.
    const SIZE: usize = 10 << 20;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let body: Vec<u8> = (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let port = serve_slowly(body, 512 << 10).await;
    let url = format!("http://127.0.0.1:{port}/disk.img");
    apply_vm(
        &client,
        &ns.name,
        &vm(
            "slow",
            json!({"template": {"spec": {
                "resources": {"cpu": 1, "memory": "512Mi", "disk": "1Gi"},
                "image": {"source": url},
            }}}),
        ),
    )
    .await;

    // The importer Job's pod runs (and stays running: held above).
    let job = envtest::eventually("importer job", TIMEOUT, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let job_name = job.name_any();
    let pod = envtest::eventually("running importer pod", TIMEOUT, || async {
        pods.list(
            &ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}")),
        )
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let vm = vms.get("slow").await.unwrap();
    assert_eq!(phase(&vm), Some(VmPhase::Pending));
    let import = vm.status.as_ref().unwrap().import.clone().unwrap();
    assert_eq!(import.source, url);
    assert_eq!(import.job.as_deref(), Some(job_name.as_str()));

    // Its log is a local file, in the CRI format the kubelet serves.
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("importer.log");
    std::fs::write(&log_file, "").unwrap();
    envtest::kwok::serve_logs(&client, &ns.name, &pod.name_any(), &log_file, false)
        .await
        .unwrap();

    // The real importer with the Job's arguments, the disk in a temporary
    // directory instead of the claim's mount.
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let dest = dir.path().join("disk.img");
    let mut args = container.args.clone().unwrap();
    let at = args.iter().position(|a| a == "--dest").unwrap();
    args[at + 1] = dest.display().to_string();
    assert!(args.contains(&url), "{args:?}");
    let mut importer = tokio::process::Command::new(&bin)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = importer.stdout.take().unwrap();
    let appender = {
        let log_file = log_file.clone();
        tokio::spawn(async move {
            use std::io::Write;
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_file)
                .unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
                writeln!(out, "{at} stdout F {line}").unwrap();
                out.flush().unwrap();
            }
        })
    };

    // The status follows the download: Ready and DiskReady say how far it
    // is, status.import has the figures.
    let message_shape =
        regex::Regex::new(r"^importing \S+: (\d+)% \([\d.]+ (B|KiB|MiB) of 10\.0 MiB\) \(into slow-rootdisk, job slow-import-").unwrap();
    let mut seen: Vec<i32> = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let exit = loop {
        if let Ok(Some(exit)) = importer.try_wait() {
            break exit;
        }
        let vm = vms.get("slow").await.unwrap();
        let import = vm.status.as_ref().and_then(|s| s.import.clone());
        if let Some(import) = import.filter(|i| i.phase == ImportPhase::Downloading) {
            let percent = import.percent.unwrap();
            let (_, reason, message) = condition(&vm, "Ready").unwrap();
            let disk = condition(&vm, "DiskReady").unwrap();
            assert_eq!(
                (reason.as_str(), disk.1.as_str()),
                ("Importing", "Importing")
            );
            assert_eq!(disk.2, message);
            let shown: i32 = message_shape
                .captures(&message)
                .unwrap_or_else(|| panic!("unexpected message {message:?}"))[1]
                .parse()
                .unwrap();
            assert!(
                message.starts_with(&format!("importing {url}: ")),
                "{message}"
            );
            assert_eq!(import.bytes_total, Some(SIZE as i64));
            assert_eq!(import.progress, Some(format!("{percent}%")));
            // The message and the figures come from the same report.
            assert_eq!(shown, percent, "{message} vs {import:?}");
            if seen.last() != Some(&percent) {
                seen.push(percent);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the importer did not finish; seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(exit.success(), "the importer failed: {exit:?}");
    appender.await.unwrap();
    println!("import percentages the VM status showed: {seen:?}");
    let mid_way: Vec<i32> = seen.iter().copied().filter(|p| *p < 100).collect();
    assert!(
        mid_way.len() >= 2 && mid_way.windows(2).all(|w| w[0] < w[1]),
        "the percentage did not climb mid-way: {seen:?}"
    );
    // The importer's own last line (the log file is in CRI format).
    let log: String = std::fs::read_to_string(&log_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect::<Vec<_>>()
        .join("\n");
    let last = novacron_launcher::api::ImportProgress::latest_in_log(&log).unwrap();
    assert_eq!(
        last.phase,
        novacron_launcher::api::ImportPhase::Succeeded,
        "{log}"
    );
    assert!(dest.is_file(), "the importer wrote no disk");

    // The importer ended: its pod completes, and so does the Job.
    pods.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {COMPLETE_ANNOTATION: "true"}}})),
    )
    .await
    .unwrap();
    let vm = envtest::eventually("disk imported", TIMEOUT, || async {
        let vm = vms.get("slow").await.ok()?;
        (condition(&vm, "DiskReady")?.1 == "Imported").then_some(vm)
    })
    .await;
    let import = vm.status.unwrap().import.unwrap();
    assert_eq!(import.phase, ImportPhase::Succeeded);
    assert_eq!(
        (import.percent, import.progress.as_deref()),
        (Some(100), Some("100%"))
    );
    assert_eq!(
        (import.bytes_done, import.bytes_total),
        (Some(SIZE as i64), Some(SIZE as i64))
    );
    wait_phase(&vms, "slow", VmPhase::Running).await;
}

/// Webhook configurations named `name` that call `https://127.0.0.1:port`
/// for VMs in `ns` only, both failing closed: a VM created there proves the
/// API server reached that webhook and trusted its certificate.
async fn install_scoped_webhooks(client: &Client, name: &str, port: u16, ns: &str) {
    for (kind, hook, path) in [
        (
            "ValidatingWebhookConfiguration",
            "validate.restart.novacron.io",
            "/validate",
        ),
        (
            "MutatingWebhookConfiguration",
            "defaults.restart.novacron.io",
            "/mutate",
        ),
    ] {
        let obj = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name},
            "webhooks": [{
                "name": hook,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}")},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "rules": [{
                    "apiGroups": ["novacron.io"], "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["virtualmachines"],
                }],
            }],
        });
        envtest::manifest::apply_yaml(client, &obj.to_string(), "default", MANAGER)
            .await
            .unwrap();
    }
}

/// The CA bundles of both configurations named `name`, with their
/// resourceVersions.
async fn ca_bundles(client: &Client, name: &str) -> Vec<(Option<String>, Option<String>)> {
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    let text =
        |b: Option<&k8s_openapi::ByteString>| b.map(|b| String::from_utf8_lossy(&b.0).into_owned());
    let v = validating.get(name).await.unwrap();
    let m = mutating.get(name).await.unwrap();
    vec![
        (
            text(v.webhooks.unwrap()[0].client_config.ca_bundle.as_ref()),
            v.metadata.resource_version,
        ),
        (
            text(m.webhooks.unwrap()[0].client_config.ca_bundle.as_ref()),
            m.metadata.resource_version,
        ),
    ]
}

/// Reviews `webhook` allowed, from the webhook's own metrics.
fn admissions(metrics: &operator_core::metrics::Metrics, webhook: &str) -> u64 {
    admission_count(metrics, webhook, true)
}

fn admissions_refused(metrics: &operator_core::metrics::Metrics) -> u64 {
    admission_count(metrics, "validate", false)
}

fn admission_count(metrics: &operator_core::metrics::Metrics, webhook: &str, allowed: bool) -> u64 {
    let prefix =
        format!("novacron_webhook_requests_total{{webhook=\"{webhook}\",allowed=\"{allowed}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Two replicas starting together converge on one CA kept in a Secret; a
/// restart reuses it (no new CA, no rewrite of the configurations) and the
/// real API server still calls the webhook; other names re-issue only the
/// serving certificate.
#[tokio::test]
async fn the_webhook_ca_survives_restarts_and_replicas() {
    use novacron_operator::webhook::tls::{CA_CERT_KEY, CERT_KEY};
    operator();
    let ns = envtest::test_namespace("nc-webhook-ca").await.unwrap();
    let client = ns.client();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = ns.api();
    let secret_ca = |s: &k8s_openapi::api::core::v1::Secret, key: &str| {
        String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
    };

    // The shared operator (the deploy RBAC, its ServiceAccount) keeps its
    // CA in the component's Secret, and that CA is the one injected.
    let shared: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "novacron-system");
    let shared_secret = shared
        .get(novacron_operator::settings::WEBHOOK_SECRET)
        .await
        .unwrap();
    assert_eq!(
        ca_bundles(&client, WEBHOOK_CONFIG).await[0].0.as_deref(),
        Some(secret_ca(&shared_secret, CA_CERT_KEY).as_str())
    );

    let config = ns.name.clone();
    let port = free_port();
    install_scoped_webhooks(&client, &config, port, &ns.name).await;
    let settings = |port: u16, hosts: &[&str]| WebhookSettings {
        addr: ([127, 0, 0, 1], port).into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        configuration: config.clone(),
        secret: Some((ns.name.clone(), "novacron-operator-webhook-tls".into())),
    };
    let hosts = ["127.0.0.1", "localhost"];
    let start = |settings: WebhookSettings| {
        let client = client.clone();
        async move {
            let metrics = operator_core::metrics::Metrics::new();
            let vm_metrics = novacron_operator::metrics::VmMetrics::register(&metrics);
            let hook = novacron_operator::webhook::start(
                client,
                settings,
                vm_metrics,
                tokio_util::sync::CancellationToken::new(),
            )
            .await
            .unwrap();
            (hook, metrics)
        }
    };

    // Two replicas at once: one creates the Secret, the other reads it.
    let ((a, a_metrics), (b, _)) = tokio::join!(
        start(settings(port, &hosts)),
        start(settings(free_port(), &hosts))
    );
    assert_eq!(a.ca_pem, b.ca_pem, "the replicas made different CAs");
    let ca = a.ca_pem.clone();
    let stored = secrets.get("novacron-operator-webhook-tls").await.unwrap();
    assert_eq!(secret_ca(&stored, CA_CERT_KEY), ca);
    let injected = ca_bundles(&client, &config).await;
    for (bundle, _) in &injected {
        assert_eq!(bundle.as_deref(), Some(ca.as_str()));
    }
    apply_vm(&client, &ns.name, &vm("before", json!({"running": false}))).await;
    assert!(admissions(&a_metrics, "validate") >= 1);
    assert!(admissions(&a_metrics, "mutate") >= 1);

    // A restart with the same settings: the same CA and certificate from
    // the Secret, which is not rewritten, and no new injection.
    a.stop().await;
    b.stop().await;
    let (again, again_metrics) = start(settings(port, &hosts)).await;
    assert_eq!(again.ca_pem, secret_ca(&stored, CA_CERT_KEY));
    let reread = secrets.get("novacron-operator-webhook-tls").await.unwrap();
    assert_eq!(
        reread.metadata.resource_version, stored.metadata.resource_version,
        "the Secret was rewritten on restart"
    );
    assert_eq!(ca_bundles(&client, &config).await, injected);
    // The real API server calls the restarted webhook and trusts it.
    apply_vm(&client, &ns.name, &vm("after", json!({"running": false}))).await;
    assert!(admissions(&again_metrics, "validate") >= 1);
    assert!(admissions(&again_metrics, "mutate") >= 1);
    let vms: Api<VirtualMachine> = ns.api();
    let refused = vms
        .create(
            &PostParams::default(),
            &serde_json::from_value(vm(
                "bad",
                json!({"snapshotPolicy": {"schedule": "@daily", "timeZone": "Mars/Olympus"}}),
            ))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("denied the request"),
        "{refused}"
    );
    assert!(
        admissions_refused(&again_metrics) >= 1,
        "not refused by the restarted webhook"
    );
    again.stop().await;

    // Another name for the webhook: a new serving certificate, same CA.
    let (renamed, _) = start(settings(
        port,
        &["127.0.0.1", "localhost", "novacron-webhook.example"],
    ))
    .await;
    assert_eq!(renamed.ca_pem, ca);
    let renewed = secrets.get("novacron-operator-webhook-tls").await.unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        stored.metadata.resource_version
    );
    assert_eq!(secret_ca(&renewed, CA_CERT_KEY), ca);
    assert_ne!(secret_ca(&renewed, CERT_KEY), secret_ca(&stored, CERT_KEY));
    assert_eq!(ca_bundles(&client, &config).await, injected);
    apply_vm(&client, &ns.name, &vm("renamed", json!({"running": false}))).await;
    renamed.stop().await;
}
