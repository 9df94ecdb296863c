//! Whether a flavor fits on a current node: `status.schedulable` of
//! DevServerFlavor, computed from the nodes (pure; the flavor controller
//! watches nodes and recomputes when their labels, taints or allocatable
//! resources change).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use operator_core::quantity::parse_quantity;

use crate::crd::{DevServerFlavorSpec, Schedulable};

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == taint.key,
        };
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => {
                t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
            }
        };
        effect_ok && key_ok && value_ok
    })
}

/// What one pod of the flavor requests (a limit alone implies the same
/// request, as Kubernetes does).
pub fn pod_requests(spec: &DevServerFlavorSpec) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    if let Some(r) = &spec.resources {
        out.extend(r.limits.clone().unwrap_or_default());
        out.extend(r.requests.clone().unwrap_or_default());
    }
    out
}

/// Whether `node` can run one pod of the flavor (ignoring what already runs
/// there: this is about the shape of the cluster, not its current load).
pub fn fits(spec: &DevServerFlavorSpec, node: &Node) -> bool {
    let node_spec = node.spec.clone().unwrap_or_default();
    if node_spec.unschedulable == Some(true) {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let tolerated = node_spec
        .taints
        .iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerates(&tolerations, t));
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let room = pod_requests(spec).iter().all(|(name, want)| {
        let (Ok(want), Some(Ok(have))) = (
            parse_quantity(want),
            allocatable.get(name).map(parse_quantity),
        ) else {
            // Unknown or absent on the node: only a zero request fits.
            return parse_quantity(want).is_ok_and(|w| w == Default::default());
        };
        have >= want
    });
    selected && tolerated && room
}

/// Yes when some node fits, No when none does, Unknown without nodes.
pub fn schedulable(spec: &DevServerFlavorSpec, nodes: &[Node]) -> Schedulable {
    if nodes.is_empty() {
        Schedulable::Unknown
    } else if nodes.iter().any(|n| fits(spec, n)) {
        Schedulable::Yes
    } else {
        Schedulable::No
    }
}

/// Whether a Karpenter NodePool (`karpenter.sh/v1`, as JSON) can launch a
/// node for the flavor: every `nodeSelector` entry is one of the pool's
/// template labels or allowed by its requirements (`In` with the value,
/// `Exists`, or `NotIn` without it), and the flavor tolerates the pool's
/// taints. (Instance sizes are Karpenter's business: it picks one that fits.)
pub fn node_pool_matches(spec: &DevServerFlavorSpec, pool: &serde_json::Value) -> bool {
    let template = &pool["spec"]["template"];
    let labels = &template["metadata"]["labels"];
    let requirements = template["spec"]["requirements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let allowed = |key: &str, value: &str| {
        if labels[key].as_str() == Some(value) {
            return true;
        }
        requirements.iter().any(|r| {
            let values: Vec<&str> = r["values"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            r["key"].as_str() == Some(key)
                && match r["operator"].as_str() {
                    Some("In") => values.contains(&value),
                    Some("Exists") => true,
                    Some("NotIn") => !values.contains(&value),
                    _ => false,
                }
        })
    };
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| allowed(k, v));
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let taints: Vec<Taint> =
        serde_json::from_value(template["spec"]["taints"].clone()).unwrap_or_default();
    let tolerated = taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerates(&tolerations, t));
    selected && tolerated
}

