use super::*;
use crate::crd::{VirtualMachine, VirtualMachineSpec};

const MY_VM: &str = include_str!("../../../../deploy/novacron-operator/samples/my-vm.yaml");
const LIVE_MIGRATION: &str =
    include_str!("../../../../deploy/novacron-operator/samples/live-migration.yaml");
const SNAPSHOTS: &str = include_str!("../../../../deploy/novacron-operator/samples/snapshots.yaml");
const FRAGMENTS: [&str; 4] = [
    include_str!("../../../../deploy/novacron-operator/samples/fragments/gpu-support.yaml"),
    include_str!(
        "../../../../deploy/novacron-operator/samples/fragments/multiple-network-interfaces.yaml"
    ),
    include_str!("../../../../deploy/novacron-operator/samples/fragments/cloud-init.yaml"),
    include_str!("../../../../deploy/novacron-operator/samples/fragments/node-affinity.yaml"),
];

fn yaml(s: &str) -> serde_json::Value {
    serde_yaml::from_str(s).unwrap()
}

/// RFC 7386 merge patch, as `kubectl patch --type merge` applies it.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn vm_from(value: serde_json::Value) -> VirtualMachine {
    serde_json::from_value(value).unwrap()
}

fn base() -> VirtualMachineSpec {
    vm_from(yaml(MY_VM)).spec
}

/// The base VM with `patch` (YAML of the spec) merged in.
fn with(patch: &str) -> VirtualMachineSpec {
    let mut v = yaml(MY_VM);
    merge(&mut v["spec"], &yaml(patch));
    vm_from(v).spec
}

fn errors(spec: &VirtualMachineSpec) -> Vec<SpecError> {
    validate_vm("my-vm", spec)
        .map(|_| Vec::new())
        .unwrap_or_else(|e| e.errors)
}

/// Asserts exactly one error, with `reason` and a message containing each of `parts`.
fn assert_one(spec: &VirtualMachineSpec, reason: &str, parts: &[&str]) {
    let errs = errors(spec);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    assert_eq!(errs[0].reason(), reason, "{errs:#?}");
    let msg = errs[0].to_string();
    for p in parts {
        assert!(msg.contains(p), "{msg:?} should contain {p:?}");
    }
}

#[test]
fn document_samples_are_valid() {
    assert_eq!(validate_vm("my-vm", &base()), Ok(()));
    for fragment in FRAGMENTS {
        let mut v = yaml(MY_VM);
        merge(&mut v, &yaml(fragment));
        let vm = vm_from(v);
        assert_eq!(validate_vm("my-vm", &vm.spec), Ok(()), "{fragment}");
    }
    // The policy samples merged into the VM, as applying them to my-vm does.
    for policy in [LIVE_MIGRATION, SNAPSHOTS] {
        let mut v = yaml(MY_VM);
        merge(&mut v, &yaml(policy));
        assert_eq!(validate_vm("my-vm", &vm_from(v).spec), Ok(()), "{policy}");
    }
}

#[test]
fn policy_only_manifests_lack_a_template() {
    for policy in [LIVE_MIGRATION, SNAPSHOTS] {
        let vm = vm_from(yaml(policy));
        let err = validate_vm("my-vm", &vm.spec).unwrap_err();
        assert_eq!(err.errors, vec![SpecError::MissingTemplate]);
        assert_eq!(err.reason(), "MissingTemplate");
        assert!(err.to_string().contains("spec.template is required"));
    }
}

#[test]
fn run_state() {
    assert_one(
        &with("runStrategy: Always"),
        "RunStateConflict",
        &["not both"],
    );
    let mut spec = with("runStrategy: RerunOnFailure");
    spec.running = None;
    assert_eq!(errors(&spec), vec![]);
    assert!(spec.wants_running());
    let mut stopped = base();
    stopped.running = None;
    assert!(!stopped.wants_running());
}

#[test]
fn names() {
    for bad in ["My-VM", "vm.example", "-vm", &"a".repeat(64)] {
        let err = validate_vm(bad, &base()).unwrap_err();
        assert_eq!(err.reason(), "InvalidName", "{bad}");
        assert!(err.to_string().contains("not a DNS label"), "{err}");
    }
}

