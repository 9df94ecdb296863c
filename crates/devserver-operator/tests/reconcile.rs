//! The controllers against a real control plane (envtest: kube-apiserver,
//! kube-controller-manager, kube-scheduler and KWOK nodes, where pods become
//! Running and Ready and claims bind). One operator runs in-process for the
//! whole test binary, watching every namespace, as in production.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use devserver_operator::build::USER_LABEL;
use devserver_operator::build::user::{LIMIT_RANGE_NAME, QUOTA_NAME, USER_SA};
use devserver_operator::controllers::DEFAULT_CONFLICT;
use devserver_operator::crd::{
    DevServer, DevServerFlavor, DevServerPhase, DevServerUser, DevServerUserPhase, Schedulable,
};
use devserver_operator::reconcile::devserver::FLAVOR_RESOLVED;
use envtest::manifest::apply_yaml;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

const MANAGER: &str = "devserver-operator-tests";
const TIMEOUT: Duration = Duration::from_secs(60);
const USER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyReplaceMe user@laptop";

/// Starts the CRDs and the operator once for this binary, on a runtime of
/// its own (each test has its own runtime).
fn start_operator() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let client = envtest::client().await.unwrap();
                install_crds(&client).await;
                tx.send(()).unwrap();
                let args = operator_core::cli::RunArgs {
                    metrics_addr: "127.0.0.1:0".parse().unwrap(),
                    ..Default::default()
                };
                let operator = devserver_operator::operator();
                operator_core::runtime::run_with_client(
                    &operator,
                    args,
                    client,
                    operator_core::metrics::Metrics::new(),
                    devserver_operator::controllers::run,
                )
                .await
                .unwrap();
            });
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("CRDs installed");
    });
}

async fn install_crds(client: &Client) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/devserver-operator/crds");
    envtest::manifest::install_crd_dir(client, &dir)
        .await
        .unwrap();
    // Karpenter's NodePool CRD, before the operator starts (it looks once).
    let pools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    envtest::manifest::install_crd_dir(client, &pools)
        .await
        .unwrap();
}

async fn setup(prefix: &str) -> (envtest::TestNamespace, String) {
    let ns = envtest::test_namespace(prefix).await.unwrap();
    start_operator();
    let suffix = ns.name.rsplit('-').next().unwrap().to_string();
    (ns, suffix)
}

async fn apply(client: &Client, yaml: &str, ns: &str) {
    apply_yaml(client, yaml, ns, MANAGER)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}

fn gpu_flavor(name: &str) -> String {
    format!(
        "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: {name}\nspec:\n  resources:\n    requests: {{cpu: '1', memory: 1Gi, nvidia.com/gpu: '1'}}\n    limits: {{cpu: '2', memory: 2Gi, nvidia.com/gpu: '1'}}\n  nodeSelector:\n    nvidia.com/gpu.present: 'true'\n  tolerations:\n  - {{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}\n"
    )
}

fn cpu_flavor(name: &str, default: bool) -> String {
    format!(
        "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: {name}\nspec:\n  default: {default}\n  resources:\n    requests: {{cpu: 100m, memory: 128Mi}}\n"
    )
}

fn devserver(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n  owner: alice\n  image: python:3.12\n  ssh:\n    publicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyReplaceMe alice@laptop\n{spec}"
    )
}

