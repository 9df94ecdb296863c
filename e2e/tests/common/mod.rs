//! Shared by the install tests (kustomize, Helm) and the availability test:
//! the operators' install facts, kubectl of the local control plane, running
//! an operator binary as a process with a ServiceAccount's token, and
//! waiting for its objects to be accepted.
#![allow(dead_code)] // each test binary uses a part

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

/// One operator's install.
pub struct Case {
    /// Crate, binary and `deploy/` directory name.
    pub op: &'static str,
    pub namespace: &'static str,
    pub deployment: &'static str,
    pub service_account: &'static str,
    /// Files under `deploy/<op>/samples/`, applied in this order into a test
    /// namespace. Every custom object in them must end with `Accepted=True`.
    pub samples: &'static [&'static str],
    /// Whether the operator creates pods itself (NovaCron's launcher pods);
    /// the others only create workloads that own pods.
    pub creates_pods: bool,
}

pub const WORKSHOP: Case = Case {
    op: "workshop-operator",
    namespace: "orchestra-system",
    deployment: "orchestra-operator",
    service_account: "orchestra-operator",
    samples: &["workshop-example.yaml"],
    creates_pods: false,
};

pub const DEVSERVER: Case = Case {
    op: "devserver-operator",
    namespace: "devserver-system",
    deployment: "devserver-operator",
    service_account: "devserver-operator",
    samples: &[
        "flavor-cpu-small.yaml",
        "flavor-gpu-small.yaml",
        "devserveruser.yaml",
        "devserver-volumes.yaml",
    ],
    creates_pods: false,
};

pub const JVS: Case = Case {
    op: "jvs-operator",
    namespace: "jvs-system",
    deployment: "jvs-operator-controller-manager",
    service_account: "jvs-operator-controller-manager",
    samples: &[
        "jvs.io_v1alpha1_workspace.yaml",
        "jvs.io_v1alpha1_snapshot.yaml",
    ],
    creates_pods: false,
};

pub const NOVACRON: Case = Case {
    op: "novacron-operator",
    namespace: "novacron-system",
    deployment: "novacron-controller-manager",
    service_account: "novacron-controller-manager",
    samples: &["my-vm.yaml"],
    creates_pods: true,
};

/// After an install (kustomize or Helm) of `case` in the cluster: its CRDs
/// become Established and its Deployment's pod is admitted; then the operator
/// binary runs with a token of the ServiceAccount the install created (and
/// nothing else), with leader election on, reconciles the samples applied
/// into `ns` until each is Accepted, and is never refused by RBAC.
pub async fn prove_install(case: &Case, ns: &envtest::TestNamespace, crd_names: &[String]) {
    let client = ns.client();
    let admin = envtest::shared().kubeconfig().to_path_buf();
    let dir = workspace().join("deploy").join(case.op);
    envtest::manifest::wait_crds_established(&client, crd_names, Duration::from_secs(60))
        .await
        .unwrap();
    wait_for_operator_pod(&client, case).await;

    // Prove the RBAC: run the operator as its ServiceAccount.
    let sa_kubeconfig = service_account_kubeconfig(&client, &admin, case).await;
    check_can_i(case, sa_kubeconfig.path(), &ns.name);
    let mut operator = RunningOperator::start(case, sa_kubeconfig.path());

    let mut objects = Vec::new();
    for sample in case.samples {
        let path = dir.join("samples").join(sample);
        let yaml = std::fs::read_to_string(&path).unwrap();
        for mut obj in envtest::manifest::parse_documents(&yaml).unwrap() {
            // Into the test namespace (cluster-scoped objects ignore it).
            obj.metadata.namespace = None;
            let applied = envtest::manifest::apply_object(&client, obj, &ns.name, "e2e")
                .await
                .unwrap_or_else(|e| panic!("sample {}: {e:#}", path.display()));
            objects.push(applied);
        }
    }
    let groups: BTreeSet<String> = crd_names
        .iter()
        .filter_map(|n| n.split_once('.').map(|(_, g)| g.to_string()))
        .collect();
    objects.retain(|o| {
        let api_version = o
            .types
            .as_ref()
            .map(|t| t.api_version.as_str())
            .unwrap_or("");
        groups.contains(api_version.split('/').next().unwrap_or(""))
    });
    assert!(
        !objects.is_empty(),
        "{}: no custom objects in the samples",
        case.op
    );

    for obj in &objects {
        wait_accepted(&client, &mut operator, obj).await;
    }
    // Leader election went through the Role in the operator's namespace.
    let leases: Api<Lease> = Api::namespaced(client.clone(), case.namespace);
    let lease = leases
        .get(&format!("{}-leader", case.op))
        .await
        .unwrap_or_else(|e| panic!("{}: no lease: {e}\n{}", case.op, operator.log()));
    assert!(
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| h.starts_with("e2e-")),
        "{}: the lease has no holder",
        case.op
    );
    // Every controller's watches are running by now; give stragglers (a
    // second reconcile, an event) a moment before the last look at the log.
    tokio::time::sleep(Duration::from_secs(3)).await;
    operator.check();
    operator.stop();
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is inside the workspace")
        .to_path_buf()
}