#[test]
fn resources() {
    assert_one(
        &with("{template: {spec: {resources: {cpu: 0}}}}"),
        "InvalidResources",
        &["spec.template.spec.resources.cpu", "expected 1 to 512"],
    );
    assert_one(
        &with("{template: {spec: {resources: {memory: 256Mi}}}}"),
        "InvalidResources",
        &["resources.memory", "less than the minimum of 512Mi"],
    );
    assert_one(
        &with("{template: {spec: {resources: {memory: 4GB}}}}"),
        "InvalidResources",
        &["resources.memory", "not a valid quantity"],
    );
    assert_one(
        &with("{template: {spec: {resources: {disk: '0'}}}}"),
        "InvalidResources",
        &["resources.disk", "larger than zero"],
    );
    assert_eq!(
        errors(&with("{template: {spec: {resources: {memory: 512Mi}}}}")),
        vec![]
    );
    assert_eq!(
        errors(&with(
            "{template: {spec: {resources: {memory: 536870912}}}}"
        )),
        vec![]
    );
}

#[test]
fn image_sources() {
    for ok in [
        "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img",
        "http://10.0.0.1:8080/disk.qcow2",
        "marketplace://ubuntu-22.04-lts",
        "pvc://golden-images/ubuntu",
        "pvc://ubuntu-base",
        "snapshot://my-vm-20240101",
    ] {
        assert!(parse_image_source(ok).is_ok(), "{ok}");
        let spec = with(&format!(
            "{{template: {{spec: {{image: {{source: '{ok}'}}}}}}}}"
        ));
        assert_eq!(errors(&spec), vec![], "{ok}");
    }
    assert_eq!(
        parse_image_source("pvc://images/ubuntu"),
        Ok(ImageSource::Pvc {
            namespace: Some("images"),
            name: "ubuntu"
        })
    );
    for bad in [
        "ubuntu.qcow2",
        "ftp://host/x.img",
        "https:///x.img",
        "marketplace://",
        "marketplace://ubuntu 22",
        "pvc://Bad/x",
        "pvc://a/b/c",
        "snapshot://",
        "docker://ubuntu",
    ] {
        assert!(parse_image_source(bad).is_err(), "{bad}");
        let spec = with(&format!(
            "{{template: {{spec: {{image: {{source: '{bad}'}}}}}}}}"
        ));
        assert_one(&spec, "InvalidImage", &["image.source"]);
    }
}

#[test]
fn checksums() {
    let sha = "a".repeat(64);
    let ok = with(&format!(
        "{{template: {{spec: {{image: {{source: 'https://x/y.img', checksum: 'sha256:{sha}'}}}}}}}}"
    ));
    assert_eq!(errors(&ok), vec![]);
    assert_one(
        &with(&format!(
            "{{template: {{spec: {{image: {{checksum: 'sha256:{sha}'}}}}}}}}"
        )),
        "InvalidImage",
        &["image.checksum", "only to http:// and https://"],
    );
    assert_one(
        &with("{template: {spec: {image: {source: 'https://x/y.img', checksum: 'md5:abc'}}}}"),
        "InvalidImage",
        &["image.checksum", "sha256:<64"],
    );
}

