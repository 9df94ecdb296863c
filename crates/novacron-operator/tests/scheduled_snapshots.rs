//! Scheduled snapshots through the VM reconciler, on the real control plane:
//! the operator runs in-process (as in `vms.rs`, with the deploy manifests'
//! ServiceAccount and RBAC), the VolumeSnapshot CRD of
//! `fixtures/volumesnapshot-crd.yaml` is installed and KWOK stages play the
//! CSI snapshotter (ready, or an error for claims named `failing-*`).
//!
//! A VM with an every-minute schedule gets a VolumeSnapshot of each disk on
//! the tick, quiesced around the cut by its launcher (a stand-in in this
//! process, reached through KWOK's pod port-forward, that records the
//! VolumeSnapshots present when `/quiesce` and `/release` arrive);
//! `status.snapshots` lists them Ready; retention keeps the newest two ready
//! snapshots and a failed one never counts; new VMs start from the root
//! disk's VolumeSnapshot or from the VM snapshot's name (`snapshot://`), and
//! a missing snapshot is reported.

mod shipped_rbac;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use envtest::kwok::{ForwardTarget, forward_port};
use k8s_openapi::api::core::v1::{Event as CoreEvent, PersistentVolumeClaim};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use novacron_launcher::api::{LauncherPhase, LauncherStatus, QuiesceState, QuiesceStatus};
use novacron_operator::crd::{SnapshotPhase, VirtualMachine, VmPhase};
use novacron_operator::settings::Settings;
use novacron_operator::snapshots::volume_snapshot::{self, CONSISTENCY_ANNOTATION, api_resource};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MANAGER: &str = "novacron-tests";
const TIMEOUT: Duration = Duration::from_secs(90);

/// Starts the CRDs, the VolumeSnapshot kind and the operator once for this
/// binary, on a runtime of its own.
fn operator() {
    static OP: OnceLock<()> = OnceLock::new();
    OP.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let admin = envtest::client().await.unwrap();
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../deploy/novacron-operator/crds");
                envtest::manifest::install_crd_dir(&admin, &dir)
                    .await
                    .unwrap();
                install_snapshot_kind(&admin).await;
                let client = shipped_rbac::operator_client(&admin, &["rbac.yaml"]).await;
                let settings = Settings {
                    status_interval: Duration::from_secs(5),
                    ..Settings::default()
                };
                let args = operator_core::cli::RunArgs {
                    metrics_addr: ([127, 0, 0, 1], 0).into(),
                    concurrency: 4,
                    ..Default::default()
                };
                let op = operator_core::Operator {
                    name: novacron_operator::controllers::OPERATOR,
                    version: env!("CARGO_PKG_VERSION"),
                    revision: "test",
                    crds: novacron_operator::crd::all,
                };
                let run = tokio::spawn(async move {
                    operator_core::runtime::run_with_client(
                        &op,
                        args,
                        client,
                        operator_core::metrics::Metrics::new(),
                        move |rt| novacron_operator::controllers::run_with(rt, settings),
                    )
                    .await
                });
                tx.send(()).unwrap();
                run.await.unwrap().unwrap();
            });
        });
        rx.recv_timeout(Duration::from_secs(180))
            .expect("the operator started");
    });
}

