//! The metrics the original NovaCron document promised, with its names and
//! labels (served unprefixed next to the shared `operator_*` metrics):
//!
//! | metric | labels |
//! |---|---|
//! | `novacron_vm_total` (gauge) | `namespace`, `phase` |
//! | `novacron_vm_cpu_usage_cores` (gauge) | `namespace`, `vm`, `node` |
//! | `novacron_vm_memory_usage_bytes` (gauge) | `namespace`, `vm`, `node` |
//! | `novacron_reconcile_total` (counter) | `controller`, `result` (`success`/`error`) |
//! | `novacron_reconcile_duration_seconds` (histogram) | `controller` |
//! | `novacron_webhook_requests_total` (counter) | `webhook` (`validate`/`mutate`), `allowed` |

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use operator_core::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmLabels {
    namespace: String,
    vm: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
    allowed: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

fn histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// The NovaCron metrics. Cheap to clone.
#[derive(Clone)]
pub struct VmMetrics {
    totals: Family<PhaseLabels, Gauge>,
    cpu: Family<VmLabels, Gauge<f64, AtomicU64>>,
    memory: Family<VmLabels, Gauge>,
    reconciles: Family<ResultLabels, Counter>,
    webhook: Family<WebhookLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    /// The node each VM's usage series carries, to remove it later.
    usage_nodes: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl VmMetrics {
    /// Creates the metrics and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let m = VmMetrics {
            totals: Family::default(),
            cpu: Family::default(),
            memory: Family::default(),
            reconciles: Family::default(),
            webhook: Family::default(),
            durations: Family::new_with_constructor(histogram as fn() -> Histogram),
            usage_nodes: Arc::default(),
        };
        metrics.register_unprefixed(
            "novacron_vm_total",
            "Virtual machines by namespace and phase",
            m.totals.clone(),
        );
        metrics.register_unprefixed(
            "novacron_vm_cpu_usage_cores",
            "CPU used by a running VM's QEMU process, in cores",
            m.cpu.clone(),
        );
        metrics.register_unprefixed(
            "novacron_vm_memory_usage_bytes",
            "Resident memory of a running VM's QEMU process, in bytes",
            m.memory.clone(),
        );
        metrics.register_unprefixed(
            "novacron_reconcile",
            "Reconciles by controller and result",
            m.reconciles.clone(),
        );
        metrics.register_unprefixed(
            "novacron_webhook_requests",
            "Admission reviews answered, by webhook (validate, mutate) and verdict",
            m.webhook.clone(),
        );
        metrics.register_unprefixed(
            "novacron_reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            m.durations.clone(),
        );
        m
    }

    /// Records one reconcile.
    pub fn observe_reconcile(&self, controller: &str, took: Duration, ok: bool) {
        self.reconciles
            .get_or_create(&ResultLabels {
                controller: controller.into(),
                result: if ok { "success" } else { "error" }.into(),
            })
            .inc();
        self.durations
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one admission review.
    pub fn observe_admission(&self, webhook: &str, allowed: bool) {
        self.webhook
            .get_or_create(&WebhookLabels {
                webhook: webhook.into(),
                allowed: allowed.to_string(),
            })
            .inc();
    }

    /// Sets a running VM's usage.
    pub fn set_usage(
        &self,
        namespace: &str,
        vm: &str,
        node: &str,
        cpu_cores: Option<f64>,
        memory_bytes: Option<u64>,
    ) {
        let key = (namespace.to_owned(), vm.to_owned());
        let mut nodes = self.usage_nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = nodes.get(&key)
            && old != node
        {
            self.remove_series(namespace, vm, old);
        }
        nodes.insert(key, node.to_owned());
        let labels = VmLabels {
            namespace: namespace.into(),
            vm: vm.into(),
            node: node.into(),
        };
        if let Some(c) = cpu_cores {
            self.cpu.get_or_create(&labels).set(c);
        }
        if let Some(m) = memory_bytes {
            self.memory
                .get_or_create(&labels)
                .set(i64::try_from(m).unwrap_or(i64::MAX));
        }
    }

    /// Removes a VM's usage series (it stopped or was deleted).
    pub fn clear_usage(&self, namespace: &str, vm: &str) {
        let mut nodes = self.usage_nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = nodes.remove(&(namespace.to_owned(), vm.to_owned())) {
            self.remove_series(namespace, vm, &node);
        }
    }

    fn remove_series(&self, namespace: &str, vm: &str, node: &str) {
        let labels = VmLabels {
            namespace: namespace.into(),
            vm: vm.into(),
            node: node.into(),
        };
        self.cpu.remove(&labels);
        self.memory.remove(&labels);
    }

    /// Replaces the per-phase counts and drops usage series of VMs that no
    /// longer exist. `vms` lists every VM as (namespace, name, phase).
    pub fn set_inventory(&self, vms: &[(String, String, String)]) {
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for (ns, _, phase) in vms {
            *counts.entry((ns.clone(), phase.clone())).or_default() += 1;
        }
        self.totals.clear();
        for ((namespace, phase), n) in counts {
            self.totals
                .get_or_create(&PhaseLabels { namespace, phase })
                .set(n);
        }
        let existing: std::collections::HashSet<(String, String)> = vms
            .iter()
            .map(|(ns, name, _)| (ns.clone(), name.clone()))
            .collect();
        let gone: Vec<(String, String)> = self
            .usage_nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|k| !existing.contains(*k))
            .cloned()
            .collect();
        for (ns, vm) in gone {
            self.clear_usage(&ns, &vm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_and_labels() {
        let metrics = Metrics::new();
        let m = VmMetrics::register(&metrics);
        m.observe_reconcile("virtualmachine", Duration::from_millis(3), true);
        m.observe_reconcile("virtualmachine", Duration::from_millis(3), false);
        m.set_usage("prod", "web", "node-a", Some(0.5), Some(1 << 30));
        m.set_inventory(&[
            ("prod".into(), "web".into(), "Running".into()),
            ("prod".into(), "db".into(), "Running".into()),
            ("dev".into(), "x".into(), "Stopped".into()),
        ]);
        let text = metrics.encode();
        for want in [
            r#"novacron_vm_total{namespace="prod",phase="Running"} 2"#,
            r#"novacron_vm_total{namespace="dev",phase="Stopped"} 1"#,
            r#"novacron_vm_cpu_usage_cores{namespace="prod",vm="web",node="node-a"} 0.5"#,
            r#"novacron_vm_memory_usage_bytes{namespace="prod",vm="web",node="node-a"} 1073741824"#,
            r#"novacron_reconcile_total{controller="virtualmachine",result="success"} 1"#,
            r#"novacron_reconcile_total{controller="virtualmachine",result="error"} 1"#,
            r#"novacron_reconcile_duration_seconds_count{controller="virtualmachine"} 2"#,
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        // The VM is gone: its series go too; a moved VM keeps one series.
        m.set_usage("dev", "x", "n1", Some(1.0), None);
        m.set_usage("dev", "x", "n2", Some(1.0), None);
        m.set_inventory(&[("dev".into(), "x".into(), "Running".into())]);
        let text = metrics.encode();
        assert!(!text.contains(r#"vm="web""#), "{text}");
        assert!(!text.contains(r#"node="n1""#), "{text}");
        assert!(text.contains(r#"node="n2""#), "{text}");
        assert!(!text.contains(r#"phase="Stopped""#), "{text}");
    }
}