#[test]
fn static_addressing() {
    let mgmt = |ipv4: &str| {
        with(&format!(
            "{{template: {{spec: {{networks: [{{name: management, type: bridge, ipv4: {ipv4}}}]}}}}}}"
        ))
    };
    assert_eq!(
        errors(&mgmt(
            "{method: static, address: 10.0.1.10/24, gateway: 10.0.1.1, dns: [1.1.1.1, '2606:4700::1111']}"
        )),
        vec![]
    );
    assert_one(
        &mgmt("{method: static}"),
        "InvalidNetwork",
        &["networks[0].ipv4.address", "method static requires address"],
    );
    assert_one(
        &mgmt("{method: static, address: 10.0.1.10}"),
        "InvalidNetwork",
        &["ipv4.address", "prefix length"],
    );
    assert_one(
        &mgmt("{method: static, address: 10.0.1.10/33}"),
        "InvalidNetwork",
        &["prefix length must be 0 to 32"],
    );
    assert_one(
        &mgmt("{method: static, address: 'fd00::1/64'}"),
        "InvalidNetwork",
        &["not an IPv4 address"],
    );
    assert_one(
        &mgmt("{method: static, address: 10.0.1.10/24, gateway: 10.0.2.1}"),
        "InvalidNetwork",
        &["ipv4.gateway", "not in the subnet"],
    );
    assert_one(
        &mgmt("{method: static, address: 10.0.1.10/24, gateway: 10.0.1.10}"),
        "InvalidNetwork",
        &["own address"],
    );
    assert_one(
        &mgmt("{method: static, address: 10.0.1.10/24, dns: [dns.google]}"),
        "InvalidNetwork",
        &["ipv4.dns", "not an IP address"],
    );
    assert_one(
        &mgmt("{method: dhcp, address: 10.0.1.10/24}"),
        "InvalidNetwork",
        &["only be set with method static"],
    );
    let v6 = with(
        "{template: {spec: {networks: [{name: data, type: macvlan, ipv6: {method: static, address: 'fd00::10/64', gateway: 'fd00::1'}}]}}}",
    );
    assert_eq!(errors(&v6), vec![]);
    let v6_gw_v4 = with(
        "{template: {spec: {networks: [{name: data, type: macvlan, ipv6: {method: static, address: 'fd00::10/64', gateway: 10.0.0.1}}]}}}",
    );
    assert_one(
        &v6_gw_v4,
        "InvalidNetwork",
        &["ipv6.gateway", "not an IPv6 address"],
    );
}

#[test]
fn pod_network_rules() {
    let net = |n: &str| with(&format!("{{template: {{spec: {{networks: [{n}]}}}}}}"));
    assert_eq!(errors(&net("{name: default, type: masquerade}")), vec![]);
    assert_one(
        &net("{name: default, type: sr-iov}"),
        "InvalidNetwork",
        &["networks[0].type", "needs a NetworkAttachmentDefinition"],
    );
    assert_eq!(
        errors(&net(
            "{name: default, type: sr-iov, networkAttachment: sriov-net}"
        )),
        vec![]
    );
    assert_one(
        &net("{name: data, type: masquerade}"),
        "InvalidNetwork",
        &["masquerade is only possible on the pod network"],
    );
    assert_one(
        &net("{name: default, type: bridge, ipv4: {method: static, address: 10.0.0.2/24}}"),
        "InvalidNetwork",
        &["ipv4.method", "not possible on the pod network"],
    );
}

#[test]
fn network_names_and_macs() {
    let nets = |n: &str| with(&format!("{{template: {{spec: {{networks: {n}}}}}}}"));
    assert_one(
        &nets("[{name: a, type: ovs}, {name: a, type: macvlan}]"),
        "InvalidNetwork",
        &["networks[1].name", "more than one network"],
    );
    assert_eq!(
        errors(&nets(
            "[{name: a, type: ovs, macAddress: '02:00:00:aa:bb:cc'}, {name: b, type: ovs, macAddress: '02:00:00:aa:bb:cd'}]"
        )),
        vec![]
    );
    assert_one(
        &nets(
            "[{name: a, type: ovs, macAddress: '02:00:00:aa:bb:cc'}, {name: b, type: ovs, macAddress: '02:00:00:AA:BB:CC'}]",
        ),
        "InvalidNetwork",
        &["networks[1].macAddress", "more than one network"],
    );
    assert_one(
        &nets("[{name: a, type: ovs, macAddress: '01:00:5e:00:00:01'}]"),
        "InvalidNetwork",
        &["multicast"],
    );
    assert_one(
        &nets("[{name: a, type: ovs, macAddress: '02:00:00:aa:bb'}]"),
        "InvalidNetwork",
        &["not a MAC address"],
    );
    assert_one(
        &nets("[{name: a, type: ovs, macAddress: '00:00:00:00:00:00'}]"),
        "InvalidNetwork",
        &["not a usable MAC"],
    );
    assert_one(
        &nets("[{name: a, type: ovs, networkAttachment: 'x/y/z'}]"),
        "InvalidNetwork",
        &["networkAttachment"],
    );
}

