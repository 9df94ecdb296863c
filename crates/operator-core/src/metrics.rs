//! Prometheus metrics shared by every operator.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `operator_reconcile_total` | `controller` | reconciles finished |
//! | `operator_reconcile_errors_total` | `controller`, `reason` | reconciles that failed, by the error's stable `reason()` |
//! | `operator_reconcile_duration_seconds` | `controller` | histogram of reconcile durations |
//! | `operator_api_requests_total` | `verb`, `code` | Kubernetes API requests by verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, `other`) and HTTP status (`200`, `409`, `429`, ...; `error` for transport errors) |
//!
//! API requests are counted by [`ApiMetricsLayer`], a tower layer for the kube client's HTTP
//! stack:
//!
//! ```no_run
//! # async fn f(config: kube::Config) -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = operator_core::metrics::Metrics::new();
//! let client = kube::client::ClientBuilder::try_from(config)?
//!     .with_layer(&metrics.api_layer())
//!     .build();
//! # Ok(()) }
//! ```
//!
//! [`Metrics::encode`] renders the OpenMetrics text format (which Prometheus scrapes natively);
//! serve it with [`CONTENT_TYPE`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, Uri};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram buckets for reconcile durations, in seconds.
const RECONCILE_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    verb: String,
    code: String,
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

struct Inner {
    // Behind a lock so an operator can add its own metrics once the runtime
    // has created the registry (see `Metrics::register`).
    registry: std::sync::Mutex<Registry>,
    // Metrics whose names an operator's documents fix (no `operator_`
    // prefix), see `Metrics::register_unprefixed`.
    unprefixed: std::sync::Mutex<Registry>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    api_requests: Family<ApiLabels, Counter>,
}

/// The operator's metrics registry. Cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The standard metrics.
    pub fn new() -> Self {
        Self::with_extra_metrics(|_| {})
    }

    /// The standard metrics plus whatever `register` adds to the registry (an operator's own
    /// metrics; they get the `operator_` prefix too).
    pub fn with_extra_metrics(register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations = Family::new_with_constructor(reconcile_histogram as fn() -> Histogram);
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciles finished, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and error reason",
            errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile, by controller",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "api_requests",
            "Kubernetes API requests, by verb and HTTP status code (error: no response)",
            api_requests.clone(),
        );
        register(&mut registry);
        Metrics {
            inner: Arc::new(Inner {
                registry: std::sync::Mutex::new(registry),
                unprefixed: std::sync::Mutex::new(Registry::default()),
                reconciles,
                errors,
                durations,
                api_requests,
            }),
        }
    }

    /// Creates the series of `controller` at zero, so dashboards and `rate()` see it before the
    /// first reconcile.
    pub fn init_controller(&self, controller: &str) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        drop(self.inner.reconciles.get_or_create(&labels));
        drop(self.inner.durations.get_or_create(&labels));
    }

    /// Records one finished reconcile: `Err(reason)` with the error's stable, low-cardinality
    /// reason also counts an error.
    pub fn observe_reconcile(
        &self,
        controller: &str,
        duration: Duration,
        result: Result<(), &str>,
    ) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.inner.reconciles.get_or_create(&labels).inc();
        self.inner
            .durations
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        if let Err(reason) = result {
            self.inner
                .errors
                .get_or_create(&ErrorLabels {
                    controller: controller.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// Starts timing a reconcile; call [`ReconcileTimer::finish`] with the result. A timer dropped
    /// without `finish` (a cancelled reconcile) records an error with reason `Cancelled`.
    pub fn reconcile_timer(&self, controller: &str) -> ReconcileTimer {
        ReconcileTimer {
            metrics: self.clone(),
            controller: controller.to_owned(),
            start: Instant::now(),
            finished: false,
        }
    }

    /// Counts one API request.
    pub fn record_api_request(&self, verb: &str, code: &str) {
        self.inner
            .api_requests
            .get_or_create(&ApiLabels {
                verb: verb.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// A tower layer that counts the kube client's requests into these metrics.
    pub fn api_layer(&self) -> ApiMetricsLayer {
        ApiMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Adds an operator's own metric (served with the `operator_` prefix).
    /// Metric handles are cheap clones: keep one and update it from the
    /// reconciler.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry().register(name, help, metric);
    }

    /// Adds an operator's own metric under exactly `name` (no `operator_`
    /// prefix), for metrics whose names an original project documented.
    pub fn register_unprefixed(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.inner
            .unprefixed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .register(name, help, metric);
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// All metrics in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let unprefixed = self
            .inner
            .unprefixed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry())
            .and_then(|()| {
                prometheus_client::encoding::text::encode_registry(&mut out, &unprefixed)
            })
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out))
            .expect("encoding into a String cannot fail");
        out
    }
}

/// Times one reconcile; see [`Metrics::reconcile_timer`].
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: Metrics,
    controller: String,
    start: Instant,
    finished: bool,
}

impl ReconcileTimer {
    /// Records the reconcile with its result (`Err(reason)` for failures).
    pub fn finish(mut self, result: Result<(), &str>) {
        self.finished = true;
        self.metrics
            .observe_reconcile(&self.controller, self.start.elapsed(), result);
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.observe_reconcile(
                &self.controller,
                self.start.elapsed(),
                Err("Cancelled"),
            );
        }
    }
}

