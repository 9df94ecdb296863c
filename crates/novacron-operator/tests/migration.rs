//! Live migration end to end on the real control plane (envtest: API
//! server, scheduler, KWOK nodes), with the operator in-process under the
//! deploy manifests' RBAC and two real `novacron-launcher` processes
//! running the operator's own launch configs under QEMU (TCG) on loopback.
//! See `migration_support` for how pods, port-forwards and the migration
//! stream are routed to local processes.
//!
//! - A VirtualMachineMigration moves a running VM (TLS with the operator's
//!   certificates, compression) to another node: the phases are recorded,
//!   the VM ends on the target node with the source pod gone, and the
//!   guest's code keeps running on the target.
//! - A VM whose guest dirties memory faster than its bandwidth cap, with
//!   `postCopy`, is moved in post-copy: the target is set up for it, the
//!   source switches after its first pass, and the guest runs on.
//! - Deleting the migration while it streams cancels it: the VM stays on
//!   the source, the target pod goes.
//! - A VM whose policy forbids migration (or whose disk is ReadWriteOnce)
//!   is refused with the reason.
//! - Cordoning a node creates a drain migration for its migratable VM.

#[path = "migration_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use novacron_launcher::api::{
    Compression, LauncherPhase, MigrationPhase as LauncherMigrationPhase,
};
use novacron_operator::build::Names;
use novacron_operator::crd::{MigrationPhase, VirtualMachine, VirtualMachineMigration, VmPhase};
use novacron_operator::migration::{
    DRAIN_DECLINED_ANNOTATION, SOURCE_ANNOTATION, TARGET_LABEL, TRIGGER_LABEL,
};
use serde_json::json;
use support::{Guest, POOL_LABEL, phase, pod_names, receive, start_vm};

const MAX_PARALLEL: u32 = 3;

async fn create_migration(
    client: &Client,
    ns: &str,
    name: &str,
    vm: &str,
    selector: serde_json::Value,
) -> VirtualMachineMigration {
    let m: VirtualMachineMigration = serde_json::from_value(json!({
        "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachineMigration",
        "metadata": {"name": name},
        "spec": {"vmName": vm, "targetNodeSelector": selector},
    }))
    .unwrap();
    let api: Api<VirtualMachineMigration> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &m).await.unwrap()
}

fn mphase(m: &VirtualMachineMigration) -> Option<MigrationPhase> {
    m.status.as_ref().and_then(|s| s.phase)
}

