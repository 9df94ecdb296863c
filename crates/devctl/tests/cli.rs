//! The built `devctl` binary against a real API server (envtest).

use std::process::{Command, Output};
use std::time::Duration;

use devserver_operator::crd::{DevServer, DevServerFlavor};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const MANAGER: &str = "devctl-tests";

fn devctl(args: &[&str]) -> Output {
    devctl_with(args, envtest::shared().kubeconfig().as_os_str())
}

fn devctl_with(args: &[&str], kubeconfig: &std::ffi::OsStr) -> Output {
    Command::new(env!("CARGO_BIN_EXE_devctl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("running devctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "devctl failed ({}):\n{}{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for crd in devserver_operator::crd::all() {
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        names.push(crd.name_any());
    }
    envtest::manifest::wait_crds_established(client, &names, Duration::from_secs(30))
        .await
        .unwrap();
}

async fn apply<K>(api: &Api<K>, name: &str, obj: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap()
}

#[test]
fn version_needs_no_cluster() {
    let o = devctl_with(
        &["version"],
        std::ffi::OsStr::new("/nonexistent/kubeconfig"),
    );
    assert_ok(&o);
    assert!(
        stdout(&o).starts_with(&format!("devctl {} (revision ", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&o)
    );
}

#[tokio::test]
async fn list_and_flavors_show_what_is_in_the_cluster() {
    let ns = envtest::test_namespace("devctl-list").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;
    let suffix = ns.name.rsplit('-').next().unwrap().to_string();

    let flavors: Api<DevServerFlavor> = Api::all(client.clone());
    let cpu = format!("cpu-small-{suffix}");
    let gpu = format!("gpu-small-{suffix}");
    apply(
        &flavors,
        &cpu,
        json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServerFlavor",
            "metadata": { "name": cpu },
            "spec": {
                "description": "Small CPU",
                "resources": { "requests": { "cpu": "500m", "memory": "1Gi" }, "limits": { "cpu": "2", "memory": "4Gi" } }
            }
        }),
    )
    .await;
    apply(
        &flavors,
        &gpu,
        json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServerFlavor",
            "metadata": { "name": gpu },
            "spec": {
                "description": "One GPU",
                "resources": { "requests": { "cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1" },
                               "limits": { "nvidia.com/gpu": "1" } }
            }
        }),
    )
    .await;

    let servers: Api<DevServer> = ns.api();
    apply(
        &servers,
        "mydev",
        json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServer",
            "metadata": { "name": "mydev" },
            "spec": { "owner": "alice", "flavor": cpu, "lifecycle": { "timeToLive": "8h" } }
        }),
    )
    .await;
    apply(
        &servers,
        "ml-dev",
        json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServer",
            "metadata": { "name": "ml-dev" },
            "spec": { "owner": "bob", "flavor": gpu }
        }),
    )
    .await;
    // What the operator would report for the first one.
    let expires =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(6);
    servers
        .patch_status(
            "mydev",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "devserver.io/v1", "kind": "DevServer",
                "status": { "phase": "Running", "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string() }
            })),
        )
        .await
        .unwrap();

    // The table.
    let o = devctl(&["list", "-n", &ns.name]);
    assert_ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "FLAVOR", "OWNER", "EXPIRES", "AGE"],
        "{out}"
    );
    let ml: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&ml[..5], ["ml-dev", "-", gpu.as_str(), "bob", "-"], "{out}");
    let my: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &my[..4],
        ["mydev", "Running", cpu.as_str(), "alice"],
        "{out}"
    );
    assert!(
        my[4] == "in" && (my[5].starts_with("5h") || my[5].starts_with("6h")),
        "{out}"
    );
    // Columns line up under the header.
    let col = lines[0].find("FLAVOR").unwrap();
    assert_eq!(&lines[2][col..col + cpu.len()], cpu);

    // Every namespace: a NAMESPACE column.
    let o = devctl(&["list", "-A"]);
    assert_ok(&o);
    assert!(stdout(&o).starts_with("NAMESPACE"), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with(&ns.name) && l.contains("mydev")),
        "{}",
        stdout(&o)
    );

    // JSON and YAML: v1 Lists of full objects.
    let o = devctl(&["list", "-n", &ns.name, "-o", "json"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "List");
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ml-dev", "mydev"]);
    assert_eq!(v["items"][1]["kind"], "DevServer");
    assert_eq!(v["items"][1]["spec"]["mode"], "standalone");
    assert_eq!(v["items"][1]["status"]["phase"], "Running");
    let o = devctl(&["list", "-n", &ns.name, "-o", "yaml"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_yaml::from_slice(&o.stdout).unwrap();
    assert_eq!(v["items"][0]["spec"]["owner"], "bob");

    // Flavors.
    let o = devctl(&["flavors"]);
    assert_ok(&o);
    let out = stdout(&o);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DEFAULT",
            "CPU",
            "MEMORY",
            "GPU",
            "SCHEDULABLE",
            "DESCRIPTION"
        ]
    );
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row(&cpu),
        [cpu.as_str(), "500m", "1Gi", "-", "Unknown", "Small", "CPU"]
    );
    assert_eq!(
        row(&gpu),
        [gpu.as_str(), "4", "16Gi", "1", "Unknown", "One", "GPU"]
    );
    let o = devctl(&["flavors", "-o", "json"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["metadata"]["name"] == cpu.as_str())
    );
}

#[tokio::test]
async fn an_empty_namespace_says_so() {
    let ns = envtest::test_namespace("devctl-empty").await.unwrap();
    install_crds(&ns.client()).await;
    let o = devctl(&["list", "-n", &ns.name]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains(&format!("No DevServers in namespace {}", ns.name)),
        "{}",
        stderr(&o)
    );
    // JSON output stays parseable: an empty list.
    let o = devctl(&["list", "-n", &ns.name, "-o", "json"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["items"], json!([]));
}

#[test]
fn errors_exit_non_zero_with_a_clear_message() {
    let o = devctl_with(&["list"], std::ffi::OsStr::new("/nonexistent/kubeconfig"));
    assert!(!o.status.success());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: cannot find a cluster to talk to"),
        "{err}"
    );
    assert!(err.contains("KUBECONFIG"), "{err}");
    assert_eq!(stdout(&o), "");

    let o = devctl(&["list", "-o", "xml"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    assert!(stderr(&o).contains("invalid value 'xml'"), "{}", stderr(&o));
}
