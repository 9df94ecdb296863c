//! The API against a real API server: the generated CRDs install, the
//! document's manifests apply unchanged (with defaults on read-back), invalid
//! manifests are rejected at admission with clear messages, and the
//! controllers report validation in status and events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use novacron_operator::crd::{
    ACCEPTED, DeviceType, IpMethod, MigrationPhase, NetworkType, PullPolicy, UpdateStrategyType,
    VirtualMachine, VirtualMachineMigration, VmPhase,
};
use serde_json::{Value, json};

const MANAGER: &str = "kubectl";
const WAIT: Duration = Duration::from_secs(30);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/novacron-operator")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Installs the committed CRDs, one file for each CRD of the Rust types.
async fn install_crds(client: &Client) {
    let mut names = envtest::manifest::install_crd_dir(client, &deploy_dir().join("crds"))
        .await
        .unwrap();
    names.sort();
    let mut expected: Vec<String> = novacron_operator::crd::all()
        .iter()
        .map(|crd| crd.name_any())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

/// The sample's single object, moved into the test namespace (the document's
/// manifests name `default`; each test gets its own namespace).
fn sample(rel: &str, ns: &str) -> DynamicObject {
    let mut docs = envtest::manifest::parse_documents(&read(rel)).unwrap();
    assert_eq!(docs.len(), 1, "{rel}");
    let mut obj = docs.remove(0);
    obj.metadata.namespace = Some(ns.to_owned());
    obj
}

async fn apply(
    client: &Client,
    obj: DynamicObject,
    ns: &str,
    manager: &str,
) -> anyhow::Result<DynamicObject> {
    envtest::manifest::apply_object(client, obj, ns, manager).await
}

#[tokio::test]
async fn document_manifests_apply_unchanged_with_defaults() {
    let ns = envtest::test_namespace("nc-samples").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;
    let vms: Api<VirtualMachine> = ns.api();

    // "Create a Virtual Machine".
    apply(
        &client,
        sample("samples/my-vm.yaml", &ns.name),
        &ns.name,
        MANAGER,
    )
    .await
    .unwrap();
    let vm = vms.get("my-vm").await.unwrap();
    assert_eq!(vm.spec.running, Some(true));
    let t = &vm.spec.template.as_ref().unwrap().spec;
    assert_eq!(t.resources.cpu, 2);
    assert_eq!(t.resources.memory.0, "4Gi");
    assert_eq!(t.resources.disk.0, "50Gi");
    assert_eq!(t.image.source, "marketplace://ubuntu-22.04-lts");
    assert_eq!(t.networks[0].type_, NetworkType::Bridge);
    assert_eq!(t.networks[0].ipv4.as_ref().unwrap().method, IpMethod::Dhcp);
    // Defaults written by the API server.
    assert_eq!(t.image.pull_policy, PullPolicy::IfNotPresent);
    assert_eq!(t.termination_grace_period_seconds, 180);
    assert!(vm.spec.migration_policy.encrypted);
    assert!(!vm.spec.migration_policy.allow_live_migration);
    assert_eq!(vm.spec.update_strategy.type_, UpdateStrategyType::Recreate);

    // "Live Migration" and "Snapshots": applied by another manager, they merge
    // into my-vm (server-side apply), as the document intends.
    apply(
        &client,
        sample("samples/live-migration.yaml", &ns.name),
        &ns.name,
        "kubectl-migration",
    )
    .await
    .unwrap();
    apply(
        &client,
        sample("samples/snapshots.yaml", &ns.name),
        &ns.name,
        "kubectl-snapshots",
    )
    .await
    .unwrap();
    let vm = vms.get("my-vm").await.unwrap();
    assert!(vm.spec.template.is_some(), "the template is kept");
    let mp = &vm.spec.migration_policy;
    assert!(mp.allow_live_migration && mp.compression && mp.encrypted);
    assert_eq!(mp.bandwidth.as_deref(), Some("10Gbps"));
    let sp = vm.spec.snapshot_policy.as_ref().unwrap();
    assert_eq!(
        (sp.schedule.as_str(), sp.retention, sp.suspend),
        ("0 2 * * *", 7, false)
    );

    // The "Advanced Features" fragments are `spec:` snippets: merge patches of
    // my-vm (`kubectl patch vm my-vm --type merge --patch-file <fragment>`).
    for fragment in [
        "gpu-support",
        "multiple-network-interfaces",
        "cloud-init",
        "node-affinity",
    ] {
        let patch: Value =
            serde_yaml::from_str(&read(&format!("samples/fragments/{fragment}.yaml"))).unwrap();
        vms.patch("my-vm", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("fragment {fragment}: {e}"));
    }
    let vm = vms.get("my-vm").await.unwrap();
    let t = &vm.spec.template.as_ref().unwrap().spec;
    assert_eq!(t.devices[0].type_, DeviceType::Gpu);
    assert_eq!(
        (
            t.devices[0].vendor.as_deref(),
            t.devices[0].model.as_deref(),
            t.devices[0].count
        ),
        (Some("nvidia"), Some("tesla-t4"), 1)
    );
    assert_eq!(t.networks.len(), 2);
    let mgmt = t.networks[0].ipv4.as_ref().unwrap();
    assert_eq!(
        (
            mgmt.method,
            mgmt.address.as_deref(),
            mgmt.gateway.as_deref()
        ),
        (IpMethod::Static, Some("10.0.1.10/24"), Some("10.0.1.1"))
    );
    assert_eq!(t.networks[1].type_, NetworkType::SrIov);
    assert!(
        t.user_data
            .as_deref()
            .unwrap()
            .starts_with("#cloud-config\n")
    );
    assert_eq!(t.node_selector["node.novacron.io/gpu"], "true");
    // The full affinity survives (the original CRD pruned it).
    let terms = &t
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    let expr = &terms[0].match_expressions.as_ref().unwrap()[0];
    assert_eq!(expr.key, "node.novacron.io/region");
    assert_eq!(expr.values.as_deref().unwrap(), ["us-east-1", "us-west-2"]);

    // Applied on their own, the policy manifests are accepted too (a VM
    // without a template, reported by the controller as not accepted).
    let alone = envtest::test_namespace("nc-alone").await.unwrap();
    for rel in ["samples/live-migration.yaml", "samples/snapshots.yaml"] {
        apply(&client, sample(rel, &alone.name), &alone.name, MANAGER)
            .await
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    let lone: VirtualMachine = alone.api::<VirtualMachine>().get("my-vm").await.unwrap();
    assert!(lone.spec.template.is_none());
    assert_eq!(lone.spec.snapshot_policy.unwrap().schedule, "0 2 * * *");
}

/// The base VM of the rejection table, with `patch` merged into its spec.
fn vm_with(name: &str, patch: Value) -> Value {
    let mut vm = json!({
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "running": true,
            "template": {"spec": {
                "resources": {"cpu": 2, "memory": "4Gi", "disk": "50Gi"},
                "image": {"source": "marketplace://ubuntu-22.04-lts"},
                "networks": [{"name": "default", "type": "bridge", "ipv4": {"method": "dhcp"}}]
            }}
        }
    });
    merge(&mut vm["spec"], &patch);
    vm
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn tspec(v: Value) -> Value {
    json!({"template": {"spec": v}})
}

fn net(n: Value) -> Value {
    tspec(json!({"networks": [n]}))
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_clear_messages() {
    let ns = envtest::test_namespace("nc-reject").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<VirtualMachine>(&()),
    );

    let sha = "a".repeat(64);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "static-no-address",
            net(json!({"name": "mgmt", "type": "bridge", "ipv4": {"method": "static"}})),
            "method static requires address",
        ),
        (
            "static-no-prefix",
            net(
                json!({"name": "mgmt", "type": "bridge", "ipv4": {"method": "static", "address": "10.0.1.10"}}),
            ),
            "ipv4.address must be an IPv4 address with a prefix length",
        ),
        (
            "ipv4-with-v6",
            net(
                json!({"name": "mgmt", "type": "bridge", "ipv4": {"method": "static", "address": "fd00::1/64"}}),
            ),
            "ipv4.address must be an IPv4 address",
        ),
        (
            "ipv6-with-v4",
            net(
                json!({"name": "mgmt", "type": "bridge", "ipv6": {"method": "static", "address": "10.0.0.1/24"}}),
            ),
            "ipv6.address must be an IPv6 address",
        ),
        (
            "gateway-family",
            net(
                json!({"name": "mgmt", "type": "bridge", "ipv4": {"method": "static", "address": "10.0.1.10/24", "gateway": "fd00::1"}}),
            ),
            "ipv4.gateway must be an IPv4 address",
        ),
        (
            "dns-name",
            net(
                json!({"name": "mgmt", "type": "bridge", "ipv4": {"method": "dhcp", "dns": ["dns.google"]}}),
            ),
            "dns entries must be IP addresses",
        ),
        (
            "dhcp-address",
            net(
                json!({"name": "mgmt", "type": "bridge", "ipv4": {"method": "dhcp", "address": "10.0.1.10/24"}}),
            ),
            "address and gateway can only be set with method static",
        ),
        (
            "bad-method",
            net(json!({"name": "mgmt", "type": "bridge", "ipv4": {"method": "auto"}})),
            "Unsupported value: \"auto\"",
        ),
        (
            "bad-net-type",
            net(json!({"name": "mgmt", "type": "vxlan"})),
            "Unsupported value: \"vxlan\"",
        ),
        (
            "masquerade-nad",
            net(json!({"name": "data", "type": "masquerade"})),
            "masquerade is only possible on the pod network",
        ),
        (
            "multicast-mac",
            net(json!({"name": "data", "type": "ovs", "macAddress": "01:00:5e:00:00:01"})),
            "unicast MAC address",
        ),
        (
            "dup-networks",
            tspec(
                json!({"networks": [{"name": "a", "type": "ovs"}, {"name": "a", "type": "macvlan"}]}),
            ),
            "Duplicate value",
        ),
        (
            "bandwidth-space",
            json!({"migrationPolicy": {"bandwidth": "10 Gbps"}}),
            "bandwidth must be a rate like 10Gbps",
        ),
        (
            "bandwidth-word",
            json!({"migrationPolicy": {"bandwidth": "fast"}}),
            "bandwidth must be a rate like 10Gbps",
        ),
        (
            "timeout-format",
            json!({"migrationPolicy": {"completionTimeout": "1h30"}}),
            "completionTimeout",
        ),
        (
            "cron-4-fields",
            json!({"snapshotPolicy": {"schedule": "0 2 * *"}}),
            "schedule must be a 5-field cron expression",
        ),
        (
            "cron-6-fields",
            json!({"snapshotPolicy": {"schedule": "0 0 2 * * *"}}),
            "schedule must be a 5-field cron expression",
        ),
        (
            "cron-macro",
            json!({"snapshotPolicy": {"schedule": "@fortnightly"}}),
            "schedule must be a 5-field cron expression",
        ),
        (
            "retention-0",
            json!({"snapshotPolicy": {"schedule": "@daily", "retention": 0}}),
            "retention",
        ),
        (
            "retention-negative",
            json!({"snapshotPolicy": {"schedule": "@daily", "retention": -3}}),
            "spec.snapshotPolicy.retention: Invalid value: -3",
        ),
        (
            "retention-huge",
            json!({"snapshotPolicy": {"schedule": "@daily", "retention": 1001}}),
            "should be less than or equal to 1000",
        ),
        (
            "cron-empty",
            json!({"snapshotPolicy": {"schedule": ""}}),
            "spec.snapshotPolicy.schedule",
        ),
        (
            "time-zone-empty",
            json!({"snapshotPolicy": {"schedule": "@daily", "timeZone": ""}}),
            "spec.snapshotPolicy.timeZone",
        ),
        (
            "cpu-0",
            tspec(json!({"resources": {"cpu": 0}})),
            "should be greater than or equal to 1",
        ),
        (
            "memory-small",
            tspec(json!({"resources": {"memory": "256Mi"}})),
            "memory must be a quantity of at least 512Mi",
        ),
        (
            "memory-words",
            tspec(json!({"resources": {"memory": "lots"}})),
            "memory must be a quantity of at least 512Mi",
        ),
        (
            "disk-zero",
            tspec(json!({"resources": {"disk": "0"}})),
            "disk must be a positive quantity",
        ),
        (
            "no-image",
            tspec(json!({"image": null})),
            "image: Required value",
        ),
        (
            "image-path",
            tspec(json!({"image": {"source": "ubuntu.qcow2"}})),
            "image.source must be an http(s):// URL",
        ),
        (
            "image-scheme",
            tspec(json!({"image": {"source": "docker://ubuntu"}})),
            "image.source must be an http(s):// URL",
        ),
        (
            "checksum-marketplace",
            tspec(json!({"image": {"checksum": format!("sha256:{sha}")}})),
            "image.checksum applies only to http",
        ),
        (
            "checksum-format",
            tspec(json!({"image": {"source": "https://x/y.img", "checksum": "md5:abc"}})),
            "checksum must be sha256",
        ),
        (
            "pull-policy",
            tspec(json!({"image": {"pullPolicy": "Sometimes"}})),
            "Unsupported value: \"Sometimes\"",
        ),
        (
            "hook-both",
            tspec(
                json!({"lifecycle": {"preStart": {"exec": {"command": ["x"]}, "httpGet": {"port": 80}}}}),
            ),
            "a hook needs exactly one of exec or httpGet",
        ),
        (
            "hook-none",
            tspec(json!({"lifecycle": {"preStop": {"timeoutSeconds": 5}}})),
            "a hook needs exactly one of exec or httpGet",
        ),
        (
            "device-type",
            tspec(json!({"devices": [{"type": "tpu"}]})),
            "Unsupported value: \"tpu\"",
        ),
        (
            "device-count",
            tspec(json!({"devices": [{"type": "gpu", "count": 0}]})),
            "should be greater than or equal to 1",
        ),
        (
            "volume-size",
            tspec(json!({"volumes": [{"name": "data", "size": "-1Gi"}]})),
            "volumes[0].size: Invalid value: \"-1Gi\": spec.template.spec.volumes[0].size in body should match",
        ),
        (
            "volume-mode",
            tspec(
                json!({"volumes": [{"name": "data", "size": "1Gi", "accessMode": "ReadWriteSometimes"}]}),
            ),
            "Unsupported value",
        ),
        (
            "userdata-both",
            tspec(json!({"userData": "#cloud-config", "userDataSecretRef": {"name": "ud"}})),
            "set either userData or userDataSecretRef",
        ),
        (
            "running-and-strategy",
            json!({"runStrategy": "Always"}),
            "set either spec.running or spec.runStrategy",
        ),
        (
            "run-without-template",
            json!({"template": null}),
            "spec.template is required to run the VM",
        ),
        (
            "strategy-without-template",
            json!({"running": null, "runStrategy": "RerunOnFailure", "template": null}),
            "spec.template is required to run the VM",
        ),
        (
            "rolling-on-recreate",
            json!({"updateStrategy": {"type": "Recreate", "rollingUpdate": {"maxUnavailable": 1}}}),
            "rollingUpdate can only be set with type RollingUpdate",
        ),
        (
            "grace-negative",
            tspec(json!({"terminationGracePeriodSeconds": -1})),
            "should be greater than or equal to 0",
        ),
    ];
    let mut failures = Vec::new();
    for (name, patch, expected) in &cases {
        let obj: DynamicObject = serde_json::from_value(vm_with(name, patch.clone())).unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!(
                "{name}: accepted, expected rejection with {expected:?}"
            )),
            Err(e) => {
                let msg = e.to_string();
                if !msg.contains(expected) {
                    failures.push(format!("{name}: message {msg:?} lacks {expected:?}"));
                }
            }
        }
    }
    // Names must be DNS labels (the API server itself allows dots and 253 characters).
    for bad in ["vm.with.dots", &"a".repeat(64)] {
        let obj: DynamicObject = serde_json::from_value(vm_with(bad, json!({}))).unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("name {bad}: accepted")),
            Err(e) if e.to_string().contains("must be a DNS label") => {}
            Err(e) => failures.push(format!("name {bad}: {e}")),
        }
    }
    // Sanity: the base object and a few edge cases are accepted.
    for (name, patch) in [
        ("base", json!({})),
        (
            "stopped-no-template",
            json!({"running": false, "template": null}),
        ),
        (
            "halted-no-template",
            json!({"running": null, "runStrategy": "Halted", "template": null}),
        ),
        (
            "memory-bytes",
            tspec(json!({"resources": {"memory": 536870912}})),
        ),
        (
            "ipv6-static",
            net(
                json!({"name": "data", "type": "macvlan", "ipv6": {"method": "static", "address": "fd00::10/64", "gateway": "fd00::1", "dns": ["fd00::53"]}}),
            ),
        ),
        (
            "masquerade-pod",
            net(
                json!({"name": "default", "type": "masquerade", "macAddress": "02:00:00:aa:bb:cc"}),
            ),
        ),
        (
            "http-checksum",
            tspec(
                json!({"image": {"source": "https://example.com/x.qcow2", "checksum": format!("sha256:{sha}")}}),
            ),
        ),
        (
            "volumes",
            tspec(
                json!({"volumes": [{"name": "data", "size": "100Gi", "accessMode": "ReadWriteMany"}]}),
            ),
        ),
        (
            "policies",
            json!({"migrationPolicy": {"allowLiveMigration": true, "bandwidth": "2.5Gbps", "completionTimeout": "15m"}, "snapshotPolicy": {"schedule": "*/30 8-18 * * mon-fri", "timeZone": "Europe/Berlin"}}),
        ),
        (
            "rolling",
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}}),
        ),
        (
            "hooks",
            tspec(
                json!({"lifecycle": {"preStart": {"exec": {"command": ["/bin/true"]}}, "preStop": {"httpGet": {"port": 8080}}}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
            ),
        ),
    ] {
        let obj: DynamicObject = serde_json::from_value(vm_with(name, patch)).unwrap();
        if let Err(e) = api.create(&PostParams::default(), &obj).await {
            failures.push(format!("{name}: rejected: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn migration_spec_is_validated_and_immutable() {
    let ns = envtest::test_namespace("nc-vmim").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;
    let api: Api<VirtualMachineMigration> = ns.api();
    let obj = |name: &str, spec: Value| -> VirtualMachineMigration {
        serde_json::from_value(json!({
            "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachineMigration",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    };
    api.create(
        &PostParams::default(),
        &obj(
            "move-my-vm",
            json!({"vmName": "my-vm", "targetNodeSelector": {"kubernetes.io/hostname": "node-2"}}),
        ),
    )
    .await
    .unwrap();
    let err = api
        .patch(
            "move-my-vm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"vmName": "other"}})),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the spec of a migration cannot change"),
        "{err}"
    );
    let err = api
        .create(
            &PostParams::default(),
            &obj("bad", json!({"vmName": "My_VM"})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.vmName"), "{err}");
    let untyped: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<VirtualMachineMigration>(&()),
    );
    let missing: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachineMigration",
        "metadata": {"name": "missing"}, "spec": {},
    }))
    .unwrap();
    let err = untyped
        .create(&PostParams::default(), &missing)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("spec.vmName: Required value"),
        "{err}"
    );
}

async fn warning_events(client: &Client, ns: &str, name: &str) -> Vec<CoreEvent> {
    Api::<CoreEvent>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect()
}

fn accepted(
    vm_status: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
) -> Option<(String, String, String, Option<i64>)> {
    vm_status?.iter().find(|c| c.type_ == ACCEPTED).map(|c| {
        (
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    })
}

#[tokio::test]
async fn controllers_report_validation_in_status_and_events() {
    let ns = envtest::test_namespace("nc-ctrl").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;
    let args = operator_core::cli::RunArgs {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        watch_namespace: Some(ns.name.clone()),
        crd_wait: Duration::from_secs(30),
        ..Default::default()
    };
    let operator = operator_core::Operator {
        name: novacron_operator::controllers::OPERATOR,
        version: env!("CARGO_PKG_VERSION"),
        revision: "test",
        crds: novacron_operator::crd::all,
    };
    let run_client = client.clone();
    tokio::spawn(async move {
        operator_core::runtime::run_with_client(
            &operator,
            args,
            run_client,
            operator_core::metrics::Metrics::new(),
            novacron_operator::controllers::run,
        )
        .await
    });
    let vms: Api<VirtualMachine> = ns.api();

    // A valid VM: Accepted, Pending, observedGeneration set.
    apply(
        &client,
        sample("samples/my-vm.yaml", &ns.name),
        &ns.name,
        MANAGER,
    )
    .await
    .unwrap();
    let vm = envtest::eventually("my-vm accepted", WAIT, || async {
        let vm = vms.get("my-vm").await.ok()?;
        let st = vm.status.as_ref()?;
        (st.observed_generation == vm.metadata.generation).then_some(vm)
    })
    .await;
    let status = vm.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(VmPhase::Pending));
    let (s, reason, _, generation) = accepted(Some(&status.conditions)).unwrap();
    assert_eq!(
        (s.as_str(), reason.as_str(), generation),
        ("True", "Valid", vm.metadata.generation)
    );
    // No validation warning; the only one possible is that this operator
    // has no image catalog for the sample's marketplace:// image.
    let reasons: Vec<_> = warning_events(&client, &ns.name, "my-vm")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().all(|r| r == "ImageCatalogMissing"),
        "{reasons:?}"
    );
    assert_eq!(
        vm.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "DiskReady")
            .map(|c| c.reason.as_str()),
        Some("ImageCatalogMissing")
    );

    // Admitted by the schema but invalid: an unknown time zone and a gateway
    // outside the interface's subnet.
    let bad: DynamicObject = serde_json::from_value(vm_with(
        "bad-vm",
        json!({
            "snapshotPolicy": {"schedule": "@daily", "timeZone": "Mars/Olympus"},
            "template": {"spec": {"networks": [{"name": "mgmt", "type": "bridge", "ipv4": {"method": "static", "address": "10.0.1.10/24", "gateway": "10.0.2.1"}}]}}
        }),
    ))
    .unwrap();
    apply(&client, bad, &ns.name, MANAGER).await.unwrap();
    let (s, reason, message, _) = envtest::eventually("bad-vm rejected", WAIT, || async {
        let vm = vms.get("bad-vm").await.ok()?;
        accepted(vm.status.as_ref().map(|s| s.conditions.as_slice()))
    })
    .await;
    assert_eq!((s.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.snapshotPolicy.timeZone: unknown time zone \"Mars/Olympus\""),
        "{message}"
    );
    assert!(message.contains("spec.template.spec.networks[0].ipv4.gateway: 10.0.2.1 is not in the subnet of 10.0.1.10/24"), "{message}");
    let events = envtest::eventually("warning event", WAIT, || async {
        let ev = warning_events(&client, &ns.name, "bad-vm").await;
        (!ev.is_empty()).then_some(ev)
    })
    .await;
    assert_eq!(events[0].reason.as_deref(), Some("InvalidSpec"));
    assert!(
        events[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("Mars/Olympus")
    );

    // Fixing it flips the condition for the new generation.
    let fix = json!({"spec": {
        "snapshotPolicy": {"timeZone": "Europe/Berlin"},
        "template": {"spec": {"networks": [{"name": "mgmt", "type": "bridge", "ipv4": {"method": "static", "address": "10.0.1.10/24", "gateway": "10.0.1.1"}}]}}
    }});
    vms.patch("bad-vm", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    let vm = envtest::eventually("bad-vm fixed", WAIT, || async {
        let vm = vms.get("bad-vm").await.ok()?;
        let (s, ..) = accepted(vm.status.as_ref().map(|s| s.conditions.as_slice()))?;
        (s == "True").then_some(vm)
    })
    .await;
    assert_eq!(vm.metadata.generation, Some(2));
    assert_eq!(vm.status.as_ref().unwrap().observed_generation, Some(2));

    // The document's policy-only manifest applied alone: no template.
    let lone = envtest::manifest::parse_documents(&read("samples/snapshots.yaml"))
        .unwrap()
        .remove(0);
    let mut lone: Value = serde_json::to_value(lone).unwrap();
    lone["metadata"]["name"] = json!("lone-vm");
    lone["metadata"]["namespace"] = json!(ns.name);
    apply(
        &client,
        serde_json::from_value(lone).unwrap(),
        &ns.name,
        MANAGER,
    )
    .await
    .unwrap();
    let (s, reason, message, _) = envtest::eventually("lone-vm reported", WAIT, || async {
        let vm = vms.get("lone-vm").await.ok()?;
        accepted(vm.status.as_ref().map(|s| s.conditions.as_slice()))
    })
    .await;
    assert_eq!((s.as_str(), reason.as_str()), ("False", "MissingTemplate"));
    assert!(message.contains("spec.template is required"), "{message}");

    // A migration request for a VM whose policy does not allow it: refused
    // with the VM's LiveMigratable reason, Failed, nothing created.
    let migrations: Api<VirtualMachineMigration> = ns.api();
    let m: VirtualMachineMigration = serde_json::from_value(json!({
        "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachineMigration",
        "metadata": {"name": "move-my-vm"}, "spec": {"vmName": "my-vm"},
    }))
    .unwrap();
    migrations.create(&PostParams::default(), &m).await.unwrap();
    let (m, reason, message) = envtest::eventually("migration refused", WAIT, || async {
        let m = migrations.get("move-my-vm").await.ok()?;
        let (s, reason, message, _) = accepted(m.status.as_ref().map(|s| s.conditions.as_slice()))?;
        (s == "False").then_some((m, reason, message))
    })
    .await;
    assert_eq!(reason, "MigrationDisabled", "{message}");
    assert!(
        message.contains("my-vm is not live-migratable"),
        "{message}"
    );
    assert_eq!(
        m.status.as_ref().unwrap().phase,
        Some(MigrationPhase::Failed)
    );
    assert_eq!(m.status.as_ref().unwrap().observed_generation, Some(1));

    // Steady state: nothing rewrites the status.
    let before = vms.get("my-vm").await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(vms.get("my-vm").await.unwrap().resource_version(), before);
}