fn ready_message(m: &VirtualMachineMigration) -> String {
    m.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_migration_object_moves_a_running_vm_to_another_node() {
    support::require_tools();
    support::operator(MAX_PARALLEL);
    let ns = envtest::test_namespace("nc-mig").await.unwrap();
    let client = ns.client();
    let vm = start_vm(
        &client,
        &ns.name,
        "mover",
        "migration",
        json!({"allowLiveMigration": true, "compression": true, "encrypted": true,
               "autoConverge": true, "completionTimeout": "5m", "bandwidth": "100MB/s"}),
    )
    .await;
    let vms: Api<VirtualMachine> = ns.api();
    let v = vms.get("mover").await.unwrap();
    let migratable = v
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "LiveMigratable")
        .unwrap();
    assert_eq!(migratable.status, "True", "{migratable:?}");

    // Ask for a specific other node of the pool.
    let target_node = ["mig-a", "mig-b", "mig-c"]
        .into_iter()
        .find(|n| *n != vm.node)
        .unwrap();
    let m = create_migration(
        &client,
        &ns.name,
        "move-1",
        "mover",
        json!({"kubernetes.io/hostname": target_node}),
    )
    .await;
    let target_pod = Names::of("mover").target_pod(&m.uid().unwrap());
    let started = Instant::now();
    let receiving = {
        let client = client.clone();
        let ns = ns.name.clone();
        let target_pod = target_pod.clone();
        let vm_ref = &vm;
        async move { receive(&client, &ns, vm_ref, &target_pod, "127.0.0.11").await }
    };
    // Record every phase (a watch sees each status write) while the target
    // is prepared and the VM moves.
    let migrations: Api<VirtualMachineMigration> = ns.api();
    let watch = async {
        let mut seen: Vec<MigrationPhase> = Vec::new();
        let mut vm_phases: Vec<VmPhase> = Vec::new();
        let mut progress_seen = false;
        let mut ms = std::pin::pin!(
            watcher(
                migrations.clone(),
                watcher::Config::default().fields("metadata.name=move-1")
            )
            .applied_objects()
        );
        let mut vs = std::pin::pin!(
            watcher(
                vms.clone(),
                watcher::Config::default().fields("metadata.name=mover")
            )
            .applied_objects()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
        loop {
            tokio::select! {
                m = ms.next() => {
                    let m = m.unwrap().unwrap();
                    if let Some(p) = mphase(&m)
                        && seen.last() != Some(&p)
                    {
                        seen.push(p);
                    }
                    if let Some(s) = &m.status
                        && s.data_total_bytes.is_some()
                        && s.phase == Some(MigrationPhase::Running)
                    {
                        progress_seen = true;
                    }
                    if matches!(mphase(&m), Some(MigrationPhase::Succeeded | MigrationPhase::Failed)) {
                        return (m, seen, vm_phases, progress_seen);
                    }
                }
                v = vs.next() => {
                    let v = v.unwrap().unwrap();
                    if let Some(p) = phase(&v)
                        && vm_phases.last() != Some(&p)
                    {
                        vm_phases.push(p);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => panic!("migration did not end: {seen:?}"),
            }
        }
    };
    let (mut target, (done, seen, vm_phases, progress_seen)) = tokio::join!(receiving, watch);
    println!(
        "migration phases {seen:?}, VM phases {vm_phases:?}, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let s = done.status.clone().unwrap();
    assert_eq!(
        s.phase,
        Some(MigrationPhase::Succeeded),
        "{}\nsource log:\n{}\ntarget log:\n{}",
        ready_message(&done),
        vm.source.log(),
        target.log()
    );
    assert_eq!(
        seen,
        [
            MigrationPhase::Pending,
            MigrationPhase::Scheduling,
            MigrationPhase::PreparingTarget,
            MigrationPhase::Running,
            MigrationPhase::Succeeded,
        ]
    );
    assert!(vm_phases.contains(&VmPhase::Migrating), "{vm_phases:?}");
    assert!(progress_seen, "no progress was reported while Running");
    assert_eq!(s.source_node.as_deref(), Some(vm.node.as_str()));
    assert_eq!(s.target_node.as_deref(), Some(target_node));
    assert_eq!(s.target_pod.as_deref(), Some(target_pod.as_str()));
    assert_eq!(s.progress, Some(100));
    assert!(
        s.data_total_bytes.unwrap() >= support::GUEST_MEMORY as i64,
        "{s:?}"
    );
    assert!(s.start_time.is_some() && s.completion_time.is_some());

    // The source launcher handed the VM over and exited.
    let exited = tokio::time::timeout(Duration::from_secs(60), {
        let mut source = vm.source;
        async move { source.child.wait().await }
    })
    .await
    .expect("the source launcher exits after migrating")
    .unwrap();
    assert!(exited.success(), "{exited:?}");

    // The VM: on the target node, the target its launcher pod, the source
    // pod gone, Running again (read from the target launcher).
    let deadline = Instant::now() + Duration::from_secs(60);
    let pods: Api<Pod> = ns.api();
    let v = loop {
        let v = vms.get("mover").await.unwrap();
        let names = pod_names(&pods.list(&ListParams::default()).await.unwrap().items);
        let st = v.status.clone().unwrap_or_default();
        if phase(&v) == Some(VmPhase::Running)
            && st.node_name.as_deref() == Some(target_node)
            && !names.contains(&"mover-launcher".to_string())
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "VM not switched: {st:#?} pods {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let st = v.status.unwrap();
    assert_eq!(st.launcher_pod.as_deref(), Some(target_pod.as_str()));
    let vm_mig = st.migration.expect("status.migration");
    assert_eq!(vm_mig.phase, Some(MigrationPhase::Succeeded));
    assert_eq!(vm_mig.migration_name.as_deref(), Some("move-1"));
    let promoted = pods.get(&target_pod).await.unwrap();
    assert!(!promoted.labels().contains_key(TARGET_LABEL));
    // Restarted in its pod, the target boots from the disk, not receiving.
    let config = support::pod_config(&client, &ns.name, &promoted).await;
    assert!(config.incoming.is_none(), "{:?}", config.incoming);

    // The guest runs on the target: QEMU says running, and the guest's
    // heartbeat goes on in the target's serial log (it never booted there).
    let status = target.status().await.expect("target serving");
    assert_eq!(status.phase, LauncherPhase::Running, "{status:?}");
    assert_eq!(status.qemu_status.as_deref(), Some("running"));
    let m = status.migration.unwrap();
    assert_eq!(m.phase, LauncherMigrationPhase::Completed);
    // TLS and compression as the policy asked, as QEMU reports them.
    let settings = m.settings.expect("target settings");
    assert_eq!(settings.compression, "zstd", "{settings:?}");
    assert!(!settings.tls_creds.is_empty(), "{settings:?}");
    let before = target.serial().matches('.').count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.serial().matches('.').count() < before + 3 {
        assert!(
            Instant::now() < deadline,
            "no guest heartbeat on the target"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!target.serial().contains('F'), "the guest was booted anew");

    // Events tell the story on the VM.
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["MigrationScheduling", "MigrationRunning", "Migrated"] {
        assert!(reasons.contains(&r.to_string()), "{r} not in {reasons:?}");
    }
    let _ = target.child.kill().await;
}

#[tokio::test]
async fn a_vm_dirtying_memory_faster_than_its_cap_migrates_in_post_copy() {
    support::require_tools();
    support::operator(MAX_PARALLEL);
    let test_started = Instant::now();
    let ns = envtest::test_namespace("nc-mig-postcopy").await.unwrap();
    let client = ns.client();
    // 32 MB/s: one pass over the guest's 512 MiB takes ~17 s while it
    // rewrites them all at hundreds of MiB/s (TCG), so pre-copy cannot
    // converge.
    let vm = support::start_vm_with(
        &client,
        &ns.name,
        "dirtier",
        "postcopy",
        json!({"allowLiveMigration": true, "postCopy": true, "encrypted": true,
               "bandwidth": "32MB/s"}),
        Guest::Dirty,
    )
    .await;
    let target_node = ["postcopy-a", "postcopy-b"]
        .into_iter()
        .find(|n| *n != vm.node)
        .unwrap();
    let m = create_migration(&client, &ns.name, "pc-1", "dirtier", json!({})).await;
    let target_pod = Names::of("dirtier").target_pod(&m.uid().unwrap());
    let started = Instant::now();
    let mut target = receive(&client, &ns.name, &vm, &target_pod, "127.0.0.14").await;
    // The target pod's launch config (its ConfigMap, read before its
    // launcher started, so before any stream) accepts post-copy.
    let incoming = target.config.incoming.clone().expect("incoming");
    assert!(incoming.post_copy && incoming.tls, "{incoming:?}");
    assert_eq!(
        (incoming.compression, incoming.multifd_channels),
        (Compression::None, None),
        "{incoming:?}"
    );

    let migrations: Api<VirtualMachineMigration> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(120);
    // When the target first reports the switch (a figure, not asserted:
    // the end state below is).
    let mut switched = None;
    let done = loop {
        if switched.is_none() && target.migration().await.is_some_and(|m| m.postcopy) {
            switched = Some(started.elapsed());
        }
        let m = migrations.get("pc-1").await.unwrap();
        if matches!(
            mphase(&m),
            Some(MigrationPhase::Succeeded | MigrationPhase::Failed)
        ) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "migration did not end: {:?}\nsource log:\n{}\ntarget log:\n{}",
            m.status,
            vm.source.log(),
            target.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let took = started.elapsed();
    assert_eq!(
        mphase(&done),
        Some(MigrationPhase::Succeeded),
        "{}\nsource log:\n{}\ntarget log:\n{}",
        ready_message(&done),
        vm.source.log(),
        target.log()
    );
    assert_eq!(
        done.status.as_ref().unwrap().target_node.as_deref(),
        Some(target_node)
    );

    // The source handed the VM over in post-copy and exited.
    let mut source = vm.source;
    let exited = tokio::time::timeout(Duration::from_secs(60), source.child.wait())
        .await
        .expect("the source launcher exits after migrating")
        .unwrap();
    assert!(exited.success(), "{exited:?}\n{}", source.log());
    let term: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&source.config.termination_message_path).unwrap())
            .unwrap();
    assert_eq!(term["reason"], "Migrated", "{term}");
    assert!(
        term["message"].as_str().unwrap().contains("post-copy"),
        "{term}"
    );

    // The target entered post-copy (QEMU's postcopy-ram, the switch seen)
    // and runs the VM.
    let status = target.status().await.expect("target serving");
    assert_eq!(status.phase, LauncherPhase::Running, "{status:?}");
    assert_eq!(status.qemu_status.as_deref(), Some("running"));
    let tm = status.migration.unwrap();
    assert_eq!(tm.phase, LauncherMigrationPhase::Completed);
    assert!(tm.postcopy, "the target did not report post-copy: {tm:?}");
    let settings = tm.settings.expect("target settings");
    assert!(
        settings.capabilities.contains(&"postcopy-ram".to_string()),
        "{settings:?}"
    );
    assert!(!settings.tls_creds.is_empty(), "{settings:?}");

    // The VM: Running on the target node in the target pod, the source
    // pod gone.
    let vms: Api<VirtualMachine> = ns.api();
    let pods: Api<Pod> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = vms.get("dirtier").await.unwrap();
        let names = pod_names(&pods.list(&ListParams::default()).await.unwrap().items);
        let st = v.status.clone().unwrap_or_default();
        if phase(&v) == Some(VmPhase::Running)
            && st.node_name.as_deref() == Some(target_node)
            && st.launcher_pod.as_deref() == Some(target_pod.as_str())
            && !names.contains(&"dirtier-launcher".to_string())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VM not switched: {st:#?} pods {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The guest keeps rewriting all of its memory on the target: new passes
    // on the target's serial port (each touches every page).
    let before = target.serial().matches('.').count();
    target
        .wait_heartbeats(before + 2, Duration::from_secs(30))
        .await;
    println!(
        "post-copy migration {:.1}s (Pending to Succeeded; post-copy seen at {:?}), test {:.1}s: {}",
        took.as_secs_f64(),
        switched.map(|d| format!("{:.1}s", d.as_secs_f64())),
        test_started.elapsed().as_secs_f64(),
        term["message"]
    );
    let _ = target.child.kill().await;
}

#[tokio::test]
async fn deleting_a_running_migration_cancels_it_and_keeps_the_vm_on_its_source() {
    support::require_tools();
    support::operator(MAX_PARALLEL);
    let ns = envtest::test_namespace("nc-mig-cancel").await.unwrap();
    let client = ns.client();
    // 4 MB/s: the guest's 512 MiB of data would take minutes.
    let vm = start_vm(
        &client,
        &ns.name,
        "stayer",
        "cancel",
        json!({"allowLiveMigration": true, "bandwidth": "4MB/s"}),
    )
    .await;
    let m = create_migration(&client, &ns.name, "stay-1", "stayer", json!({})).await;
    let target_pod = Names::of("stayer").target_pod(&m.uid().unwrap());
    let target = receive(&client, &ns.name, &vm, &target_pod, "127.0.0.12").await;
    let migrations: Api<VirtualMachineMigration> = ns.api();
    // Streaming, with progress in status.
    envtest::eventually("migration streaming", Duration::from_secs(120), || async {
        let m = migrations.get("stay-1").await.ok()?;
        let s = m.status?;
        (s.phase == Some(MigrationPhase::Running) && s.data_total_bytes.is_some()).then_some(())
    })
    .await;
    migrations
        .delete("stay-1", &DeleteParams::default())
        .await
        .unwrap();
    // The finalizer cancels, cleans up, and lets the object go.
    envtest::eventually("migration object gone", Duration::from_secs(60), || async {
        migrations
            .get_opt("stay-1")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let pods: Api<Pod> = ns.api();
    envtest::eventually("target pod gone", Duration::from_secs(60), || async {
        pods.get_opt(&target_pod)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // The source still runs the VM; its migration was cancelled.
    let status = vm.source.status().await.expect("source serving");
    assert_eq!(status.phase, LauncherPhase::Running, "{status:?}");
    assert_eq!(status.qemu_status.as_deref(), Some("running"));
    assert_eq!(
        status.migration.map(|m| m.phase),
        Some(LauncherMigrationPhase::Cancelled)
    );
    let vms: Api<VirtualMachine> = ns.api();
    let v = envtest::eventually(
        "VM running on its source",
        Duration::from_secs(60),
        || async {
            let v = vms.get("stayer").await.ok()?;
            (phase(&v) == Some(VmPhase::Running)).then_some(v)
        },
    )
    .await;
    let st = v.status.unwrap();
    assert_eq!(st.node_name.as_deref(), Some(vm.node.as_str()));
    assert_eq!(st.launcher_pod.as_deref(), Some("stayer-launcher"));
    let source_pod = pods.get("stayer-launcher").await.unwrap();
    assert!(!source_pod.annotations().contains_key(SOURCE_ANNOTATION));
    drop(target);
}

#[tokio::test]
async fn vms_that_cannot_migrate_are_refused_with_the_reason() {
    support::operator(MAX_PARALLEL);
    let ns = envtest::test_namespace("nc-mig-refuse").await.unwrap();
    let client = ns.client();
    for (name, policy, rwx) in [
        ("pinned", json!({"allowLiveMigration": false}), true),
        ("local", json!({"allowLiveMigration": true}), false),
    ] {
        let mut manifest = support::vm_manifest(name, "migration", policy);
        manifest["spec"]["running"] = json!(false);
        if !rwx {
            manifest["spec"]["template"]["spec"]["rootDiskAccessMode"] = json!("ReadWriteOnce");
        }
        envtest::manifest::apply_yaml(&client, &manifest.to_string(), &ns.name, support::MANAGER)
            .await
            .unwrap();
    }
    let vms: Api<VirtualMachine> = ns.api();
    // The LiveMigratable condition says why before anyone tries.
    let cond = envtest::eventually("LiveMigratable", Duration::from_secs(60), || async {
        let v = vms.get("pinned").await.ok()?;
        v.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "LiveMigratable")
    })
    .await;
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "MigrationDisabled")
    );
    create_migration(&client, &ns.name, "try-pinned", "pinned", json!({})).await;
    create_migration(&client, &ns.name, "try-local", "local", json!({})).await;
    create_migration(&client, &ns.name, "try-ghost", "ghost", json!({})).await;
    let migrations: Api<VirtualMachineMigration> = ns.api();
    for (name, reason, words) in [
        (
            "try-pinned",
            "MigrationDisabled",
            "allowLiveMigration is false",
        ),
        ("try-local", "DisksNotShared", "rootdisk"),
        ("try-ghost", "VMNotFound", "does not exist"),
    ] {
        let m = envtest::eventually("refused", Duration::from_secs(60), || async {
            let m = migrations.get(name).await.ok()?;
            (mphase(&m) == Some(MigrationPhase::Failed)).then_some(m)
        })
        .await;
        let accepted = m
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Accepted")
            .unwrap();
        assert_eq!(accepted.status, "False");
        assert_eq!(accepted.reason, reason, "{accepted:?}");
        assert!(accepted.message.contains(words), "{accepted:?}");
    }
    // No target pod was made for any of them.
    let pods: Api<Pod> = ns.api();
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn cordoning_a_node_migrates_its_migratable_vms() {
    support::require_tools();
    support::operator(MAX_PARALLEL);
    let ns = envtest::test_namespace("nc-mig-drain").await.unwrap();
    let client = ns.client();
    let vm = start_vm(
        &client,
        &ns.name,
        "drained",
        "drain",
        json!({"allowLiveMigration": true}),
    )
    .await;
    let admin = envtest::client().await.unwrap();
    let nodes: Api<Node> = Api::all(admin.clone());
    let cordon = |on: bool| {
        let nodes = nodes.clone();
        let node = vm.node.clone();
        async move {
            nodes
                .patch(
                    &node,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"unschedulable": on}})),
                )
                .await
                .unwrap();
        }
    };
    cordon(true).await;
    let migrations: Api<VirtualMachineMigration> = ns.api();
    let m = envtest::eventually("drain migration", Duration::from_secs(60), || async {
        let list = migrations
            .list(&ListParams::default().labels(&format!("{TRIGGER_LABEL}=drain")))
            .await
            .ok()?;
        list.items.into_iter().next()
    })
    .await;
    assert_eq!(m.spec.vm_name, "drained");
    // Created once per cordon: later node updates do not add more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let count = migrations
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(count, 1);
    // It goes for the other node of the pool (no launcher is started there
    // in this test; deleting it cancels).
    let target_pod = Names::of("drained").target_pod(&m.uid().unwrap());
    let pods: Api<Pod> = ns.api();
    let placed = envtest::eventually("drain target placed", Duration::from_secs(60), || async {
        let p = pods.get_opt(&target_pod).await.ok()??;
        p.spec?.node_name
    })
    .await;
    assert_ne!(placed, vm.node);
    let node_pool = nodes.get(&placed).await.unwrap().labels()[POOL_LABEL].clone();
    assert_eq!(node_pool, "drain");
    migrations
        .delete(&m.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    envtest::eventually("drain target removed", Duration::from_secs(60), || async {
        pods.get_opt(&target_pod)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // The deletion is remembered on the VM's launcher pod, so a restarted
    // operator (a drain pass without memory) does not create it again.
    let source = pods.get(&Names::of("drained").pod()).await.unwrap();
    assert_eq!(
        source.annotations().get(DRAIN_DECLINED_ANNOTATION),
        Some(&m.name_any()),
        "{:?}",
        source.annotations()
    );
    envtest::eventually(
        "the drain migration gone",
        Duration::from_secs(30),
        || async {
            migrations
                .get_opt(&m.name_any())
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    novacron_operator::migration::drain::drain_once(
        &admin,
        &operator_core::events::Events::new(admin.clone(), "drain-test"),
        Some(&ns.name),
        &vm.node,
    )
    .await
    .unwrap();
    let left = migrations.list(&ListParams::default()).await.unwrap().items;
    assert!(
        left.is_empty(),
        "a declined drain migration came back: {left:?}"
    );
    cordon(false).await;
}