#[test]
fn volumes() {
    let vols = |v: &str| with(&format!("{{template: {{spec: {{volumes: {v}}}}}}}"));
    assert_eq!(
        errors(&vols(
            "[{name: data, size: 100Gi, storageClass: fast, accessMode: ReadWriteMany}]"
        )),
        vec![]
    );
    assert_one(
        &vols("[{name: rootdisk, size: 1Gi}]"),
        "InvalidVolume",
        &["volumes[0].name", "reserved"],
    );
    assert_one(
        &vols("[{name: a, size: 1Gi}, {name: a, size: 2Gi}]"),
        "InvalidVolume",
        &["volumes[1].name", "more than one volume"],
    );
    assert_one(
        &vols("[{name: a, size: '0'}]"),
        "InvalidVolume",
        &["volumes[0].size", "larger than zero"],
    );
    assert_one(
        &vols("[{name: a, size: 1Gi, storageClass: Fast_SSD}]"),
        "InvalidVolume",
        &["storageClass"],
    );
}

#[test]
fn devices() {
    let devs = |d: &str| with(&format!("{{template: {{spec: {{devices: {d}}}}}}}"));
    let ok = devs("[{type: fpga, vendor: xilinx, model: alveo-u250}]");
    assert_eq!(errors(&ok), vec![]);
    assert_eq!(
        ok.template.unwrap().spec.devices[0].count,
        1,
        "count defaults to 1"
    );
    assert_one(
        &devs("[{type: gpu, vendor: NVIDIA}]"),
        "InvalidDevice",
        &["devices[0].vendor"],
    );
    assert_one(
        &devs("[{type: gpu, model: 'tesla t4'}]"),
        "InvalidDevice",
        &["devices[0].model", "node selector"],
    );
    assert_one(
        &devs("[{type: gpu, count: 0}]"),
        "InvalidDevice",
        &["devices[0].count"],
    );
}

#[test]
fn cloud_init() {
    let both = with(
        "{template: {spec: {userData: '#cloud-config', userDataSecretRef: {name: vm-userdata}}}}",
    );
    assert_one(&both, "InvalidCloudInit", &["not both"]);
    let secret =
        with("{template: {spec: {userData: null, userDataSecretRef: {name: vm-userdata}}}}");
    assert_eq!(errors(&secret), vec![]);
    assert_eq!(
        secret
            .template
            .unwrap()
            .spec
            .user_data_secret_ref
            .unwrap()
            .key,
        "userdata"
    );
    let mut big = base();
    big.template.as_mut().unwrap().spec.user_data = Some("x".repeat(MAX_INLINE_USER_DATA + 1));
    assert_one(&big, "InvalidCloudInit", &["userData", "userDataSecretRef"]);
}

#[test]
fn placement() {
    assert_one(
        &with("{template: {spec: {nodeSelector: {'bad key!': x}}}}"),
        "InvalidPlacement",
        &["nodeSelector", "not a valid label key"],
    );
    assert_one(
        &with("{template: {spec: {nodeSelector: {zone: 'a b'}}}}"),
        "InvalidPlacement",
        &["nodeSelector[zone]", "not a valid label value"],
    );
    let tol = |t: &str| with(&format!("{{template: {{spec: {{tolerations: [{t}]}}}}}}"));
    assert_eq!(
        errors(&tol(
            "{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}"
        )),
        vec![]
    );
    assert_eq!(errors(&tol("{operator: Exists}")), vec![]);
    assert_one(
        &tol("{key: gpu, operator: Exists, value: x}"),
        "InvalidPlacement",
        &["tolerations[0]", "value must be empty"],
    );
    assert_one(
        &tol("{operator: Equal, value: x}"),
        "InvalidPlacement",
        &["requires operator Exists"],
    );
    assert_one(
        &tol("{key: gpu, operator: Maybe}"),
        "InvalidPlacement",
        &["operator \"Maybe\""],
    );
    assert_one(
        &tol("{key: gpu, effect: NoRun}"),
        "InvalidPlacement",
        &["effect"],
    );
    assert_one(
        &tol("{key: gpu, effect: NoSchedule, tolerationSeconds: 5}"),
        "InvalidPlacement",
        &["NoExecute"],
    );
}

