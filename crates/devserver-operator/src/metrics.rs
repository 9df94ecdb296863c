//! The operator's own metrics (served with the shared `operator_` prefix
//! next to the reconcile and API request metrics):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `operator_devserver_servers` | gauge | `phase`, `flavor` |
//! | `operator_devserver_gpu_servers` | gauge | (Running servers whose flavor asks for a GPU) |
//! | `operator_devserver_idle_stops_total` | counter | |
//! | `operator_devserver_expirations_total` | counter | |
//! | `operator_devserver_time_to_running_seconds` | histogram | (creation to first Running) |
//!
//! The gauges are recounted from the controller's in-memory caches (no API
//! call) after every DevServer reconcile and every few seconds (deletions
//! run no reconcile).

use std::collections::BTreeMap;

use operator_core::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::crd::{DevServer, DevServerFlavor, DevServerPhase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseFlavor {
    phase: String,
    flavor: String,
}

/// The DevServer metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DevServerMetrics {
    servers: Family<PhaseFlavor, Gauge>,
    gpu_servers: Gauge,
    idle_stops: Counter,
    expirations: Counter,
    time_to_running: Histogram,
}

/// Whether a flavor asks for a GPU (any extended resource named `*gpu*`).
pub fn flavor_has_gpu(flavor: &DevServerFlavor) -> bool {
    let Some(r) = flavor.spec.resources.as_ref() else {
        return false;
    };
    r.requests
        .iter()
        .chain(r.limits.iter())
        .flatten()
        .any(|(k, q)| k.contains("gpu") && q.0.trim() != "0")
}

impl DevServerMetrics {
    /// Creates the metrics and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let m = DevServerMetrics {
            servers: Family::default(),
            gpu_servers: Gauge::default(),
            idle_stops: Counter::default(),
            expirations: Counter::default(),
            time_to_running: Histogram::new([
                1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
        };
        metrics.register(
            "devserver_servers",
            "DevServers by phase and flavor",
            m.servers.clone(),
        );
        metrics.register(
            "devserver_gpu_servers",
            "Running DevServers whose flavor asks for a GPU",
            m.gpu_servers.clone(),
        );
        metrics.register(
            "devserver_idle_stops",
            "DevServers stopped because no SSH session was active for their idleTimeout",
            m.idle_stops.clone(),
        );
        metrics.register(
            "devserver_expirations",
            "DevServers stopped because their timeToLive ran out",
            m.expirations.clone(),
        );
        metrics.register(
            "devserver_time_to_running_seconds",
            "Time from a DevServer's creation to its first Running",
            m.time_to_running.clone(),
        );
        m
    }

    /// Sets the gauges from every known server and flavor.
    pub fn recount<'a>(
        &self,
        servers: impl IntoIterator<Item = &'a DevServer>,
        flavors: impl IntoIterator<Item = &'a DevServerFlavor>,
    ) {
        let gpu_flavors: Vec<String> = flavors
            .into_iter()
            .filter(|f| flavor_has_gpu(f))
            .filter_map(|f| f.metadata.name.clone())
            .collect();
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut gpu = 0;
        for s in servers {
            let status = s.status.clone().unwrap_or_default();
            let phase = status.phase.unwrap_or(DevServerPhase::Pending);
            let flavor = status
                .flavor
                .or_else(|| s.spec.flavor.clone())
                .unwrap_or_default();
            if phase == DevServerPhase::Running && gpu_flavors.contains(&flavor) {
                gpu += 1;
            }
            *counts.entry((phase.to_string(), flavor)).or_default() += 1;
        }
        // Series of phase/flavor pairs that no longer occur go to zero.
        self.servers.clear();
        for ((phase, flavor), n) in counts {
            self.servers
                .get_or_create(&PhaseFlavor { phase, flavor })
                .set(n);
        }
        self.gpu_servers.set(gpu);
    }

    pub fn idle_stopped(&self) {
        self.idle_stops.inc();
    }

    pub fn expired(&self) {
        self.expirations.inc();
    }

    pub fn running_after(&self, seconds: f64) {
        self.time_to_running.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(phase: &str, flavor: &str) -> DevServer {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServer",
            "metadata": {"name": "s"}, "spec": {},
            "status": {"phase": phase, "flavor": flavor}
        }))
        .unwrap()
    }

    #[test]
    fn servers_are_counted_by_phase_and_flavor_and_gpu() {
        let metrics = Metrics::new();
        let m = DevServerMetrics::register(&metrics);
        let gpu: DevServerFlavor = serde_yaml::from_str(include_str!(
            "../../../deploy/devserver-operator/samples/flavor-gpu-small.yaml"
        ))
        .unwrap();
        let cpu: DevServerFlavor = serde_yaml::from_str(include_str!(
            "../../../deploy/devserver-operator/samples/flavor-cpu-small.yaml"
        ))
        .unwrap();
        assert!(flavor_has_gpu(&gpu) && !flavor_has_gpu(&cpu));
        let servers = [
            server("Running", "gpu-small"),
            server("Running", "gpu-small"),
            server("Stopped", "gpu-small"),
            server("Running", "cpu-small"),
        ];
        m.recount(&servers, [&gpu, &cpu]);
        m.idle_stopped();
        m.running_after(3.0);
        let text = metrics.encode();
        for line in [
            "operator_devserver_servers{phase=\"Running\",flavor=\"gpu-small\"} 2",
            "operator_devserver_servers{phase=\"Stopped\",flavor=\"gpu-small\"} 1",
            "operator_devserver_gpu_servers 2",
            "operator_devserver_idle_stops_total 1",
            "operator_devserver_time_to_running_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        m.recount(&servers[3..], [&gpu, &cpu]);
        let text = metrics.encode();
        assert!(!text.contains("phase=\"Stopped\""), "{text}");
        assert!(text.contains("operator_devserver_gpu_servers 0"), "{text}");
    }
}
