use serde_json::{Value, json};

use super::*;

fn crd_json(name: &str) -> Value {
    let crd = all()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD {name}"));
    serde_json::to_value(crd).unwrap()
}

fn schema(name: &str) -> Value {
    crd_json(name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every `x-kubernetes-validations` rule in the schema, with its message.
fn rules(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(rs)) = m.get("x-kubernetes-validations") {
                for r in rs {
                    out.push((
                        r["rule"].as_str().unwrap_or_default().to_owned(),
                        r["message"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
            }
            m.values().for_each(|v| rules(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| rules(v, out)),
        _ => {}
    }
}

/// Paths of properties without a description, and of schemas that are not
/// structural (no type, not int-or-string, not preserved).
fn audit(v: &Value, path: &str, undocumented: &mut Vec<String>, untyped: &mut Vec<String>) {
    let Some(m) = v.as_object() else { return };
    for bad in ["$ref", "anyOf", "oneOf", "allOf"] {
        if m.contains_key(bad) {
            untyped.push(format!("{path} ({bad})"));
        }
    }
    let typed = m.contains_key("type")
        || m.contains_key("x-kubernetes-int-or-string")
        || m.contains_key("x-kubernetes-preserve-unknown-fields");
    if !typed {
        untyped.push(path.to_owned());
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            let child = format!("{path}.{k}");
            if p.get("description").is_none() {
                undocumented.push(child.clone());
            }
            audit(p, &child, undocumented, untyped);
        }
    }
    if let Some(items) = m.get("items") {
        audit(items, &format!("{path}[]"), undocumented, untyped);
    }
    if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
        audit(ap, &format!("{path}{{}}"), undocumented, untyped);
    }
}

#[test]
fn names_scope_and_columns() {
    let vm = crd_json("virtualmachines.novacron.io");
    assert_eq!(vm["spec"]["group"], "novacron.io");
    assert_eq!(vm["spec"]["scope"], "Namespaced");
    assert_eq!(vm["spec"]["names"]["shortNames"], json!(["vm", "vms"]));
    assert_eq!(vm["spec"]["names"]["kind"], "VirtualMachine");
    let version = &vm["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<(&str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Phase", ".status.phase"),
            ("Node", ".status.nodeName"),
            ("IP", ".status.ipAddresses[0]"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );

    let mig = crd_json("virtualmachinemigrations.novacron.io");
    assert_eq!(mig["spec"]["scope"], "Namespaced");
    assert_eq!(mig["spec"]["names"]["shortNames"], json!(["vmim"]));
    assert_eq!(mig["spec"]["names"]["categories"], json!(["novacron"]));
}

#[test]
fn schemas_are_structural_and_documented() {
    for name in [
        "virtualmachines.novacron.io",
        "virtualmachinemigrations.novacron.io",
    ] {
        let (mut undocumented, mut untyped) = (Vec::new(), Vec::new());
        let s = schema(name);
        for part in ["spec", "status"] {
            audit(
                &s["properties"][part],
                part,
                &mut undocumented,
                &mut untyped,
            );
        }
        assert!(untyped.is_empty(), "{name}: not structural: {untyped:#?}");
        assert!(
            undocumented.is_empty(),
            "{name}: no description: {undocumented:#?}"
        );
    }
}

#[test]
fn cel_rules_are_in_the_schema() {
    let mut found = Vec::new();
    rules(&schema("virtualmachines.novacron.io"), &mut found);
    let expect = [
        (
            "self.method != 'static' || has(self.address)",
            "method static requires address",
        ),
        (
            "isCIDR(self.ipv4.address)",
            "ipv4.address must be an IPv4 address",
        ),
        (
            "isCIDR(self.ipv6.address)",
            "ipv6.address must be an IPv6 address",
        ),
        (
            "quantity('512Mi')",
            "memory must be a quantity of at least 512Mi",
        ),
        ("([kKMGT]?bps|", "bandwidth must be a rate like 10Gbps"),
        (
            "@(yearly|annually|monthly|weekly|daily|midnight|hourly)",
            "schedule must be a 5-field cron expression",
        ),
        (
            "has(self.exec) != has(self.httpGet)",
            "exactly one of exec or httpGet",
        ),
        ("!(has(self.running) && has(self.runStrategy))", "not both"),
        (
            "has(self.template) ||",
            "spec.template is required to run the VM",
        ),
        ("marketplace://", "image.source must be"),
        (
            "!(has(self.userData) && has(self.userDataSecretRef))",
            "userData or userDataSecretRef",
        ),
        ("self.metadata.name.size() <= 63", "DNS label"),
        (
            "self.type != 'masquerade'",
            "masquerade is only possible on the pod network",
        ),
    ];
    for (rule, message) in expect {
        assert!(
            found
                .iter()
                .any(|(r, m)| r.contains(rule) && m.contains(message)),
            "missing rule {rule:?} / {message:?} in {found:#?}"
        );
    }
    let mut mig = Vec::new();
    rules(&schema("virtualmachinemigrations.novacron.io"), &mut mig);
    assert!(
        mig.iter()
            .any(|(r, m)| r == "self == oldSelf" && m.contains("cannot change"))
    );
}

#[test]
fn affinity_is_the_full_kubernetes_type() {
    let s = schema("virtualmachines.novacron.io");
    let affinity = &s["properties"]["spec"]["properties"]["template"]["properties"]["spec"]["properties"]
        ["affinity"];
    for part in ["nodeAffinity", "podAffinity", "podAntiAffinity"] {
        assert!(
            affinity["properties"][part]["properties"].is_object(),
            "{part}"
        );
    }
    let terms = &affinity["properties"]["nodeAffinity"]["properties"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["properties"]["nodeSelectorTerms"];
    assert!(
        terms["items"]["properties"]["matchExpressions"]["items"]["properties"]["values"]
            .is_object()
    );
    let tolerations = &s["properties"]["spec"]["properties"]["template"]["properties"]["spec"]["properties"]
        ["tolerations"];
    assert!(tolerations["items"]["properties"]["effect"].is_object());
}

#[test]
fn defaults_in_the_schema() {
    let s = schema("virtualmachines.novacron.io");
    let spec = &s["properties"]["spec"]["properties"];
    assert_eq!(
        spec["migrationPolicy"]["default"],
        json!({"allowLiveMigration": false, "compression": false, "encrypted": true, "autoConverge": false, "postCopy": false})
    );
    assert_eq!(
        spec["updateStrategy"]["default"],
        json!({"type": "Recreate"})
    );
    let tspec = &spec["template"]["properties"]["spec"]["properties"];
    assert_eq!(
        tspec["image"]["properties"]["pullPolicy"]["default"],
        "IfNotPresent"
    );
    assert_eq!(tspec["terminationGracePeriodSeconds"]["default"], 180);
    assert_eq!(
        spec["snapshotPolicy"]["properties"]["retention"]["default"],
        7
    );
    assert_eq!(
        tspec["networks"]["items"]["properties"]["type"]["enum"],
        json!(["bridge", "ovs", "sr-iov", "macvlan", "masquerade"])
    );
    assert_eq!(tspec["networks"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        tspec["networks"]["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
}

fn is_subset(small: &Value, big: &Value) -> bool {
    match (small, big) {
        (Value::Object(s), Value::Object(b)) => s
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|bv| is_subset(v, bv))),
        (Value::Array(s), Value::Array(b)) => {
            s.len() == b.len() && s.iter().zip(b).all(|(x, y)| is_subset(x, y))
        }
        _ => small == big,
    }
}

#[test]
fn samples_round_trip_without_losing_fields() {
    let samples = [
        include_str!("../../../../deploy/novacron-operator/samples/my-vm.yaml"),
        include_str!("../../../../deploy/novacron-operator/samples/live-migration.yaml"),
        include_str!("../../../../deploy/novacron-operator/samples/snapshots.yaml"),
    ];
    for sample in samples {
        let value: Value = serde_yaml::from_str(sample).unwrap();
        let vm: VirtualMachine = serde_json::from_value(value.clone()).unwrap();
        let back = serde_json::to_value(&vm).unwrap();
        assert!(
            is_subset(&value, &back),
            "lost fields:\n{value:#}\n{back:#}"
        );
    }
    let fragments = [
        include_str!("../../../../deploy/novacron-operator/samples/fragments/gpu-support.yaml"),
        include_str!(
            "../../../../deploy/novacron-operator/samples/fragments/multiple-network-interfaces.yaml"
        ),
        include_str!("../../../../deploy/novacron-operator/samples/fragments/cloud-init.yaml"),
        include_str!("../../../../deploy/novacron-operator/samples/fragments/node-affinity.yaml"),
    ];
    let base: Value = serde_yaml::from_str(samples[0]).unwrap();
    for fragment in fragments {
        let patch: Value = serde_yaml::from_str(fragment).unwrap();
        let mut spec = base["spec"].clone();
        // The fragments only add keys under spec.template.spec.
        for (k, v) in patch["spec"]["template"]["spec"].as_object().unwrap() {
            spec["template"]["spec"][k] = v.clone();
        }
        let parsed: VirtualMachineSpec = serde_json::from_value(spec.clone()).unwrap();
        let back = serde_json::to_value(&parsed).unwrap();
        assert!(is_subset(&spec, &back), "lost fields:\n{spec:#}\n{back:#}");
    }
}
