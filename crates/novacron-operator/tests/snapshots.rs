//! Scheduled snapshots against the real API server: VolumeSnapshots
//! (`snapshot.storage.k8s.io/v1`, the CRD installed in the test cluster) are
//! created for every disk on the tick, made consistent first, grouped into
//! `status.snapshots`, and pruned by retention, which keeps the newest ready
//! snapshots even when newer ones fail. KWOK stages play the CSI snapshotter
//! (ready, or an error for claims named `failing-*`).

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kube::api::{Api, DynamicObject, ListParams};
use novacron_operator::crd::{SnapshotPhase, SnapshotPolicy};
use novacron_operator::snapshots::sync::{Quiesce, VmDisks, sync};
use novacron_operator::snapshots::volume_snapshot::api_resource;

/// Records the quiesce calls (the launcher's part is tested with real QEMU
/// in the launcher's crate).
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Quiesce for Recorder {
    async fn quiesce(&self, _: &str, vm: &str) -> Result<String, String> {
        self.0.lock().unwrap().push(format!("quiesce {vm}"));
        Ok("paused".into())
    }
    async fn release(&self, _: &str, vm: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(format!("release {vm}"));
        Ok(())
    }
}

async fn setup() -> envtest::TestNamespace {
    let ns = envtest::test_namespace("snapshots").await.unwrap();
    // Once per cluster (the tests share it).
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| install_snapshot_kind(ns.client()))
        .await;
    ns
}

async fn install_snapshot_kind(client: kube::Client) {
    let yaml = include_str!("fixtures/volumesnapshot-crd.yaml");
    let (crd, stages) = yaml.split_once("\n---\n").unwrap();
    envtest::manifest::apply_yaml(&client, crd, "default", "test")
        .await
        .unwrap();
    envtest::manifest::wait_crds_established(
        &client,
        &["volumesnapshots.snapshot.storage.k8s.io".to_string()],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    envtest::kwok::apply_stage(&client, stages).await.unwrap();
}

fn policy(schedule: &str, retention: i32) -> SnapshotPolicy {
    serde_json::from_value(serde_json::json!({
        "schedule": schedule,
        "retention": retention,
    }))
    .unwrap()
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, minute, 0).unwrap()
}

/// Runs passes until no snapshot is pending (KWOK has answered).
async fn settle(
    client: &kube::Client,
    policy: &SnapshotPolicy,
    disks: &VmDisks<'_>,
    q: &Recorder,
    now: DateTime<Utc>,
) -> novacron_operator::snapshots::sync::Outcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = sync(client, policy, disks, q, now).await.unwrap();
        if outcome
            .snapshots
            .iter()
            .all(|s| s.phase != SnapshotPhase::Pending)
        {
            return outcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshots still pending after 30s: {:?}",
            outcome.snapshots
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn ticks_take_consistent_snapshots_of_every_disk_and_retention_keeps_ready_ones() {
    let ns = setup().await;
    let client = ns.client();
    let q = Recorder::default();
    let every_5 = policy("*/5 * * * *", 2);
    let claims = vec!["web-rootdisk".to_string(), "web-data".to_string()];
    let disks = VmDisks {
        namespace: &ns.name,
        vm: "web",
        since: at(0),
        claims: &claims,
        running: true,
    };

    // Before the first tick: nothing, and the next look is at the tick.
    let first = sync(&client, &every_5, &disks, &q, at(3)).await.unwrap();
    assert!(first.taken.is_none() && first.snapshots.is_empty());
    assert_eq!(first.requeue_after, Some(Duration::from_millis(120_500)));

    // Three ticks, each once: one VolumeSnapshot per disk, quiesced around it.
    for minute in [5, 10, 15] {
        let outcome = sync(&client, &every_5, &disks, &q, at(minute))
            .await
            .unwrap();
        assert_eq!(
            outcome.taken.as_deref(),
            Some(format!("web-2026112310{minute:02}").as_str())
        );
        settle(&client, &every_5, &disks, &q, at(minute)).await;
        let again = sync(&client, &every_5, &disks, &q, at(minute))
            .await
            .unwrap();
        assert!(again.taken.is_none(), "tick {minute} taken twice");
    }
    assert_eq!(
        q.0.lock().unwrap().as_slice(),
        ["quiesce web", "release web"].repeat(3)
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &api_resource());
    let left = api.list(&ListParams::default()).await.unwrap();
    let mut names: Vec<String> = left
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    names.sort();
    // Retention 2: the 10:05 snapshot (both disks) is gone.
    assert_eq!(
        names,
        [
            "web-data-202611231010",
            "web-data-202611231015",
            "web-rootdisk-202611231010",
            "web-rootdisk-202611231015"
        ]
    );
    let outcome = sync(&client, &every_5, &disks, &q, at(16)).await.unwrap();
    let listed: Vec<(&str, SnapshotPhase)> = outcome
        .snapshots
        .iter()
        .map(|s| (s.name.as_str(), s.phase))
        .collect();
    assert_eq!(
        listed,
        [
            ("web-202611231010", SnapshotPhase::Ready),
            ("web-202611231015", SnapshotPhase::Ready)
        ]
    );
    assert_eq!(outcome.snapshots[0].volume_snapshots.len(), 2);
}

#[tokio::test]
async fn failed_snapshots_never_push_ready_ones_out_and_downtime_catches_up_once() {
    let ns = setup().await;
    let client = ns.client();
    let q = Recorder::default();
    let every_5 = policy("*/5 * * * *", 1);
    let good = vec!["db-rootdisk".to_string()];
    let failing = vec!["failing-db-rootdisk".to_string()];
    let healthy = VmDisks {
        namespace: &ns.name,
        vm: "db",
        since: at(0),
        claims: &good,
        running: false,
    };
    settle(&client, &every_5, &healthy, &q, at(5)).await;
    // The CSI driver starts failing: two failed snapshots, the good one stays.
    let broken = VmDisks {
        claims: &failing,
        ..healthy
    };
    sync(&client, &every_5, &broken, &q, at(10)).await.unwrap();
    settle(&client, &every_5, &broken, &q, at(10)).await;
    sync(&client, &every_5, &broken, &q, at(15)).await.unwrap();
    let outcome = settle(&client, &every_5, &broken, &q, at(15)).await;
    let phases: Vec<SnapshotPhase> = outcome.snapshots.iter().map(|s| s.phase).collect();
    assert_eq!(
        phases,
        [
            SnapshotPhase::Ready,
            SnapshotPhase::Failed,
            SnapshotPhase::Failed
        ]
    );
    assert!(
        outcome.snapshots[1]
            .message
            .as_deref()
            .unwrap()
            .contains("could not cut")
    );
    // Not running: nothing to quiesce.
    assert!(q.0.lock().unwrap().is_empty());

    // Back after an hour of downtime with a healthy driver: one catch-up
    // (for 11:15, the latest missed tick), not twelve.
    let healthy_again = VmDisks {
        claims: &good,
        ..broken
    };
    let late = Utc.with_ymd_and_hms(2026, 11, 23, 11, 17, 0).unwrap();
    let outcome = sync(&client, &every_5, &healthy_again, &q, late)
        .await
        .unwrap();
    assert_eq!(outcome.taken.as_deref(), Some("db-202611231115"));
    let outcome = settle(&client, &every_5, &healthy_again, &q, late).await;
    // The newer ready snapshot replaces the old one; the failures go too.
    let names: Vec<&str> = outcome.snapshots.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db-202611231115"]);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &api_resource());
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}
