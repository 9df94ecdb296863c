//! The Helm chart of each operator (`charts/<operator>/`) installs the same
//! operator as its kustomization, and the values do what they say.
//!
//! For each operator: `helm lint`; `helm template` with default and with
//! changed values (image, replicas and leader election, watched namespace,
//! log settings, ServiceMonitor) checked object by object; then the rendered
//! chart is server-side applied to the local cluster into a namespace that
//! enforces the `restricted` Pod Security Standard, and the operator binary
//! runs with the token of the ServiceAccount the chart created and
//! reconciles its samples (`common::prove_install`).
//!
//! `helm` is built from its Go module by `hack/helm.sh` (cached; hack/test.sh
//! builds it up front and exports HELM).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::{Value, json};

#[test]
fn charts_are_generated_from_the_install_manifests() {
    let out = Command::new(workspace().join("hack/charts.sh"))
        .arg("--check")
        .output()
        .expect("running hack/charts.sh --check");
    assert!(
        out.status.success(),
        "charts/ is stale (run hack/charts.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn workshop_operator_chart_installs_and_runs_with_its_own_rbac() {
    install_chart(&WORKSHOP).await;
}

#[tokio::test]
async fn devserver_operator_chart_installs_and_runs_with_its_own_rbac() {
    install_chart(&DEVSERVER).await;
}

#[tokio::test]
async fn jvs_operator_chart_installs_and_runs_with_its_own_rbac() {
    install_chart(&JVS).await;
}

#[tokio::test]
async fn novacron_operator_chart_installs_and_runs_with_its_own_rbac() {
    install_chart(&NOVACRON).await;
}

#[test]
fn chart_values_change_what_they_say() {
    for case in [&WORKSHOP, &DEVSERVER, &JVS, &NOVACRON] {
        let defaults = template(case, &[]);
        let manager = container(&defaults, case);
        assert_eq!(
            manager["image"],
            format!("ghcr.io/orchestra-operators/{}:0.1.0", case.op)
        );
        assert_eq!(env(manager, "LEADER_ELECT"), "false", "{}", case.op);
        assert_eq!(env(manager, "LOG_FORMAT"), "json", "{}", case.op);
        assert!(
            manager["env"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["name"] != "WATCH_NAMESPACE"),
            "{}: watches every namespace by default",
            case.op
        );
        let deployment = find(&defaults, "Deployment", case.deployment);
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
        assert!(
            defaults.iter().all(|d| d["kind"] != "ServiceMonitor"),
            "{}: a ServiceMonitor without being asked",
            case.op
        );

        let changed = template(
            case,
            &[
                "image.repository=registry.example.com/mirror/op",
                "image.tag=dev",
                "replicas=2",
                "watchNamespace=team-a",
                "log.format=text",
                "log.level=debug",
                "leaderElection.leaseDuration=20s",
                "metrics.serviceMonitor.enabled=true",
                "resources.limits.memory=512Mi",
            ],
        );
        let manager = container(&changed, case);
        assert_eq!(manager["image"], "registry.example.com/mirror/op:dev");
        assert_eq!(env(manager, "LEADER_ELECT"), "true", "{}", case.op);
        assert_eq!(env(manager, "LEASE_DURATION"), "20s", "{}", case.op);
        assert_eq!(env(manager, "WATCH_NAMESPACE"), "team-a", "{}", case.op);
        assert_eq!(env(manager, "LOG_FORMAT"), "text", "{}", case.op);
        assert_eq!(env(manager, "LOG_LEVEL"), "debug", "{}", case.op);
        assert_eq!(manager["resources"]["limits"]["memory"], "512Mi");
        let deployment = find(&changed, "Deployment", case.deployment);
        assert_eq!(deployment["spec"]["replicas"], 2);
        assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
        let monitor = changed
            .iter()
            .find(|d| d["kind"] == "ServiceMonitor")
            .unwrap_or_else(|| panic!("{}: no ServiceMonitor", case.op));
        let service = changed.iter().find(|d| d["kind"] == "Service").unwrap();
        assert_eq!(
            monitor["spec"]["endpoints"][0]["port"],
            service["spec"]["ports"][0]["name"]
        );
        let selector = monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        assert!(
            selector
                .iter()
                .all(|(k, v)| &service["metadata"]["labels"][k] == v),
            "{}: the ServiceMonitor does not select the metrics Service",
            case.op
        );
    }
}

/// The check for one operator's chart.
async fn install_chart(case: &Case) {
    let chart = workspace().join("charts").join(case.op);
    let lint = helm(&["lint", chart.to_str().unwrap()]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let ns = envtest::test_namespace(&format!("chart-{}", case.op))
        .await
        .unwrap();
    let admin = envtest::shared().kubeconfig().to_path_buf();
    // Helm leaves the namespace to the user (`--create-namespace`); make it
    // as strict as the kustomization's.
    kubectl(&admin, &["create", "namespace", case.namespace]);
    kubectl(
        &admin,
        &[
            "label",
            "namespace",
            case.namespace,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );

    let rendered = helm(&[
        "template",
        case.op,
        chart.to_str().unwrap(),
        "--namespace",
        case.namespace,
        "--include-crds",
    ]);
    let docs = parse_yaml(&rendered);
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), &rendered).unwrap();
    let applied = kubectl(
        &admin,
        &[
            "apply",
            "--server-side",
            "-f",
            file.path().to_str().unwrap(),
        ],
    );
    let lines: Vec<&str> = applied.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), docs.len(), "{applied}");
    assert!(
        lines.iter().all(|l| l.ends_with("serverside-applied")),
        "{applied}"
    );
    let got = kubectl(
        &admin,
        &["get", "-f", file.path().to_str().unwrap(), "-o", "name"],
    );
    assert_eq!(got.lines().count(), docs.len(), "{got}");

    // The same CRDs as deploy/<op>/crds.
    let crd_names: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let committed = std::fs::read_dir(workspace().join("deploy").join(case.op).join("crds"))
        .unwrap()
        .count();
    assert_eq!(crd_names.len(), committed, "{}: not every CRD", case.op);
    for d in &docs {
        if let Some(ns) = d["metadata"]["namespace"].as_str() {
            assert_eq!(ns, case.namespace, "{}: {}", case.op, d["kind"]);
        }
    }
    prove_install(case, &ns, &crd_names).await;
}

fn helm_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(helm) = std::env::var_os("HELM") {
            return PathBuf::from(helm);
        }
        // Builds helm on first use (a few minutes), then prints its path.
        let out = Command::new(workspace().join("hack/helm.sh"))
            .output()
            .expect("running hack/helm.sh");
        assert!(
            out.status.success(),
            "hack/helm.sh could not provide helm:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

fn helm(args: &[&str]) -> String {
    let out = Command::new(helm_path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm_path().display()));
    assert!(
        out.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `helm template` of `case`'s chart with `--set` values.
fn template(case: &Case, values: &[&str]) -> Vec<Value> {
    let chart = workspace().join("charts").join(case.op);
    let mut args = vec![
        "template",
        case.op,
        chart.to_str().unwrap(),
        "--namespace",
        case.namespace,
    ];
    for v in values {
        args.extend(["--set", v]);
    }
    parse_yaml(&helm(&args))
}

fn container<'a>(docs: &'a [Value], case: &Case) -> &'a Value {
    let deployment = find(docs, "Deployment", case.deployment);
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "manager");
    assert_eq!(c["args"][0], json!("run"));
    c
}

fn env<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {name}"))
}
