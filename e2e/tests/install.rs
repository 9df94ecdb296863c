//! `kubectl apply -k deploy/<operator>` installs exactly one operator, and the
//! RBAC it ships is all that operator needs.
//!
//! For each operator the test renders the kustomization and checks what it
//! holds (namespace, CRDs, ServiceAccount, RBAC, a restricted Deployment, the
//! metrics Service, no samples; the image is overridable), server-side applies
//! it with kubectl to the local cluster and checks every object exists (the
//! Deployment's pod too: the namespace enforces the `restricted` Pod Security
//! Standard). Then it proves the RBAC: it runs the operator binary with a
//! token of the ServiceAccount the manifests created (and nothing else), with
//! leader election on in the operator's namespace, applies samples into a test
//! namespace and waits until the operator accepted them and created their
//! children. A request refused with 403 Forbidden in the operator's log fails
//! the test with the log.
//!
//! The operator binaries: `CARGO_BIN_EXE_<name>` exists only for a package's
//! own binaries, and a build script cannot run cargo on the same target
//! directory (it would wait forever for the lock the outer build holds). So
//! each test runs `cargo build -p <operator>` once, into the target directory
//! it runs from (a no-op when it is up to date, and never a stale binary), and
//! starts the binary from there.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

#[tokio::test]
async fn workshop_operator_installs_and_runs_with_its_own_rbac() {
    let ns = install_and_run(&WORKSHOP).await;
    // The sessions of the sample's one participant.
    let deployments: Api<Deployment> = Api::namespaced(ns.client(), &ns.name);
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(ns.client(), &ns.name);
    assert!(!list_names(&deployments).await.is_empty());
    assert!(!list_names(&services).await.is_empty());
}

#[tokio::test]
async fn devserver_operator_installs_and_runs_with_its_own_rbac() {
    let ns = install_and_run(&DEVSERVER).await;
    // The server's StatefulSet, and the user's namespace with its bindings
    // (one to a ClusterRole the operator may only `bind`).
    let sts: Api<StatefulSet> = Api::namespaced(ns.client(), &ns.name);
    assert!(!list_names(&sts).await.is_empty());
    let bindings: Api<RoleBinding> = Api::namespaced(ns.client(), "dev-alice");
    let refs: Vec<String> = bindings
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rb| format!("{}/{}", rb.role_ref.kind, rb.role_ref.name))
        .collect();
    assert!(
        refs.iter().any(|r| r == "ClusterRole/view"),
        "the user's namespace has no binding to ClusterRole view: {refs:?}"
    );
}

#[tokio::test]
async fn jvs_operator_installs_and_runs_with_its_own_rbac() {
    install_and_run(&JVS).await;
}

#[tokio::test]
async fn novacron_operator_installs_and_runs_with_its_own_rbac() {
    install_and_run(&NOVACRON).await;
}

/// The whole check for one operator; returns the test namespace holding the
/// applied samples.
async fn install_and_run(case: &Case) -> envtest::TestNamespace {
    let ns = envtest::test_namespace(&format!("install-{}", case.op))
        .await
        .unwrap();
    let admin = envtest::shared().kubeconfig().to_path_buf();
    let dir = workspace().join("deploy").join(case.op);

    // Render and check the contents.
    let docs = render(&dir);
    let crd_names = check_rendered(case, &docs);
    check_image_override(case);

    // Install, the way a user does.
    let applied = kubectl(
        &admin,
        &["apply", "--server-side", "-k", dir.to_str().unwrap()],
    );
    let lines: Vec<&str> = applied.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        docs.len(),
        "kubectl apply reported {} objects, the kustomization has {}:\n{applied}",
        lines.len(),
        docs.len()
    );
    assert!(
        lines.iter().all(|l| l.ends_with("serverside-applied")),
        "{applied}"
    );
    // Every rendered object exists on the server.
    let got = kubectl(&admin, &["get", "-k", dir.to_str().unwrap(), "-o", "name"]);
    let got: BTreeSet<String> = got.lines().map(|l| l.trim().to_string()).collect();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap().to_ascii_lowercase();
        let name = d["metadata"]["name"].as_str().unwrap();
        assert!(
            got.iter()
                .any(|g| g.ends_with(&format!("/{name}"))
                    && g.split(['.', '/']).next() == Some(&kind)),
            "{kind} {name} is not on the server after the install; kubectl get -k shows {got:?}"
        );
    }
    prove_install(case, &ns, &crd_names).await;
    ns
}

/// `kubectl kustomize <dir>` as JSON values, one per document.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl_path())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_yaml(&String::from_utf8(out.stdout).unwrap())
}