fn phase(ds: &DevServer) -> Option<DevServerPhase> {
    ds.status.as_ref().and_then(|s| s.phase)
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits for `phase`, checking on every observation that `Running` is never
/// reported while the server's pod is not Ready.
async fn wait_phase(client: &Client, ns: &str, name: &str, want: DevServerPhase) -> DevServer {
    let servers: Api<DevServer> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        // The pod first: the operator reports Stopping before it removes
        // pods, so if the later read still says Running, the pod existed
        // when it was read, even right after `running: false` or an expiry.
        let pod = pods.get_opt(&format!("{name}-0")).await.unwrap();
        let ds = servers.get(name).await.unwrap();
        // The operator writes Stopping (stop, expiry, idle) or Starting (a
        // new pod template) before pods go, so this holds on every read.
        assert!(
            phase(&ds) != Some(DevServerPhase::Running) || pod.as_ref().is_some_and(pod_ready),
            "{name} reported Running without a Ready pod: status {:#?}, pod {:#?}",
            ds.status,
            pod.map(|p| (p.metadata.creation_timestamp, p.metadata.uid, p.status))
        );
        if phase(&ds) == Some(want) {
            return ds;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name} {want}: status {:#?}, pod {:#?}",
            ds.status,
            pod.map(|p| (p.metadata, p.status))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_user_gets_a_namespace_rbac_and_quotas_and_deleting_it_cleans_up() {
    let (ns, suffix) = setup("ds-user").await;
    let client = ns.client();
    let username = format!("u{suffix}");
    let user_ns = format!("dev-{username}");
    apply(
        &client,
        &format!(
            "apiVersion: devserver.io/v1\nkind: DevServerUser\nmetadata:\n  name: {username}\nspec:\n  username: {username}\n  namespaceDeletionPolicy: Delete\n  sshPublicKeys:\n  - {USER_KEY}\n  rbac:\n    additionalRoleRefs:\n    - {{kind: ClusterRole, name: view}}\n  quotas:\n    resourceQuotaSpec:\n      hard: {{requests.nvidia.com/gpu: '2'}}\n    limitRangeSpec:\n      limits:\n      - type: Container\n        defaultRequest: {{cpu: 250m, memory: 256Mi}}\n"
        ),
        "default",
    )
    .await;
    let users: Api<DevServerUser> = Api::all(client.clone());
    let status = envtest::eventually("user Ready", TIMEOUT, || async {
        let s = users.get(&username).await.ok()?.status?;
        (s.phase == Some(DevServerUserPhase::Ready)).then_some(s)
    })
    .await;
    assert_eq!(status.namespace.as_deref(), Some(user_ns.as_str()));
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    let namespace = Api::<Namespace>::all(client.clone())
        .get(&user_ns)
        .await
        .unwrap();
    assert_eq!(namespace.labels()[USER_LABEL], username);
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &user_ns);
    sa.get(USER_SA).await.unwrap();
    let role = Api::<Role>::namespaced(client.clone(), &user_ns)
        .get(USER_SA)
        .await
        .unwrap();
    assert!(role.rules.unwrap().iter().any(|r| {
        r.resources
            .as_ref()
            .is_some_and(|rs| rs.contains(&"pods/portforward".to_string()))
    }));
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &user_ns);
    assert_eq!(
        rbs.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(&format!("devserver-user:{username}"))
        .await
        .unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &user_ns);
    quotas.get(QUOTA_NAME).await.unwrap();
    let limits: Api<LimitRange> = Api::namespaced(client.clone(), &user_ns);
    limits.get(LIMIT_RANGE_NAME).await.unwrap();

    // The authorizer agrees: the ServiceAccount may create and patch
    // DevServers and port-forward in its namespace, not elsewhere, and may
    // read flavors.
    let sa_user = format!("system:serviceaccount:{user_ns}:{USER_SA}");
    let can = |verb: &str, resource: &str, sub: Option<&str>, namespace: Option<&str>| {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(sa_user.clone()),
                groups: Some(vec!["system:serviceaccounts".into()]),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(if resource.starts_with("devserver") {
                        "devserver.io".into()
                    } else {
                        String::new()
                    }),
                    resource: Some(resource.into()),
                    subresource: sub.map(str::to_string),
                    verb: Some(verb.into()),
                    namespace: namespace.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let client = client.clone();
        async move {
            Api::<SubjectAccessReview>::all(client)
                .create(&PostParams::default(), &review)
                .await
                .unwrap()
                .status
                .unwrap()
                .allowed
        }
    };
    assert!(can("create", "devservers", None, Some(&user_ns)).await);
    assert!(can("patch", "devservers", None, Some(&user_ns)).await);
    assert!(can("create", "pods", Some("portforward"), Some(&user_ns)).await);
    assert!(can("list", "devserverflavors", None, None).await);
    assert!(!can("create", "devservers", None, Some(&ns.name)).await);
    assert!(!can("get", "secrets", None, Some(&user_ns)).await);

    // And with a real token of that ServiceAccount: a DevServer can be
    // created in the user's namespace and not in another one.
    let as_user = envtest::kubeconfig::service_account_client(
        &client,
        envtest::shared().kubeconfig(),
        &user_ns,
        USER_SA,
    )
    .await
    .unwrap();
    let probe = |name: &str| {
        serde_json::from_value::<DevServer>(serde_json::json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServer",
            "metadata": {"name": name},
            "spec": {"owner": username, "running": false}
        }))
        .unwrap()
    };
    Api::<DevServer>::namespaced(as_user.clone(), &user_ns)
        .create(&PostParams::default(), &probe("probe"))
        .await
        .expect("the user's ServiceAccount can create DevServers in its namespace");
    let denied = Api::<DevServer>::namespaced(as_user.clone(), &ns.name)
        .create(&PostParams::default(), &probe("probe"))
        .await
        .unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(e) if e.code == 403),
        "{denied:?}"
    );
    Api::<DevServerFlavor>::all(as_user)
        .list(&ListParams::default())
        .await
        .expect("the user can list flavors");

    // The user's DevServers without a key of their own get the user's keys.
    let flavor = format!("user-{suffix}");
    apply(&client, &cpu_flavor(&flavor, false), "default").await;
    apply(
        &client,
        &format!(
            "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata:\n  name: mine\nspec:\n  owner: {username}\n  flavor: {flavor}\n"
        ),
        &user_ns,
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &user_ns);
    let keys = envtest::eventually("authorized_keys from the user", TIMEOUT, || async {
        let cm = cms.get_opt("mine-ssh-config").await.ok()??;
        cm.data?.get("authorized_keys").cloned()
    })
    .await;
    assert_eq!(keys, format!("{USER_KEY}\n"));
    let _ = Api::<DevServerFlavor>::all(client.clone())
        .delete(&flavor, &DeleteParams::default())
        .await;

    // Dropping the quotas removes them.
    users
        .patch(
            &username,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "devserver.io/v1", "kind": "DevServerUser",
                "spec": {"username": username, "namespaceDeletionPolicy": "Delete"}
            })),
        )
        .await
        .unwrap();
    envtest::eventually("quota and extra binding pruned", TIMEOUT, || async {
        let q = quotas.get_opt(QUOTA_NAME).await.ok()?;
        let n = rbs.list(&ListParams::default()).await.ok()?.items.len();
        (q.is_none() && n == 1).then_some(())
    })
    .await;

    // Deleting the user deletes what it created, namespace included (policy
    // Delete).
    users
        .delete(&username, &DeleteParams::default())
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    envtest::eventually("namespace and RBAC deleted", TIMEOUT, || async {
        let gone_ns = namespaces
            .get_opt(&user_ns)
            .await
            .ok()?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some());
        let gone_crb = Api::<ClusterRoleBinding>::all(client.clone())
            .get_opt(&format!("devserver-user:{username}"))
            .await
            .ok()?
            .is_none();
        (gone_ns && gone_crb).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_retained_namespace_survives_its_user() {
    let (ns, suffix) = setup("ds-retain").await;
    let client = ns.client();
    let username = format!("r{suffix}");
    let user_ns = format!("dev-{username}");
    apply(
        &client,
        &format!("apiVersion: devserver.io/v1\nkind: DevServerUser\nmetadata:\n  name: {username}\nspec:\n  username: {username}\n"),
        "default",
    )
    .await;
    let users: Api<DevServerUser> = Api::all(client.clone());
    envtest::eventually("user Ready", TIMEOUT, || async {
        let s = users.get(&username).await.ok()?.status?;
        (s.phase == Some(DevServerUserPhase::Ready)).then_some(())
    })
    .await;
    users
        .delete(&username, &DeleteParams::default())
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &user_ns);
    envtest::eventually("ServiceAccount garbage-collected", TIMEOUT, || async {
        sas.get_opt(USER_SA).await.ok()?.is_none().then_some(())
    })
    .await;
    let namespace = Api::<Namespace>::all(client.clone())
        .get(&user_ns)
        .await
        .unwrap();
    assert!(namespace.metadata.deletion_timestamp.is_none());
    Api::<Namespace>::all(client.clone())
        .delete(&user_ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_gpu_devserver_lands_on_the_gpu_node_and_runs_once_its_pod_is_ready() {
    let (ns, suffix) = setup("ds-gpu").await;
    let client = ns.client();
    let flavor = format!("gpu-{suffix}");
    apply(&client, &gpu_flavor(&flavor), "default").await;
    apply(
        &client,
        &devserver("gpu", &format!("  flavor: {flavor}\n")),
        &ns.name,
    )
    .await;

    let ds = wait_phase(&client, &ns.name, "gpu", DevServerPhase::Running).await;
    let fstatus = Api::<DevServerFlavor>::all(client.clone())
        .get(&flavor)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(fstatus.schedulable, Some(Schedulable::Yes));
    let status = ds.status.unwrap();
    assert_eq!(status.flavor.as_deref(), Some(flavor.as_str()));
    assert_eq!(status.observed_generation, ds.metadata.generation);
    assert_eq!(
        status.ssh.as_ref().unwrap().service.as_deref(),
        Some("gpu-ssh")
    );
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    let pod = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .get("gpu-0")
        .await
        .unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("kwok-gpu-0"));
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("python:3.12"));
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0,
        "1"
    );
    assert_eq!(spec.security_context.unwrap().run_as_non_root, Some(true));
    let events: Api<Event> = ns.api();
    envtest::eventually("Running event", TIMEOUT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Running"))
    })
    .await;
    let _ = Api::<DevServerFlavor>::all(client)
        .delete(&flavor, &DeleteParams::default())
        .await;
}