/// The Kubernetes verb of a request, from its method, path and `watch` query parameter:
/// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection` or `other`.
pub fn request_verb(method: &Method, uri: &Uri) -> &'static str {
    let path = uri.path();
    match *method {
        Method::GET if is_watch(uri) => "watch",
        Method::GET if is_collection(path) => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if is_collection(path) => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

fn is_watch(uri: &Uri) -> bool {
    let query_watch = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "watch=true" | "watch=1" | "watch=True"))
    });
    // The deprecated `/api/v1/watch/...` form.
    let path_watch = resource_segments(uri.path()).is_some_and(|s| s.first() == Some(&"watch"));
    query_watch || path_watch
}

/// The segments after `/api/<version>` or `/apis/<group>/<version>`; `None` for other paths
/// (discovery, `/version`, `/openapi/...`).
fn resource_segments(path: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["api", _version, rest @ ..] => Some(rest.to_vec()),
        ["apis", _group, _version, rest @ ..] => Some(rest.to_vec()),
        _ => None,
    }
}

/// Whether `path` names a collection (`.../pods`) rather than an object or subresource.
fn is_collection(path: &str) -> bool {
    let Some(rest) = resource_segments(path) else {
        return false;
    };
    let rest = match rest.as_slice() {
        // `namespaces/<ns>/status` and `/finalize` are subresources of a Namespace.
        ["namespaces", _ns, "status" | "finalize"] => return false,
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    rest.len() == 1
}

/// Tower layer counting Kubernetes API requests by verb and status code; see the module docs.
#[derive(Clone, Debug)]
pub struct ApiMetricsLayer {
    metrics: Metrics,
}

impl ApiMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        ApiMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for ApiMetricsLayer {
    type Service = ApiMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service produced by [`ApiMetricsLayer`].
#[derive(Clone, Debug)]
pub struct ApiMetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for ApiMetricsService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ApiMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let verb = request_verb(req.method(), req.uri());
        ApiMetricsFuture {
            inner: Box::pin(self.inner.call(req)),
            metrics: self.metrics.clone(),
            verb,
        }
    }
}

/// The response future of [`ApiMetricsService`]; records the request when it completes.
pub struct ApiMetricsFuture<F> {
    inner: Pin<Box<F>>,
    metrics: Metrics,
    verb: &'static str,
}