/// Checks what the kustomization holds; returns the CRDs' names.
fn check_rendered(case: &Case, docs: &[Value]) -> Vec<String> {
    let dir = workspace().join("deploy").join(case.op);
    let ctx = case.op;

    // The CRDs, all of them, and no samples.
    let crd_files = std::fs::read_dir(dir.join("crds"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    let crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), crd_files, "{ctx}: not every CRD is installed");
    let groups: BTreeSet<&str> = crds
        .iter()
        .filter_map(|c| c["spec"]["group"].as_str())
        .collect();
    for d in docs {
        let group = d["apiVersion"].as_str().unwrap().split('/').next().unwrap();
        assert!(
            !groups.contains(group),
            "{ctx}: the install contains a {} (samples must stay out)",
            d["kind"]
        );
    }

    // Only this operator's namespace.
    find(docs, "Namespace", case.namespace);
    assert_eq!(
        docs.iter().filter(|d| d["kind"] == "Namespace").count(),
        1,
        "{ctx}: more than one namespace"
    );
    for d in docs {
        if let Some(ns) = d["metadata"]["namespace"].as_str() {
            assert_eq!(
                ns, case.namespace,
                "{ctx}: {} in another namespace",
                d["kind"]
            );
        }
    }

    // Identity and RBAC: a ClusterRole bound cluster-wide, a Role for the
    // Lease in the operator's namespace, both to its ServiceAccount.
    find(docs, "ServiceAccount", case.service_account);
    let subject = json!([{
        "kind": "ServiceAccount",
        "name": case.service_account,
        "namespace": case.namespace,
    }]);
    let bindings: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .collect();
    assert!(
        bindings.iter().any(|b| b["kind"] == "ClusterRoleBinding"),
        "{ctx}: no ClusterRoleBinding"
    );
    for b in &bindings {
        assert_eq!(b["subjects"], subject, "{ctx}: {}", b["metadata"]["name"]);
        let role_kind = b["roleRef"]["kind"].as_str().unwrap();
        find(docs, role_kind, b["roleRef"]["name"].as_str().unwrap());
    }
    let leader_role = docs
        .iter()
        .find(|d| {
            d["kind"] == "Role"
                && d["rules"].as_array().is_some_and(|rules| {
                    rules
                        .iter()
                        .any(|r| strings(&r["resources"]).contains(&"leases"))
                })
        })
        .unwrap_or_else(|| panic!("{ctx}: no Role for the leader-election Lease"));
    assert!(
        bindings.iter().any(|b| b["kind"] == "RoleBinding"
            && b["roleRef"]["name"] == leader_role["metadata"]["name"])
    );
    // Least privilege: no wildcards anywhere.
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !strings(&rule[field]).contains(&"*"),
                    "{ctx}: wildcard {field} in {}",
                    role["metadata"]["name"]
                );
            }
        }
    }

    // The Deployment.
    let deployment = find(docs, "Deployment", case.deployment);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "{ctx}");
    assert_eq!(spec["strategy"]["type"], "Recreate", "{ctx}");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], case.service_account, "{ctx}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{ctx}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{ctx}"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{ctx}");
    let c = &containers[0];
    assert_eq!(
        c["image"],
        format!("ghcr.io/orchestra-operators/{}:0.1.0", case.op),
        "{ctx}"
    );
    assert_eq!(c["args"], json!(["run"]), "{ctx}");
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{ctx}: no env {name}"))
            .clone()
    };
    assert_eq!(
        env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(env("LEADER_ELECT")["value"], "false");
    assert_eq!(c["ports"][0]["containerPort"], 8080, "{ctx}");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{ctx}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{ctx}");
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].is_string(),
                "{ctx}: no {kind}.{resource}"
            );
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{ctx}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{ctx}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{ctx}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{ctx}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{ctx}");

    // The metrics Service selects the operator's pod on 8080.
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .unwrap_or_else(|| panic!("{ctx}: no metrics Service"));
    assert_eq!(service["spec"]["ports"][0]["port"], 8080, "{ctx}");
    let selector = service["spec"]["selector"].as_object().unwrap();
    let labels = &spec["template"]["metadata"]["labels"];
    assert!(
        selector.iter().all(|(k, v)| &labels[k] == v),
        "{ctx}: the metrics Service does not select the operator's pod"
    );

    crds.iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// An overlay's `images:` entry replaces the default image.
fn check_image_override(case: &Case) {
    let overlay = tempfile::tempdir().unwrap();
    // kustomize accepts only relative paths to a base: go up to `/` and back.
    let overlay_path = overlay.path().canonicalize().unwrap();
    let base = workspace()
        .join("deploy")
        .join(case.op)
        .canonicalize()
        .unwrap();
    let up = "../".repeat(overlay_path.components().count() - 1);
    let base = format!("{up}{}", base.strip_prefix("/").unwrap().display());
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\nimages:\n  - name: ghcr.io/orchestra-operators/{}\n    newName: registry.example.com/mirror/{}\n    newTag: dev\n",
            base, case.op, case.op
        ),
    )
    .unwrap();
    let docs = render(overlay.path());
    let deployment = find(&docs, "Deployment", case.deployment);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("registry.example.com/mirror/{}:dev", case.op)
    );
}