async fn rv<K>(api: &Api<K>, name: &str) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get(name).await.unwrap().resource_version().unwrap()
}

#[tokio::test]
async fn stop_start_drift_repair_steady_state_and_a_home_that_outlives_the_server() {
    let (ns, suffix) = setup("ds-life").await;
    let client = ns.client();
    let flavor = format!("cpu-{suffix}");
    apply(&client, &cpu_flavor(&flavor, false), "default").await;
    apply(
        &client,
        &devserver(
            "life",
            &format!("  flavor: {flavor}\n  persistentHomeSize: 1Gi\n"),
        ),
        &ns.name,
    )
    .await;
    wait_phase(&client, &ns.name, "life", DevServerPhase::Running).await;

    let servers: Api<DevServer> = ns.api();
    let stss: Api<StatefulSet> = ns.api();
    let services: Api<Service> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let cms: Api<ConfigMap> = ns.api();
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    let host_key = secrets.get("life-host-keys").await.unwrap().data;

    // Steady state: nothing the operator manages is written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: BTreeMap<&str, String> = BTreeMap::from([
        ("devserver", rv(&servers, "life").await),
        ("statefulset", rv(&stss, "life").await),
        ("service", rv(&services, "life-ssh").await),
        ("secret", rv(&secrets, "life-host-keys").await),
        ("configmap", rv(&cms, "life-ssh-config").await),
        ("pvc", rv(&pvcs, "life-home").await),
    ]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: BTreeMap<&str, String> = BTreeMap::from([
        ("devserver", rv(&servers, "life").await),
        ("statefulset", rv(&stss, "life").await),
        ("service", rv(&services, "life-ssh").await),
        ("secret", rv(&secrets, "life-host-keys").await),
        ("configmap", rv(&cms, "life-ssh-config").await),
        ("pvc", rv(&pvcs, "life-home").await),
    ]);
    assert_eq!(before, after, "writes in steady state");

    // Drift: a deleted Service comes back.
    let old_uid = services.get("life-ssh").await.unwrap().uid();
    services
        .delete("life-ssh", &DeleteParams::default())
        .await
        .unwrap();
    envtest::eventually("Service recreated", TIMEOUT, || async {
        let s = services.get_opt("life-ssh").await.ok()??;
        (s.uid() != old_uid).then_some(())
    })
    .await;

    // Drift: an edited child is put back (here: someone adds a key).
    let keys = cms.get("life-ssh-config").await.unwrap().data.unwrap()["authorized_keys"].clone();
    cms.patch(
        "life-ssh-config",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"data": {"authorized_keys": "ssh-ed25519 AAAA intruder\n"}}),
        ),
    )
    .await
    .unwrap();
    envtest::eventually("ConfigMap restored", TIMEOUT, || async {
        let data = cms.get("life-ssh-config").await.ok()?.data?;
        (data["authorized_keys"] == keys).then_some(())
    })
    .await;

    // Stop: scaled to zero, nothing deleted.
    let set_running = |running: bool| {
        let servers = servers.clone();
        async move {
            servers
                .patch(
                    "life",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"spec": {"running": running}})),
                )
                .await
                .unwrap();
        }
    };
    set_running(false).await;
    let stopped = wait_phase(&client, &ns.name, "life", DevServerPhase::Stopped).await;
    assert_eq!(
        stopped.status.unwrap().stop_reason.as_deref(),
        Some("Requested")
    );
    assert_eq!(
        stss.get("life").await.unwrap().spec.unwrap().replicas,
        Some(0)
    );
    let pods: Api<Pod> = ns.api();
    assert!(pods.get_opt("life-0").await.unwrap().is_none());
    pvcs.get("life-home").await.unwrap();
    services.get("life-ssh").await.unwrap();

    // Start again: the same home and host key.
    set_running(true).await;
    let running = wait_phase(&client, &ns.name, "life", DevServerPhase::Running).await;
    assert_eq!(running.status.unwrap().stop_reason, None);
    assert_eq!(secrets.get("life-host-keys").await.unwrap().data, host_key);
    let pod = pods.get("life-0").await.unwrap();
    let home = pod
        .spec
        .unwrap()
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "home")
        .unwrap();
    assert_eq!(
        home.persistent_volume_claim.unwrap().claim_name,
        "life-home"
    );

    // Deleting the server keeps its home (the default policy).
    let home_uid = pvcs.get("life-home").await.unwrap().uid();
    servers
        .delete("life", &DeleteParams::foreground())
        .await
        .unwrap();
    envtest::eventually("DevServer and StatefulSet gone", TIMEOUT, || async {
        let ds = servers.get_opt("life").await.ok()?;
        let sts = stss.get_opt("life").await.ok()?;
        (ds.is_none() && sts.is_none()).then_some(())
    })
    .await;
    let pvc = pvcs.get("life-home").await.unwrap();
    assert_eq!(pvc.uid(), home_uid);
    assert!(pvc.metadata.deletion_timestamp.is_none());
    let _ = Api::<DevServerFlavor>::all(client)
        .delete(&flavor, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn time_to_live_expiry_stops_the_server_at_its_deadline() {
    let (ns, suffix) = setup("ds-ttl").await;
    let client = ns.client();
    let flavor = format!("cpu-{suffix}");
    apply(&client, &cpu_flavor(&flavor, false), "default").await;
    apply(
        &client,
        &devserver(
            "ttl",
            &format!("  flavor: {flavor}\n  lifecycle:\n    timeToLive: 10s\n"),
        ),
        &ns.name,
    )
    .await;
    let servers: Api<DevServer> = ns.api();
    let ds = envtest::eventually("expiresAt", TIMEOUT, || async {
        let ds = servers.get("ttl").await.ok()?;
        ds.status.as_ref()?.expires_at.as_ref()?;
        Some(ds)
    })
    .await;
    let created = ds.metadata.creation_timestamp.clone().unwrap().0;
    let expires = ds.status.unwrap().expires_at.unwrap().0;
    assert_eq!(expires, created + jiff_secs(10));

    let expired = wait_phase(&client, &ns.name, "ttl", DevServerPhase::Expired).await;
    let now = k8s_openapi::jiff::Timestamp::now();
    assert!(now >= expires, "expired early: {now} < {expires}");
    assert!(
        now <= expires + jiff_secs(20),
        "expired late: {now} vs {expires}"
    );
    assert_eq!(
        expired.status.unwrap().stop_reason.as_deref(),
        Some("Expired")
    );
    let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns.name)
        .get("ttl")
        .await
        .unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(0));
    let events: Api<Event> = ns.api();
    let list = events.list(&ListParams::default()).await.unwrap().items;
    for reason in ["ExpiringSoon", "Expired"] {
        let e = list
            .iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} event"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
    }
    let _ = Api::<DevServerFlavor>::all(client)
        .delete(&flavor, &DeleteParams::default())
        .await;
}