async fn install_snapshot_kind(client: &Client) {
    let yaml = include_str!("fixtures/volumesnapshot-crd.yaml");
    let (crd, stages) = yaml.split_once("\n---\n").unwrap();
    envtest::manifest::apply_yaml(client, crd, "default", MANAGER)
        .await
        .unwrap();
    envtest::manifest::wait_crds_established(
        client,
        &["volumesnapshots.snapshot.storage.k8s.io".to_string()],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    envtest::kwok::apply_stage(client, stages).await.unwrap();
}

/// One control API call the stand-in saw: the path and the VolumeSnapshots
/// of its VM that existed at that moment.
type Call = (String, Vec<String>);

/// A stand-in launcher: a running VM that pauses on `/quiesce`.
#[derive(Clone)]
struct StandIn {
    calls: Arc<Mutex<Vec<Call>>>,
    port: u16,
}

impl StandIn {
    async fn start(admin: Client, ns: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = StandIn {
            calls: Arc::default(),
            port: listener.local_addr().unwrap().port(),
        };
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (server, admin, ns) = (server.clone(), admin.clone(), ns.clone());
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
                    let (code, body) = server.answer(&line, &admin, &ns).await;
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

    async fn answer(&self, line: &str, admin: &Client, ns: &str) -> (u16, String) {
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        match (method, path) {
            ("GET", "/status") => (200, serde_json::to_string(&running()).unwrap()),
            ("POST", "/quiesce" | "/release") => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(admin.clone(), ns, &api_resource());
                let mut present: Vec<String> = api
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items.iter().map(|o| o.name_any()).collect())
                    .unwrap_or_default();
                present.sort();
                self.calls.lock().unwrap().push((path.to_owned(), present));
                let state = if path == "/quiesce" {
                    QuiesceState::Paused
                } else {
                    QuiesceState::Released
                };
                let body = QuiesceStatus {
                    state,
                    frozen_filesystems: None,
                    auto_release_seconds: Some(60),
                    message: String::new(),
                };
                (200, serde_json::to_string(&body).unwrap())
            }
            _ => (404, "{}".into()),
        }
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
        ..LauncherStatus::default()
    }
}

fn vm_object(name: &str, source: &str, extra: Value) -> Value {
    let mut v = json!({
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "running": true,
            "template": {"spec": {
                "resources": {"cpu": 1, "memory": "1Gi", "disk": "10Gi"},
                "image": {"source": source},
                "terminationGracePeriodSeconds": 5,
            }},
        },
    });
    let (Value::Object(spec), Value::Object(extra)) = (&mut v["spec"], extra) else {
        unreachable!()
    };
    spec.extend(extra);
    v
}

fn tick_of(t: DateTime<Utc>, minutes_ago: i64) -> DateTime<Utc> {
    t.with_second(0).unwrap().with_nanosecond(0).unwrap() - chrono::Duration::minutes(minutes_ago)
}

