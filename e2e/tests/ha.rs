//! High availability: two replicas of an operator with leader election, as
//! real processes on the local cluster. Only the leader reconciles; after the
//! leader is killed with SIGKILL (no chance to hand the lease back) the
//! standby takes over once the lease expires and carries on: work created
//! while no one led is done, and work done before is neither lost nor
//! redone (its children are not rewritten).
//!
//! The workshop operator stands in for all four (the election is
//! operator-core's), run with the token of the ServiceAccount its
//! kustomization creates.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

const LEASE_SECONDS: u64 = 6;

#[tokio::test]
async fn standby_takes_over_after_the_leader_is_killed() {
    let case = &WORKSHOP;
    let ns = envtest::test_namespace("ha").await.unwrap();
    let client = ns.client();
    let admin = envtest::shared().kubeconfig().to_path_buf();
    let deploy = workspace().join("deploy").join(case.op);
    kubectl(
        &admin,
        &["apply", "--server-side", "-k", deploy.to_str().unwrap()],
    );
    envtest::manifest::wait_crds_established(
        &client,
        &["workshops.orchestra.io".to_string()],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let kubeconfig = service_account_kubeconfig(&client, &admin, case).await;
    let lease_env = [
        ("LEASE_DURATION", "6s"),
        // Every finished reconcile is logged at debug level.
        ("LOG_LEVEL", "info,operator_core=debug"),
    ];
    let mut first = RunningOperator::start_as(case, kubeconfig.path(), "replica-a", &lease_env);
    wait_for_holder(
        &client,
        case,
        "replica-a",
        Duration::from_secs(60),
        &mut first,
    )
    .await;
    let mut second = RunningOperator::start_as(case, kubeconfig.path(), "replica-b", &lease_env);

    // The leader does the work; the standby only waits.
    apply_workshop(&client, &ns.name, "before-failover").await;
    let before = wait_for_session(&client, &ns.name, "before-failover", &mut first).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.check();
    let standby_log = second.log();
    assert!(
        standby_log.contains("waiting for leadership") && !standby_log.contains("acquired"),
        "the second replica should be waiting for the lease:\n{standby_log}"
    );
    assert!(
        reconciles_in(&first.log()) > 0,
        "the leader's log shows no reconcile:\n{}",
        first.log()
    );
    assert_eq!(
        reconciles_in(&standby_log),
        0,
        "the standby reconciled while not leading:\n{standby_log}"
    );

    // SIGKILL: the lease is not handed back, it has to expire.
    first.kill();
    let killed_at = Instant::now();
    // Work that arrives while no one leads.
    apply_workshop(&client, &ns.name, "during-failover").await;

    let limit = Duration::from_secs(LEASE_SECONDS * 2 + 10);
    wait_for_holder(&client, case, "replica-b", limit, &mut second).await;
    let takeover = killed_at.elapsed();
    wait_for_session(&client, &ns.name, "during-failover", &mut second).await;
    let caught_up = killed_at.elapsed();
    println!(
        "failover: lease {LEASE_SECONDS}s, standby leading {:.1}s and pending work done {:.1}s after SIGKILL",
        takeover.as_secs_f64(),
        caught_up.as_secs_f64()
    );

    // Nothing lost, nothing redone: the first workshop's session is the same
    // object at the same version (the new leader's apply changed nothing).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let after = deployments.get(&before.name_any()).await.unwrap();
    assert_eq!(after.uid(), before.uid(), "the session was recreated");
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "the new leader rewrote the session's spec"
    );
    for name in ["before-failover", "during-failover"] {
        let sessions = deployments
            .list(&ListParams::default().labels(&format!("workshop={name}")))
            .await
            .unwrap();
        assert_eq!(sessions.items.len(), 1, "{name}: sessions {sessions:?}");
    }
    second.check();
}

async fn apply_workshop(client: &Client, namespace: &str, name: &str) {
    let yaml = format!(
        "apiVersion: orchestra.io/v1\nkind: Workshop\nmetadata:\n  name: {name}\nspec:\n  name: {name}\n  duration: 4h\n  participants: 1\n"
    );
    for obj in envtest::manifest::parse_documents(&yaml).unwrap() {
        envtest::manifest::apply_object(client, obj, namespace, "e2e")
            .await
            .unwrap();
    }
}

/// The Deployment of the workshop's one session, once it exists.
async fn wait_for_session(
    client: &Client,
    namespace: &str,
    workshop: &str,
    operator: &mut RunningOperator,
) -> Deployment {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels(&format!("workshop={workshop}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        operator.check();
        if let Some(d) = deployments.list(&lp).await.unwrap().items.pop() {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "workshop {workshop}: no session Deployment within 60s\n{}",
            operator.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_holder(
    client: &Client,
    case: &Case,
    identity: &str,
    limit: Duration,
    operator: &mut RunningOperator,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), case.namespace);
    let deadline = Instant::now() + limit;
    loop {
        operator.check();
        let holder = leases
            .get_opt(&format!("{}-leader", case.op))
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        if holder.as_deref().is_some_and(|h| h.starts_with(identity)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{identity} did not hold the lease within {limit:?} (holder {holder:?})\n{}",
            operator.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reconciles a replica's log shows (operator-core logs each finished one at
/// debug level and each failure at warn level, both in a `reconciling` span).
fn reconciles_in(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("reconciled") || l.contains("reconcile failed"))
        .count()
}