fn jiff_secs(s: i64) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_secs(s)
}

#[tokio::test]
async fn the_default_flavor_is_used_and_two_defaults_are_reported() {
    let (ns, suffix) = setup("ds-default").await;
    let client = ns.client();
    let first = format!("default-a-{suffix}");
    let second = format!("default-b-{suffix}");
    apply(&client, &cpu_flavor(&first, true), "default").await;
    apply(&client, &devserver("plain", ""), &ns.name).await;
    let ds = wait_phase(&client, &ns.name, "plain", DevServerPhase::Running).await;
    assert_eq!(ds.status.unwrap().flavor.as_deref(), Some(first.as_str()));

    apply(&client, &cpu_flavor(&second, true), "default").await;
    let servers: Api<DevServer> = ns.api();
    let cond = envtest::eventually("conflict reported", TIMEOUT, || async {
        let s = servers.get("plain").await.ok()?.status?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == FLAVOR_RESOLVED && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason, "MultipleDefaultFlavors");
    assert!(
        cond.message.contains(&first) && cond.message.contains(&second),
        "{}",
        cond.message
    );
    let events: Api<Event> = ns.api();
    let event = envtest::eventually("conflict event", TIMEOUT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("MultipleDefaultFlavors"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));

    // Both flavors say so too.
    let flavors: Api<DevServerFlavor> = Api::all(client.clone());
    let conflict = |name: String| {
        let flavors = flavors.clone();
        async move {
            let s = flavors.get(&name).await.ok()?.status?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == DEFAULT_CONFLICT)
                .map(|c| c.status)
        }
    };
    for name in [&first, &second] {
        envtest::eventually(&format!("{name} reports the conflict"), TIMEOUT, || {
            let c = conflict(name.clone());
            async move { (c.await? == "True").then_some(()) }
        })
        .await;
    }

    flavors
        .delete(&second, &DeleteParams::default())
        .await
        .unwrap();
    envtest::eventually("the remaining default is alone again", TIMEOUT, || {
        let c = conflict(first.clone());
        async move { (c.await? == "False").then_some(()) }
    })
    .await;
    envtest::eventually("conflict resolved", TIMEOUT, || async {
        let s = servers.get("plain").await.ok()?.status?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == FLAVOR_RESOLVED && c.status == "True")
    })
    .await;
    let _ = flavors.delete(&first, &DeleteParams::default()).await;
}