async fn wait_vm(
    vms: &Api<VirtualMachine>,
    name: &str,
    what: &str,
    pred: impl Fn(&VirtualMachine) -> bool,
) -> VirtualMachine {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let vm = vms.get(name).await.unwrap();
        if pred(&vm) {
            return vm;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name}: {what}: {:#?}",
            vm.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_vm_snapshots_on_schedule_quiesced_retention_keeps_ready_ones_and_a_vm_starts_from_one() {
    operator();
    let ns = envtest::test_namespace("nc-snap").await.unwrap();
    let client = ns.client();
    let vms: Api<VirtualMachine> = ns.api();
    let snaps: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &api_resource());
    let started = std::time::Instant::now();

    // Created early in a minute: the VM runs (and lists the earlier
    // snapshots) well before the first tick at the next minute.
    let second = Utc::now().second();
    if second > 15 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    // Snapshots of earlier ticks (as if taken before): two ready ones and,
    // newest, a failed one (its data disk's claim makes KWOK fail it).
    let now = Utc::now();
    let old = [
        (tick_of(now, 3), ["app-rootdisk", "app-data"]),
        (tick_of(now, 2), ["app-rootdisk", "app-data"]),
        (tick_of(now, 1), ["app-rootdisk", "failing-app-data"]),
    ];
    for (tick, claims) in &old {
        for claim in claims {
            let obj = volume_snapshot::build("app", &ns.name, claim, *tick, None, "paused");
            snaps.create(&PostParams::default(), &obj).await.unwrap();
        }
    }
    let id = |t: DateTime<Utc>| volume_snapshot::tick_id(t);

    let launcher = StandIn::start(client.clone(), ns.name.clone()).await;
    launcher.route(&client, &ns.name, "app").await;
    let mut app = vm_object(
        "app",
        "http://images.example.com/app.qcow2",
        json!({"snapshotPolicy": {"schedule": "* * * * *", "retention": 2}}),
    );
    app["spec"]["template"]["spec"]["volumes"] = json!([{"name": "data", "size": "1Gi"}]);
    envtest::manifest::apply_yaml(&client, &app.to_string(), &ns.name, MANAGER)
        .await
        .unwrap();

    // Before the first tick: the earlier snapshots are listed (newest
    // first), retention leaves them (the failed one does not count).
    let vm = wait_vm(&vms, "app", "the earlier snapshots listed", |vm| {
        vm.status.as_ref().is_some_and(|s| s.snapshots.len() == 3)
    })
    .await;
    let status = vm.status.unwrap();
    let listed: Vec<(String, SnapshotPhase)> = status
        .snapshots
        .iter()
        .map(|s| (s.name.clone(), s.phase))
        .collect();
    assert_eq!(
        listed,
        [
            (format!("app-{}", id(old[2].0)), SnapshotPhase::Failed),
            (format!("app-{}", id(old[1].0)), SnapshotPhase::Ready),
            (format!("app-{}", id(old[0].0)), SnapshotPhase::Ready),
        ]
    );
    assert!(status.next_snapshot_time.is_some());

    // The tick: one VolumeSnapshot per disk, Ready; the oldest ready one
    // and the failed one are pruned.
    let tick = tick_of(now, -1);
    let taken = format!("app-{}", id(tick));
    let vm = wait_vm(
        &vms,
        "app",
        "the tick's snapshot ready and pruning done",
        |vm| {
            vm.status.as_ref().is_some_and(|s| {
                s.snapshots.len() == 2
                    && s.snapshots[0].name == taken
                    && s.snapshots[0].phase == SnapshotPhase::Ready
            })
        },
    )
    .await;
    assert_eq!(vm.status.as_ref().unwrap().phase, Some(VmPhase::Running));
    let status = vm.status.unwrap();
    assert_eq!(status.snapshots[1].name, format!("app-{}", id(old[1].0)));
    assert_eq!(
        status.snapshots[0].volume_snapshots,
        [
            format!("app-data-{}", id(tick)),
            format!("app-rootdisk-{}", id(tick))
        ]
    );
    let schedule = status
        .conditions
        .iter()
        .find(|c| c.type_ == "SnapshotSchedule")
        .expect("SnapshotSchedule condition");
    assert_eq!(
        (schedule.status.as_str(), schedule.reason.as_str()),
        ("True", "Scheduled")
    );
    let mut left: Vec<String> = snaps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    left.sort();
    // A later tick may have been taken meanwhile on a slow machine; the
    // oldest ready and the failed snapshot are gone in any case.
    for gone in [
        format!("app-rootdisk-{}", id(old[0].0)),
        format!("app-data-{}", id(old[0].0)),
        format!("app-rootdisk-{}", id(old[2].0)),
        format!("failing-app-data-{}", id(old[2].0)),
    ] {
        assert!(!left.contains(&gone), "{gone} should be pruned: {left:?}");
    }
    let root_snapshot = format!("app-rootdisk-{}", id(tick));
    let cut = snaps.get(&root_snapshot).await.unwrap();
    assert_eq!(cut.annotations()[CONSISTENCY_ANNOTATION], "paused");
    assert_eq!(
        cut.data["spec"]["source"]["persistentVolumeClaimName"],
        "app-rootdisk"
    );

    // Quiesced around the cut: no snapshot of the tick at /quiesce, both
    // disks' at /release.
    let calls = launcher.calls.lock().unwrap().clone();
    let of_tick = |names: &Vec<String>| names.iter().filter(|n| n.ends_with(&id(tick))).count();
    let release = calls
        .iter()
        .position(|(path, names)| path == "/release" && of_tick(names) == 2)
        .unwrap_or_else(|| panic!("no release after the cut: {calls:?}"));
    assert!(release > 0, "{calls:?}");
    assert_eq!(calls[release - 1].0, "/quiesce", "{calls:?}");
    assert_eq!(of_tick(&calls[release - 1].1), 0, "{calls:?}");

    // Events: taken, pruned, and the failed snapshot as a Warning.
    let events: Api<CoreEvent> = ns.api();
    let reasons: Vec<(String, String)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("app"))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect();
    for want in [
        ("Normal", "SnapshotTaken"),
        ("Normal", "SnapshotPruned"),
        ("Warning", "SnapshotFailed"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|(t, r)| (t.as_str(), r.as_str()) == want),
            "no {want:?} event in {reasons:?}"
        );
    }

    // A new VM starts from the root disk's snapshot.
    launcher.route(&client, &ns.name, "restored").await;
    let restored = vm_object(
        "restored",
        &format!("snapshot://{root_snapshot}"),
        json!({}),
    );
    envtest::manifest::apply_yaml(&client, &restored.to_string(), &ns.name, MANAGER)
        .await
        .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let root = envtest::eventually("the restored VM's root disk", TIMEOUT, || async {
        pvcs.get_opt("restored-rootdisk").await.ok()?
    })
    .await;
    let source = root.spec.unwrap().data_source.expect("a dataSource");
    assert_eq!(
        (
            source.api_group.as_deref(),
            source.kind.as_str(),
            source.name.as_str()
        ),
        (
            Some("snapshot.storage.k8s.io"),
            "VolumeSnapshot",
            root_snapshot.as_str()
        )
    );
    let vm = wait_vm(&vms, "restored", "Running", |vm| {
        vm.status.as_ref().and_then(|s| s.phase) == Some(VmPhase::Running)
    })
    .await;
    let disk = vm
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "DiskReady")
        .unwrap();
    assert_eq!(
        (disk.status.as_str(), disk.reason.as_str()),
        ("True", "Cloned")
    );

    // Or from the VM snapshot as `status.snapshots` names it: its root
    // disk's VolumeSnapshot is used.
    let group = volume_snapshot::snapshot_name("app", tick);
    let from_group = vm_object("from-group", &format!("snapshot://{group}"), json!({}));
    envtest::manifest::apply_yaml(&client, &from_group.to_string(), &ns.name, MANAGER)
        .await
        .unwrap();
    let root = envtest::eventually(
        "the root disk restored from the VM snapshot",
        TIMEOUT,
        || async { pvcs.get_opt("from-group-rootdisk").await.ok()? },
    )
    .await;
    assert_eq!(
        root.spec.unwrap().data_source.expect("a dataSource").name,
        root_snapshot
    );

    // A snapshot that does not exist is said so, and nothing is created.
    let missing = vm_object("from-nothing", "snapshot://app-209901010000", json!({}));
    envtest::manifest::apply_yaml(&client, &missing.to_string(), &ns.name, MANAGER)
        .await
        .unwrap();
    let vm = wait_vm(&vms, "from-nothing", "SnapshotNotFound", |vm| {
        vm.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "DiskReady" && c.reason == "SnapshotNotFound")
        })
    })
    .await;
    let status = vm.status.unwrap();
    assert_eq!(status.phase, Some(VmPhase::Pending));
    let disk = status
        .conditions
        .iter()
        .find(|c| c.type_ == "DiskReady")
        .unwrap();
    assert!(
        disk.message
            .contains("snapshot://app-209901010000: no VolumeSnapshot"),
        "{}",
        disk.message
    );
    assert!(
        pvcs.get_opt("from-nothing-rootdisk")
            .await
            .unwrap()
            .is_none()
    );
    println!("scheduled snapshot test took {:?}", started.elapsed());
}