/// [`schedulable`], then `Autoscaled` when no current node fits but a
/// NodePool can add one.
pub fn schedulable_with_pools(
    spec: &DevServerFlavorSpec,
    nodes: &[Node],
    pools: &[serde_json::Value],
) -> Schedulable {
    match schedulable(spec, nodes) {
        Schedulable::Yes => Schedulable::Yes,
        _ if pools.iter().any(|p| node_pool_matches(spec, p)) => Schedulable::Autoscaled,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DevServerFlavor;

    /// The shapes of envtest's default KWOK nodes: CPU-only, and a tainted
    /// node with four GPUs.
    fn nodes() -> Vec<Node> {
        let node = |name: &str, gpus: u32, tainted: bool| -> Node {
            let mut alloc = serde_json::json!({"cpu": "16", "memory": "64Gi", "pods": "110"});
            let mut labels = serde_json::json!({"kubernetes.io/arch": "amd64"});
            if gpus > 0 {
                alloc["nvidia.com/gpu"] = gpus.to_string().into();
                labels["nvidia.com/gpu.present"] = "true".into();
            }
            let taints = if tainted {
                serde_json::json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
            } else {
                serde_json::json!([])
            };
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints},
                "status": {"allocatable": alloc}
            }))
            .unwrap()
        };
        vec![node("cpu-0", 0, false), node("gpu-0", 4, true)]
    }

    fn sample(file: &str) -> DevServerFlavorSpec {
        let path = format!(
            "{}/../../deploy/devserver-operator/samples/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_yaml::from_str::<DevServerFlavor>(&std::fs::read_to_string(path).unwrap())
            .unwrap()
            .spec
    }

    #[test]
    fn the_sample_flavors_against_the_test_nodes() {
        assert_eq!(
            schedulable(&sample("flavor-cpu-small.yaml"), &nodes()),
            Schedulable::Yes
        );
        assert_eq!(
            schedulable(&sample("flavor-gpu-small.yaml"), &nodes()),
            Schedulable::Yes
        );
        // Eight GPUs and 48 CPUs: no node is that big.
        assert_eq!(
            schedulable(&sample("flavor-gpu-large.yaml"), &nodes()),
            Schedulable::No
        );
        assert_eq!(
            schedulable(&sample("flavor-cpu-small.yaml"), &[]),
            Schedulable::Unknown
        );
    }

    #[test]
    fn a_matching_node_pool_makes_an_unfit_flavor_autoscaled() {
        let large = sample("flavor-gpu-large.yaml");
        let pool =
            |labels: serde_json::Value, reqs: serde_json::Value, taints: serde_json::Value| {
                serde_json::json!({"spec": {"template": {
                    "metadata": {"labels": labels},
                    "spec": {"requirements": reqs, "taints": taints}
                }}})
            };
        let gpu_taint = serde_json::json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]);
        let by_label = pool(
            large
                .node_selector
                .clone()
                .map(serde_json::to_value)
                .unwrap()
                .unwrap(),
            serde_json::json!([]),
            gpu_taint.clone(),
        );
        assert!(node_pool_matches(&large, &by_label));
        assert_eq!(
            schedulable_with_pools(&large, &nodes(), &[by_label]),
            Schedulable::Autoscaled
        );
        let keys: Vec<_> = large.node_selector.clone().unwrap().into_keys().collect();
        let by_requirement = pool(
            serde_json::json!({}),
            serde_json::Value::Array(
                keys.iter()
                    .map(|k| serde_json::json!({"key": k, "operator": "Exists"}))
                    .collect(),
            ),
            serde_json::json!([]),
        );
        assert!(node_pool_matches(&large, &by_requirement));
        // An untolerated taint, or a selector the pool cannot satisfy.
        let mut cpu = sample("flavor-cpu-small.yaml");
        assert!(!node_pool_matches(
            &cpu,
            &pool(serde_json::json!({}), serde_json::json!([]), gpu_taint)
        ));
        cpu.node_selector = Some(BTreeMap::from([("disk".into(), "ssd".into())]));
        let other = pool(
            serde_json::json!({}),
            serde_json::json!([{"key": "disk", "operator": "In", "values": ["hdd"]}]),
            serde_json::json!([]),
        );
        assert!(!node_pool_matches(&cpu, &other));
        assert_eq!(
            schedulable_with_pools(&cpu, &nodes(), &[other]),
            Schedulable::No
        );
        // A fitting node wins over pools.
        assert_eq!(
            schedulable_with_pools(&sample("flavor-cpu-small.yaml"), &nodes(), &[]),
            Schedulable::Yes
        );
    }

    #[test]
    fn taints_need_tolerations_and_selectors_need_labels() {
        let mut gpu = sample("flavor-gpu-small.yaml");
        let only_gpu = &nodes()[1..];
        assert!(fits(&gpu, &only_gpu[0]));
        gpu.tolerations = None;
        assert!(!fits(&gpu, &only_gpu[0]), "the taint is not tolerated");
        let mut cpu = sample("flavor-cpu-small.yaml");
        cpu.node_selector = Some(BTreeMap::from([("disk".into(), "ssd".into())]));
        assert_eq!(schedulable(&cpu, &nodes()), Schedulable::No);
    }
}