#[tokio::test]
async fn a_server_waits_for_its_flavor_and_follows_its_edits() {
    let (ns, suffix) = setup("ds-late").await;
    let client = ns.client();
    let flavor = format!("late-{suffix}");
    apply(
        &client,
        &devserver("late", &format!("  flavor: {flavor}\n")),
        &ns.name,
    )
    .await;
    let servers: Api<DevServer> = ns.api();
    let cond = envtest::eventually("waiting for the flavor", TIMEOUT, || async {
        let s = servers.get("late").await.ok()?.status?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == FLAVOR_RESOLVED)
    })
    .await;
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "FlavorNotFound")
    );
    let ds = servers.get("late").await.unwrap();
    assert_eq!(phase(&ds), Some(DevServerPhase::Pending));

    // The flavor appears: the server starts.
    apply(&client, &cpu_flavor(&flavor, false), "default").await;
    wait_phase(&client, &ns.name, "late", DevServerPhase::Running).await;

    // A flavor edit reaches the server's pods.
    let flavors: Api<DevServerFlavor> = Api::all(client.clone());
    flavors
        .patch(
            &flavor,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"resources": {"requests": {"cpu": "300m"}}}}),
            ),
        )
        .await
        .unwrap();
    let stss: Api<StatefulSet> = ns.api();
    envtest::eventually("StatefulSet follows the flavor", TIMEOUT, || async {
        let sts = stss.get("late").await.ok()?;
        let c = &sts.spec?.template.spec?.containers[0];
        let cpu = c
            .resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("cpu")?
            .0
            .clone();
        (cpu == "300m").then_some(())
    })
    .await;
    // The pod is replaced; the server is Running again on the new pod (and
    // never claimed Running while the old one went away).
    let ds = wait_phase(&client, &ns.name, "late", DevServerPhase::Running).await;
    let pod = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .get("late-0")
        .await
        .unwrap();
    let requests = pod.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(requests["cpu"].0, "300m", "status {:#?}", ds.status);
    let _ = flavors.delete(&flavor, &DeleteParams::default()).await;
}

