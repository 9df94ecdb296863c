//! The operator's own Prometheus metrics, served next to operator-core's on `/metrics` (all with
//! the `operator_` prefix):
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `operator_workshops{phase}` | gauge | Workshops by `status.phase` (no status yet: `Pending`) |
//! | `operator_workshop_participants_ready` | gauge | sum of `status.readyParticipants` |
//! | `operator_workshop_participants` | gauge | sum of `status.totalParticipants` |
//! | `operator_workshop_time_to_ready_seconds` | histogram | from the start of provisioning (creation, or the pre-warm time) to the first time every session was ready |
//! | `operator_workshop_expirations_total` | counter | workshops whose sessions were stopped at expiry |
//!
//! The gauges are computed from the controller's cache when scraped, not kept up to date by
//! the reconciler: a deleted Workshop (which is never reconciled again) drops out of them at
//! once, and they cost nothing between scrapes.

use std::fmt;

use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::crd::{Workshop, WorkshopPhase};

/// Every phase, so each series exists (at 0) from the first scrape.
pub const PHASES: [WorkshopPhase; 7] = [
    WorkshopPhase::Pending,
    WorkshopPhase::Creating,
    WorkshopPhase::Ready,
    WorkshopPhase::Running,
    WorkshopPhase::Terminating,
    WorkshopPhase::Failed,
    WorkshopPhase::Expired,
];

/// Buckets of the time-to-ready histogram, in seconds (image pulls and scheduling of a class
/// take seconds to tens of minutes).
pub const TIME_TO_READY_BUCKETS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];

/// The metrics the reconciler updates. Cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct WorkshopMetrics {
    pub time_to_ready: Histogram,
    pub expirations: Counter,
}

impl Default for WorkshopMetrics {
    fn default() -> Self {
        Self {
            time_to_ready: Histogram::new(TIME_TO_READY_BUCKETS),
            expirations: Counter::default(),
        }
    }
}

impl WorkshopMetrics {
    /// Registers these metrics and the cache-derived gauges over `store` in `metrics`.
    pub fn register(
        &self,
        metrics: &operator_core::metrics::Metrics,
        store: Store<DeserializeGuard<Workshop>>,
    ) {
        metrics.register(
            "workshops",
            "Workshops by phase",
            CacheGauge {
                store: store.clone(),
                kind: GaugeKind::ByPhase,
            },
        );
        metrics.register(
            "workshop_participants_ready",
            "Participants whose RStudio session is ready, over every workshop",
            CacheGauge {
                store: store.clone(),
                kind: GaugeKind::ParticipantsReady,
            },
        );
        metrics.register(
            "workshop_participants",
            "Participants, over every workshop",
            CacheGauge {
                store,
                kind: GaugeKind::Participants,
            },
        );
        metrics.register(
            "workshop_time_to_ready_seconds",
            "Seconds from the start of provisioning to the first time every session of a workshop was ready",
            self.time_to_ready.clone(),
        );
        metrics.register(
            "workshop_expirations",
            "Workshops whose sessions were stopped at expiry",
            self.expirations.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Copy, Debug)]
enum GaugeKind {
    ByPhase,
    ParticipantsReady,
    Participants,
}

/// A gauge computed from the Workshops in the controller's cache at scrape time.
#[derive(Clone)]
struct CacheGauge {
    store: Store<DeserializeGuard<Workshop>>,
    kind: GaugeKind,
}

impl fmt::Debug for CacheGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheGauge")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl EncodeMetric for CacheGauge {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        let workshops = self.store.state();
        let decoded = workshops.iter().filter_map(|g| g.0.as_ref().ok());
        match self.kind {
            GaugeKind::ByPhase => by_phase(decoded).encode(encoder),
            GaugeKind::ParticipantsReady => sum(decoded, |s| s.ready_participants).encode(encoder),
            GaugeKind::Participants => sum(decoded, |s| s.total_participants).encode(encoder),
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Workshops counted by phase (pure, for the gauge and its test).
fn by_phase<'a>(workshops: impl Iterator<Item = &'a Workshop>) -> Family<PhaseLabels, Gauge> {
    let family = Family::<PhaseLabels, Gauge>::default();
    let labels = |p: WorkshopPhase| PhaseLabels {
        phase: p.as_str().to_string(),
    };
    for p in PHASES {
        drop(family.get_or_create(&labels(p)));
    }
    for ws in workshops {
        let phase = ws
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(WorkshopPhase::Pending);
        family.get_or_create(&labels(phase)).inc();
    }
    family
}

fn sum<'a>(
    workshops: impl Iterator<Item = &'a Workshop>,
    field: impl Fn(&crate::crd::WorkshopStatus) -> Option<i32>,
) -> Gauge {
    let total: i64 = workshops
        .filter_map(|ws| ws.status.as_ref().and_then(&field))
        .map(i64::from)
        .sum();
    let g = Gauge::default();
    g.set(total);
    g
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;
    use serde_json::json;

    use super::*;
    use crate::build::test_util::workshop;

    fn with_status(status: serde_json::Value) -> Workshop {
        let mut ws = workshop(json!({}));
        ws.status = Some(serde_json::from_value(status).unwrap());
        ws
    }

    fn encode(name: &str, metric: impl prometheus_client::registry::Metric) -> String {
        let mut r = Registry::default();
        r.register(name, "help", metric);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn phases_and_participants_are_counted() {
        let all = [
            with_status(json!({"phase": "Ready", "readyParticipants": 3, "totalParticipants": 3})),
            with_status(
                json!({"phase": "Creating", "readyParticipants": 1, "totalParticipants": 4}),
            ),
            with_status(json!({"phase": "Ready", "readyParticipants": 2, "totalParticipants": 2})),
            workshop(json!({})),
        ];
        let text = encode("workshops", by_phase(all.iter()));
        for line in [
            "workshops{phase=\"Ready\"} 2",
            "workshops{phase=\"Creating\"} 1",
            "workshops{phase=\"Pending\"} 1",
            "workshops{phase=\"Expired\"} 0",
            "workshops{phase=\"Terminating\"} 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(encode("ready", sum(all.iter(), |s| s.ready_participants)).contains("ready 6\n"));
        assert!(encode("total", sum(all.iter(), |s| s.total_participants)).contains("total 9\n"));
    }
}