#[test]
fn hooks() {
    let hook = |h: &str| with(&format!("{{template: {{spec: {{lifecycle: {h}}}}}}}"));
    assert_eq!(
        errors(&hook(
            "{preStart: {exec: {command: [/bin/check-storage]}}, preStop: {httpGet: {port: 8080, path: /drain}, timeoutSeconds: 60}}"
        )),
        vec![]
    );
    assert_one(
        &hook("{preStart: {timeoutSeconds: 5}}"),
        "InvalidHook",
        &["lifecycle.preStart", "exactly one of exec or httpGet"],
    );
    assert_one(
        &hook("{preStop: {exec: {command: [x]}, httpGet: {port: 80}}}"),
        "InvalidHook",
        &["lifecycle.preStop", "exactly one"],
    );
    assert_one(
        &hook("{preStart: {httpGet: {port: 80}}}"),
        "InvalidHook",
        &["httpGet.host is required for preStart"],
    );
    assert_eq!(
        errors(&hook(
            "{preStart: {httpGet: {port: 80, host: ipam.example}}}"
        )),
        vec![]
    );
    assert_one(
        &hook("{preStop: {exec: {command: ['']}}}"),
        "InvalidHook",
        &["needs a program"],
    );
    assert_one(
        &hook("{preStop: {httpGet: {port: 70000}}}"),
        "InvalidHook",
        &["port 70000"],
    );
}

#[test]
fn migration_policy() {
    for ok in ["10Gbps", "500Mbps", "100MiB/s"] {
        assert_eq!(
            errors(&with(&format!(
                "{{migrationPolicy: {{bandwidth: '{ok}'}}}}"
            ))),
            vec![],
            "{ok}"
        );
    }
    for bad in ["10 Gbps", "fast", "0Gbps", "10G"] {
        assert_one(
            &with(&format!("{{migrationPolicy: {{bandwidth: '{bad}'}}}}")),
            "InvalidMigrationPolicy",
            &["spec.migrationPolicy.bandwidth", "10Gbps"],
        );
    }
    assert_eq!(
        errors(&with("{migrationPolicy: {completionTimeout: 15m}}")),
        vec![]
    );
    assert_one(
        &with("{migrationPolicy: {completionTimeout: 1h30}}"),
        "InvalidMigrationPolicy",
        &["completionTimeout"],
    );
    assert_one(
        &with("{migrationPolicy: {completionTimeout: 2d}}"),
        "InvalidMigrationPolicy",
        &["completionTimeout"],
    );
    assert_one(
        &with("{migrationPolicy: {completionTimeout: 0s}}"),
        "InvalidMigrationPolicy",
        &["greater than zero"],
    );
    // Post-copy over multifd (what compression uses) is refused: QEMU 7.2
    // aborts the target. Each alone, and post-copy with TLS, is fine.
    assert_one(
        &with("{migrationPolicy: {allowLiveMigration: true, postCopy: true, compression: true}}"),
        "InvalidMigrationPolicy",
        &["spec.migrationPolicy.postCopy", "compression", "QEMU 7.2"],
    );
    for ok in [
        "{migrationPolicy: {postCopy: true, encrypted: true}}",
        "{migrationPolicy: {compression: true}}",
    ] {
        assert_eq!(errors(&with(ok)), vec![], "{ok}");
    }
}

#[test]
fn migration_policy_defaults() {
    let p = base().migration_policy;
    assert!(
        !p.allow_live_migration
            && !p.compression
            && p.encrypted
            && !p.auto_converge
            && !p.post_copy
    );
    assert_eq!(p, crate::crd::MigrationPolicy::default());
    let explicit: crate::crd::MigrationPolicy = serde_json::from_str("{}").unwrap();
    assert_eq!(explicit, p);
}