/// The document's distributed example, verbatim: with `gpu-large` (8 GPUs)
/// no node fits, so it stays Starting and says why; on a one-GPU flavor both
/// ranks run, each with its rank, the world size and rank 0's address.
#[tokio::test]
async fn the_distributed_example_reports_unschedulable_then_runs_two_ranks() {
    let (ns, suffix) = setup("ds-ddp").await;
    let client = ns.client();
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/devserver-operator/samples");
    let read = |f: &str| std::fs::read_to_string(samples.join(f)).unwrap();
    apply(&client, &read("flavor-gpu-large.yaml"), "default").await;
    apply(&client, &read("devserver-distributed.yaml"), &ns.name).await;
    let servers: Api<DevServer> = ns.api();
    let status = envtest::eventually("unschedulable reported", TIMEOUT, || async {
        let s = servers.get("ddp-dev").await.ok()?.status?;
        (s.phase == Some(DevServerPhase::Starting)
            && s.message.as_deref()?.contains("not scheduled"))
        .then_some(s)
    })
    .await;
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("nvidia.com/gpu"),
        "{:?}",
        status.message
    );

    // The flavor itself says that no node fits it.
    let flavors: Api<DevServerFlavor> = Api::all(client.clone());
    envtest::eventually("gpu-large not schedulable", TIMEOUT, || async {
        let s = flavors.get("gpu-large").await.ok()?.status?;
        (s.schedulable == Some(Schedulable::No)).then_some(())
    })
    .await;

    let flavor = format!("gpu-one-{suffix}");
    apply(&client, &gpu_flavor(&flavor), "default").await;
    servers
        .patch(
            "ddp-dev",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"flavor": flavor}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = ns.api();
    envtest::eventually(
        "both ranks Ready and the server Running",
        TIMEOUT,
        || async {
            let ds = servers.get("ddp-dev").await.ok()?;
            let ready = pods
                .list(&ListParams::default().labels("app.kubernetes.io/instance=ddp-dev"))
                .await
                .ok()?
                .items
                .iter()
                .filter(|p| pod_ready(p))
                .count();
            (phase(&ds) == Some(DevServerPhase::Running) && ready == 2).then_some(())
        },
    )
    .await;
    let pod = pods.get("ddp-dev-1").await.unwrap();
    let env: BTreeMap<String, String> = pod.spec.clone().unwrap().containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| {
            let v = e
                .value
                .unwrap_or_else(|| e.value_from.unwrap().field_ref.unwrap().field_path);
            (e.name, v)
        })
        .collect();
    assert_eq!(env["WORLD_SIZE"], "2");
    assert_eq!(
        env["RANK"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert_eq!(pod.labels()["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(
        env["MASTER_ADDR"],
        format!("ddp-dev-0.ddp-dev-headless.{}.svc", ns.name)
    );
    assert_eq!(env["NCCL_DEBUG"], "INFO");
    Api::<Service>::namespaced(client.clone(), &ns.name)
        .get("ddp-dev-headless")
        .await
        .unwrap();
    let _ = flavors.delete(&flavor, &DeleteParams::default()).await;
    let _ = flavors.delete("gpu-large", &DeleteParams::default()).await;
}

#[tokio::test]
async fn a_home_is_deleted_with_its_server_only_when_asked() {
    let (ns, suffix) = setup("ds-home").await;
    let client = ns.client();
    let flavor = format!("home-{suffix}");
    apply(&client, &cpu_flavor(&flavor, false), "default").await;
    apply(
        &client,
        &devserver(
            "scratch",
            &format!(
                "  flavor: {flavor}\n  persistentHomeSize: 1Gi\n  homeDeletionPolicy: Delete\n"
            ),
        ),
        &ns.name,
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = ns.api();
    envtest::eventually("home claim", TIMEOUT, || async {
        pvcs.get_opt("scratch-home").await.ok()?
    })
    .await;
    let servers: Api<DevServer> = ns.api();
    servers
        .delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    envtest::eventually("home deleted with the server", TIMEOUT, || async {
        let pvc = pvcs.get_opt("scratch-home").await.ok()?;
        pvc.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    let _ = Api::<DevServerFlavor>::all(client)
        .delete(&flavor, &DeleteParams::default())
        .await;
}

/// Switching modes changes a field the API server does not let change on a
/// StatefulSet (`serviceName`): the operator replaces it.
#[tokio::test]
async fn switching_to_distributed_mode_replaces_the_stateful_set() {
    let (ns, suffix) = setup("ds-mode").await;
    let client = ns.client();
    let flavor = format!("mode-{suffix}");
    apply(&client, &cpu_flavor(&flavor, false), "default").await;
    apply(
        &client,
        &devserver("grow", &format!("  flavor: {flavor}\n")),
        &ns.name,
    )
    .await;
    wait_phase(&client, &ns.name, "grow", DevServerPhase::Running).await;
    let servers: Api<DevServer> = ns.api();
    servers
        .patch(
            "grow",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"mode": "distributed", "distributed": {"worldSize": 2}}
            })),
        )
        .await
        .unwrap();
    let stss: Api<StatefulSet> = ns.api();
    envtest::eventually("two ranks Running", TIMEOUT, || async {
        let ds = servers.get("grow").await.ok()?;
        let sts = stss.get_opt("grow").await.ok()??;
        let spec = sts.spec?;
        (phase(&ds) == Some(DevServerPhase::Running)
            && ds.status?.observed_generation == ds.metadata.generation
            && spec.replicas == Some(2)
            && spec.service_name.as_deref() == Some("grow-headless")
            && sts.status?.ready_replicas == Some(2))
        .then_some(())
    })
    .await;
    let _ = Api::<DevServerFlavor>::all(client)
        .delete(&flavor, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn a_flavor_only_a_karpenter_node_pool_can_host_is_autoscaled() {
    let (ns, suffix) = setup("ds-karpenter").await;
    let client = ns.client();
    let flavor = format!("burst-{suffix}");
    let pool_label = format!("pool-{suffix}");
    apply(
        &client,
        &format!(
            "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: {flavor}\nspec:\n  nodeSelector:\n    example.com/pool: {pool_label}\n"
        ),
        "default",
    )
    .await;
    let flavors: Api<DevServerFlavor> = Api::all(client.clone());
    let schedulable = |want: Schedulable| {
        let flavors = flavors.clone();
        let flavor = flavor.clone();
        async move {
            envtest::eventually(&format!("schedulable {want}"), TIMEOUT, || async {
                let s = flavors.get(&flavor).await.ok()?.status?.schedulable?;
                (s == want).then_some(())
            })
            .await
        }
    };
    schedulable(Schedulable::No).await;
    let pool = format!(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: {pool_label}\nspec:\n  template:\n    metadata:\n      labels:\n        example.com/pool: {pool_label}\n    spec:\n      requirements:\n      - {{key: kubernetes.io/arch, operator: In, values: [amd64]}}\n"
    );
    apply(&client, &pool, "default").await;
    schedulable(Schedulable::Autoscaled).await;
    let pools: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &devserver_operator::controllers::node_pool_resource(),
    );
    pools
        .delete(&pool_label, &DeleteParams::default())
        .await
        .unwrap();
    schedulable(Schedulable::No).await;
    let _ = flavors.delete(&flavor, &DeleteParams::default()).await;
}