/// The kubectl of the local control plane (with built-in kustomize).
pub fn kubectl_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new(workspace().join("hack/control-plane.sh"))
            .arg("--print")
            .output()
            .expect("running hack/control-plane.sh --print");
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("kubectl");
        assert!(
            bin.is_file(),
            "{} is missing: build the control plane with hack/control-plane.sh",
            bin.display()
        );
        bin
    })
}

/// Runs kubectl against the cluster of `kubeconfig`; panics on failure.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn parse_yaml(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the kustomization has no {kind} {name}"))
}

pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The Deployment's pod is created: the `restricted` Pod Security Standard
/// the namespace enforces admits it. (KWOK's fake nodes run nothing, so the
/// in-cluster copy does not compete with the one this test runs.)
pub async fn wait_for_operator_pod(client: &Client, case: &Case) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), case.namespace);
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/name={}", case.op));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pods.list(&lp).await.unwrap().items.is_empty() {
        if tokio::time::Instant::now() > deadline {
            let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), case.namespace);
            let conditions: Vec<_> = rs
                .list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .flat_map(|r| r.status.and_then(|s| s.conditions).unwrap_or_default())
                .map(|c| format!("{}: {}", c.type_, c.message.unwrap_or_default()))
                .collect();
            panic!(
                "{}: the Deployment created no pod within 60s; ReplicaSet conditions: {conditions:?}",
                case.op
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A kubeconfig for the operator's ServiceAccount: server and CA from the
/// admin kubeconfig, a token from the TokenRequest API.
pub async fn service_account_kubeconfig(
    client: &Client,
    admin: &Path,
    case: &Case,
) -> tempfile::NamedTempFile {
    let kubeconfig = envtest::kubeconfig::service_account_kubeconfig(
        client,
        admin,
        case.namespace,
        case.service_account,
    )
    .await
    .expect("a kubeconfig for the operator's ServiceAccount");
    let file = tempfile::Builder::new()
        .prefix(&format!("{}-kubeconfig-", case.op))
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), kubeconfig).unwrap();
    file
}

/// Spot checks of the ServiceAccount's permissions with `kubectl auth can-i`:
/// events are allowed (most operators only publish them for invalid specs,
/// which the samples are not), and nothing is granted wholesale.
pub fn check_can_i(case: &Case, kubeconfig: &Path, test_ns: &str) {
    let can_i = |args: &[&str]| {
        Command::new(kubectl_path())
            .arg("auth")
            .arg("can-i")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("running kubectl auth can-i")
            .status
            .success()
    };
    for verb in ["create", "patch"] {
        assert!(
            can_i(&[verb, "events.events.k8s.io", "-n", test_ns]),
            "{}: may not {verb} events",
            case.op
        );
    }
    let create_pods = &["create", "pods", "-n", test_ns][..];
    assert_eq!(
        can_i(create_pods),
        case.creates_pods,
        "{}: may create pods: {}",
        case.op,
        !case.creates_pods
    );
    for args in [
        &["*", "*"][..],
        &["delete", "customresourcedefinitions.apiextensions.k8s.io"],
        &["update", "leases.coordination.k8s.io", "-n", "kube-system"],
    ] {
        assert!(
            !can_i(args),
            "{}: may {} (more than it needs)",
            case.op,
            args.join(" ")
        );
    }
}