#[test]
fn snapshot_policy() {
    for (schedule, tz) in [
        ("0 2 * * *", None),
        ("@daily", Some("Europe/Berlin")),
        ("*/30 8-18 * * mon-fri", Some("UTC")),
    ] {
        let mut spec = base();
        spec.snapshot_policy = Some(crate::crd::SnapshotPolicy {
            schedule: schedule.into(),
            time_zone: tz.map(Into::into),
            retention: 7,
            suspend: false,
            volume_snapshot_class_name: None,
        });
        assert_eq!(errors(&spec), vec![], "{schedule}");
    }
    let snap = |p: &str| with(&format!("{{snapshotPolicy: {p}}}"));
    assert_eq!(
        snap("{schedule: '0 2 * * *'}")
            .snapshot_policy
            .unwrap()
            .retention,
        7
    );
    assert_one(
        &snap("{schedule: '0 2 * *'}"),
        "InvalidSnapshotPolicy",
        &["spec.snapshotPolicy.schedule", "field"],
    );
    assert_one(
        &snap("{schedule: '0 0 2 * * *'}"),
        "InvalidSnapshotPolicy",
        &["snapshotPolicy.schedule"],
    );
    assert_one(
        &snap("{schedule: '@fortnightly'}"),
        "InvalidSnapshotPolicy",
        &["snapshotPolicy.schedule", "macro"],
    );
    assert_one(
        &snap("{schedule: '61 2 * * *'}"),
        "InvalidSnapshotPolicy",
        &["snapshotPolicy.schedule"],
    );
    assert_one(
        &snap("{schedule: '@daily', timeZone: Mars/Olympus}"),
        "InvalidSnapshotPolicy",
        &["spec.snapshotPolicy.timeZone", "IANA"],
    );
    assert_one(
        &snap("{schedule: '@daily', retention: 0}"),
        "InvalidSnapshotPolicy",
        &["retention"],
    );
}

#[test]
fn update_strategy() {
    assert_eq!(base().update_strategy.type_, UpdateStrategyType::Recreate);
    assert_eq!(
        errors(&with(
            "{updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0}}}"
        )),
        vec![]
    );
    assert_one(
        &with("{updateStrategy: {rollingUpdate: {maxUnavailable: 1}}}"),
        "InvalidUpdateStrategy",
        &["rollingUpdate", "type RollingUpdate"],
    );
    assert_one(
        &with("{updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 3}}}"),
        "InvalidUpdateStrategy",
        &["maxUnavailable"],
    );
}

#[test]
fn several_errors_are_all_reported() {
    let spec = with(
        "{template: {spec: {resources: {cpu: 0, memory: 1Mi}}}, migrationPolicy: {bandwidth: fast}}",
    );
    let err = validate_vm("my-vm", &spec).unwrap_err();
    assert_eq!(err.errors.len(), 3, "{err}");
    assert_eq!(err.reason(), "InvalidSpec");
    let msg = err.to_string();
    assert!(
        msg.contains("resources.cpu")
            && msg.contains("resources.memory")
            && msg.contains("bandwidth"),
        "{msg}"
    );
}

#[test]
fn migrations() {
    let spec: VirtualMachineMigrationSpec =
        serde_json::from_value(serde_json::json!({"vmName": "my-vm", "targetNodeSelector": {"kubernetes.io/hostname": "node-2"}}))
            .unwrap();
    assert_eq!(validate_migration(&spec), Ok(()));
    let bad: VirtualMachineMigrationSpec = serde_json::from_value(
        serde_json::json!({"vmName": "My_VM", "targetNodeSelector": {"a/b/c": "x"}}),
    )
    .unwrap();
    let err = validate_migration(&bad).unwrap_err();
    assert_eq!(err.errors.len(), 2, "{err}");
    assert!(err.to_string().contains("spec.vmName"));
    assert!(err.to_string().contains("spec.targetNodeSelector"));
}

#[test]
fn label_syntax() {
    for ok in [
        "zone",
        "node.novacron.io/gpu",
        "kubernetes.io/hostname",
        "a_b.c-d",
    ] {
        assert!(is_qualified_name(ok), "{ok}");
    }
    for bad in ["", "/x", "a/b/c", "Bad_/x", "-x", &"a".repeat(64)] {
        assert!(!is_qualified_name(bad), "{bad}");
    }
    assert!(is_dns_subdomain("a.b-c.d"));
    assert!(!is_dns_subdomain("a..b"));
}