impl<F> std::fmt::Debug for ApiMetricsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetricsFuture")
            .field("verb", &self.verb)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ApiMetricsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        match &result {
            Ok(response) => this
                .metrics
                .record_api_request(this.verb, response.status().as_str()),
            Err(_) => this.metrics.record_api_request(this.verb, "error"),
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::StatusCode;
    use kube::client::Body;
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    fn req(method: Method, uri: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn operators_register_their_own_metrics_after_start() {
        let metrics = Metrics::new();
        let workshops =
            Family::<ControllerLabels, prometheus_client::metrics::gauge::Gauge>::default();
        metrics.register("workshops", "Workshops by phase", workshops.clone());
        workshops
            .get_or_create(&ControllerLabels {
                controller: "Ready".into(),
            })
            .set(3);
        let text = metrics.encode();
        assert!(
            text.contains("operator_workshops{controller=\"Ready\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# HELP operator_workshops Workshops by phase."),
            "{text}"
        );
    }

    #[test]
    fn unprefixed_metrics_keep_their_names() {
        let metrics = Metrics::new();
        let vms = Family::<ControllerLabels, prometheus_client::metrics::gauge::Gauge>::default();
        metrics.register_unprefixed("novacron_vm", "VMs", vms.clone());
        vms.get_or_create(&ControllerLabels {
            controller: "x".into(),
        })
        .set(2);
        let text = metrics.encode();
        assert!(text.contains("novacron_vm{controller=\"x\"} 2"), "{text}");
        assert!(!text.contains("operator_novacron"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn verbs_from_requests() {
        let cases = [
            (Method::GET, "/api/v1/namespaces/ns/pods", "list"),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods?labelSelector=a%3Db",
                "list",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods?watch=true&resourceVersion=1",
                "watch",
            ),
            (Method::GET, "/api/v1/watch/namespaces/ns/pods", "watch"),
            (Method::GET, "/api/v1/namespaces/ns/pods/p", "get"),
            (Method::GET, "/api/v1/namespaces/ns/pods/p/log", "get"),
            (Method::GET, "/api/v1/pods", "list"),
            (Method::GET, "/api/v1/namespaces", "list"),
            (Method::GET, "/api/v1/namespaces/ns", "get"),
            (Method::GET, "/api/v1/namespaces/ns/status", "get"),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/ns/deployments",
                "list",
            ),
            (
                Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
                "get",
            ),
            (Method::GET, "/apis/orchestra.io/v1/workshops", "list"),
            (
                Method::GET,
                "/apis/orchestra.io/v1/workshops?watch=1",
                "watch",
            ),
            (Method::GET, "/apis", "get"),
            (Method::GET, "/api/v1", "get"),
            (Method::GET, "/version", "get"),
            (Method::POST, "/api/v1/namespaces/ns/events", "create"),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
                "update",
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/ns/deployments/d?fieldManager=x",
                "patch",
            ),
            (
                Method::PATCH,
                "/apis/orchestra.io/v1/namespaces/ns/workshops/w/status",
                "patch",
            ),
            (Method::DELETE, "/api/v1/namespaces/ns/pods/p", "delete"),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/pods",
                "deletecollection",
            ),
            (Method::HEAD, "/api/v1/pods", "other"),
        ];
        for (method, uri, verb) in cases {
            let r = req(method.clone(), uri);
            assert_eq!(request_verb(r.method(), r.uri()), verb, "{method} {uri}");
        }
    }

    #[test]
    fn reconcile_metrics_text() {
        let metrics = Metrics::new();
        metrics.init_controller("snapshot");
        metrics.observe_reconcile("workspace", Duration::from_millis(20), Ok(()));
        metrics.observe_reconcile("workspace", Duration::from_secs(3), Err("InvalidSpec"));
        metrics.reconcile_timer("workspace").finish(Ok(()));
        drop(metrics.reconcile_timer("workspace"));

        let text = metrics.encode();
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# HELP operator_reconcile Reconciles finished, by controller.",
            "# TYPE operator_reconcile counter",
            r#"operator_reconcile_total{controller="workspace"} 4"#,
            r#"operator_reconcile_total{controller="snapshot"} 0"#,
            "# TYPE operator_reconcile_errors counter",
            r#"operator_reconcile_errors_total{controller="workspace",reason="InvalidSpec"} 1"#,
            r#"operator_reconcile_errors_total{controller="workspace",reason="Cancelled"} 1"#,
            "# TYPE operator_reconcile_duration_seconds histogram",
            "# UNIT operator_reconcile_duration_seconds seconds",
            r#"operator_reconcile_duration_seconds_count{controller="workspace"} 4"#,
            r#"operator_reconcile_duration_seconds_bucket{le="0.025",controller="workspace"} 3"#,
            r#"operator_reconcile_duration_seconds_bucket{le="5.0",controller="workspace"} 4"#,
            r#"operator_reconcile_duration_seconds_bucket{le="+Inf",controller="workspace"} 4"#,
            r#"operator_reconcile_duration_seconds_count{controller="snapshot"} 0"#,
            "# EOF",
        ] {
            assert!(
                lines.contains(&expected),
                "missing {expected:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"controller="snapshot",reason"#),
            "no error series without errors:\n{text}"
        );
    }

    #[tokio::test]
    async fn layer_counts_requests_by_verb_and_code() {
        let metrics = Metrics::new();
        let inner = service_fn(|req: Request<Body>| async move {
            let status = if req.uri().path().ends_with("/throttled") {
                StatusCode::TOO_MANY_REQUESTS
            } else if req.uri().path().ends_with("/broken") {
                return Err("connection reset");
            } else {
                StatusCode::OK
            };
            Ok(Response::builder()
                .status(status)
                .body(String::new())
                .unwrap())
        });
        let svc = metrics.api_layer().layer(inner);

        let calls = [
            (Method::GET, "/api/v1/namespaces/ns/configmaps", 200),
            (
                Method::GET,
                "/api/v1/namespaces/ns/configmaps?watch=true",
                200,
            ),
            (Method::GET, "/api/v1/namespaces/ns/configmaps/a", 200),
            (
                Method::GET,
                "/api/v1/namespaces/ns/configmaps/throttled",
                429,
            ),
            (Method::PATCH, "/api/v1/namespaces/ns/configmaps/a", 200),
            (
                Method::PATCH,
                "/api/v1/namespaces/ns/configmaps/throttled",
                429,
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/ns/configmaps/throttled",
                429,
            ),
        ];
        for (method, uri, code) in calls {
            let res = svc.clone().oneshot(req(method, uri)).await.unwrap();
            assert_eq!(res.status().as_u16(), code);
        }
        let err = svc
            .clone()
            .oneshot(req(
                Method::DELETE,
                "/api/v1/namespaces/ns/configmaps/broken",
            ))
            .await;
        assert_eq!(err.unwrap_err(), "connection reset");

        let text = metrics.encode();
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# TYPE operator_api_requests counter",
            r#"operator_api_requests_total{verb="list",code="200"} 1"#,
            r#"operator_api_requests_total{verb="watch",code="200"} 1"#,
            r#"operator_api_requests_total{verb="get",code="200"} 1"#,
            r#"operator_api_requests_total{verb="get",code="429"} 1"#,
            r#"operator_api_requests_total{verb="patch",code="200"} 1"#,
            r#"operator_api_requests_total{verb="patch",code="429"} 2"#,
            r#"operator_api_requests_total{verb="delete",code="error"} 1"#,
        ] {
            assert!(
                lines.contains(&expected),
                "missing {expected:?} in:\n{text}"
            );
        }
    }

    /// The layer fits kube's `ClientBuilder::with_layer`, and a real `kube::Client` request is
    /// counted.
    #[tokio::test]
    async fn layer_fits_the_kube_client_builder() {
        use k8s_openapi::api::core::v1::ConfigMap;

        let metrics = Metrics::new();
        let inner = service_fn(|req: Request<Body>| async move {
            let body = if req.uri().path().ends_with("/configmaps/a") {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "a", "namespace": "ns"},
                    "data": {"k": "v"}
                })
            } else {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Status",
                    "status": "Failure",
                    "reason": "TooManyRequests",
                    "message": "slow down",
                    "code": 429
                })
            };
            let status = body.get("code").and_then(|c| c.as_u64()).unwrap_or(200) as u16;
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            )
        });
        let client = kube::client::ClientBuilder::new(inner, "ns")
            .with_layer(&metrics.api_layer())
            .build();
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "ns");
        let cm = api.get("a").await.unwrap();
        assert_eq!(cm.data.unwrap()["k"], "v");
        assert!(api.get("b").await.is_err());

        let text = metrics.encode();
        assert!(
            text.contains(r#"operator_api_requests_total{verb="get",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"operator_api_requests_total{verb="get",code="429"} 1"#),
            "{text}"
        );
    }
}