/// The operator process, killed when dropped (also when the test fails).
pub struct RunningOperator {
    name: &'static str,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl RunningOperator {
    /// Runs `case`'s operator as `e2e-<operator>`.
    pub fn start(case: &Case, kubeconfig: &Path) -> Self {
        Self::start_as(case, kubeconfig, &format!("e2e-{}", case.op), &[])
    }

    /// Runs `case`'s operator with the leader-election identity `identity`
    /// (its POD_NAME) and extra environment.
    pub fn start_as(case: &Case, kubeconfig: &Path, identity: &str, env: &[(&str, &str)]) -> Self {
        let bin = operator_binary(case.op);
        let log = tempfile::Builder::new()
            .prefix(&format!("{}-log-", case.op))
            .tempfile()
            .unwrap();
        let child = Command::new(&bin)
            .args(["run", "--metrics-addr", "127.0.0.1:0"])
            // Only the ServiceAccount's credentials.
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("WATCH_NAMESPACE")
            .env_remove("LEASE_NAME")
            .env_remove("LEASE_NAMESPACE")
            .env_remove("METRICS_ADDR")
            // Leader election through the Role in the operator's namespace.
            .env("LEADER_ELECT", "true")
            .env("POD_NAMESPACE", case.namespace)
            .env("POD_NAME", identity)
            .env("LOG_FORMAT", "text")
            .env("LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Self {
            name: case.op,
            child,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Panics with the log when the operator stopped or was refused anything.
    pub fn check(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log());
        }
        let log = self.log();
        if refused(&log) {
            panic!(
                "{} was refused something its RBAC should allow:\n{log}",
                self.name
            );
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL: no chance to clean up or hand anything back.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Whether `log` shows a request refused by authorization (HTTP 403: RBAC
/// denials and escalation checks). Plain "Forbidden" also appears in 422
/// field errors (an immutable field), which are not about RBAC.
pub fn refused(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("forbidden: user ")
        || log.contains("code: 403")
        || log.contains("with 403")
        || log.contains("reason=\"forbidden\"")
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `obj` has the condition `Accepted=True`, failing early (with
/// the log) when the operator is refused anything or stops.
pub async fn wait_accepted(client: &Client, operator: &mut RunningOperator, obj: &DynamicObject) {
    let types = obj.types.clone().unwrap();
    let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    let api: Api<DynamicObject> = match caps.scope {
        kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), &obj.namespace().unwrap(), &resource)
        }
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let what = format!("{} {}", gvk.kind, obj.name_any());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        operator.check();
        let current = api.get(&obj.name_any()).await.unwrap();
        let accepted = current.data["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Accepted" && c["status"] == "True")
            });
        if accepted {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{}: {what} not Accepted within 90s; status: {}\noperator log:\n{}",
                operator.name,
                current.data["status"],
                operator.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn list_names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect()
}

/// The operator's binary, built on first use. Each operator is built on its
/// own, so a crate that does not compile fails only its own test.
pub fn operator_binary(op: &'static str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<&'static str, Result<PathBuf, String>>> =
        Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    built
        .entry(op)
        .or_insert_with(|| build_operator(op))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `cargo build -p <op>` into the target directory this test runs from (a
/// no-op when it is up to date); returns the binary.
pub fn build_operator(op: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary path {}", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("unexpected test binary path {}", exe.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--bins",
            "--profile",
            profile,
            "-p",
            op,
            "--target-dir",
        ])
        .arg(target_dir)
        .output()
        .map_err(|e| format!("running cargo build -p {op}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p {op} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = profile_dir.join(op);
    if !bin.is_file() {
        return Err(format!("{} missing after cargo build", bin.display()));
    }
    Ok(bin)
}
