//! For the operators' scale benchmarks (`benches/scale.rs`, `harness = false`):
//! the operator as a measured child process (memory from `/proc`, API writes
//! and reconciles from its own `/metrics`) and nodes with room for many pods.
//! Benchmarks print figures; nothing here asserts on speed.

use std::fmt::Debug;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Cluster, ClusterOptions, FakeNode};

/// `name` from the environment as a number, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default nodes plus pod capacity for `objects` pods (200 per extra node).
pub fn nodes(objects: u64) -> Vec<FakeNode> {
    let mut nodes = FakeNode::defaults();
    let extra = objects.div_ceil(200).max(1);
    for i in 0..extra {
        let mut n = FakeNode::new(&format!("kwok-bench-{i}"));
        n.pods = "250".into();
        n.cpu = "1000".into();
        n.memory = "4Ti".into();
        nodes.push(n);
    }
    nodes
}

/// `(VmHWM, VmRSS)` of `pid` in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// `GET /metrics` of the operator (blocking; the endpoint answers at once).
pub fn scrape(port: u16) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    out
}

/// Sum of the samples of `metric` whose labels contain any of `needles` (all when empty).
pub fn sum(text: &str, metric: &str, needles: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(metric))
        .filter(|l| needles.is_empty() || needles.iter().any(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub const WRITE_VERBS: [&str; 4] = [
    "verb=\"create\"",
    "verb=\"update\"",
    "verb=\"patch\"",
    "verb=\"delete\"",
];

/// What an operator's `/metrics` counted so far.
pub struct Counts {
    pub writes: u64,
    pub requests: u64,
    pub reconciles: u64,
}

/// API writes, all API requests and reconciles, from `operator-core`'s metrics.
pub fn counts(port: u16) -> Counts {
    let text = scrape(port);
    Counts {
        writes: sum(&text, "operator_api_requests_total", &WRITE_VERBS),
        requests: sum(&text, "operator_api_requests_total", &[]),
        reconciles: sum(&text, "operator_reconcile_total", &[]),
    }
}

/// Stops the operator on drop (also when the benchmark panics).
pub struct Operator(pub Child);

impl Drop for Operator {
    fn drop(&mut self) {
        // SIGTERM first: the operator shuts down cleanly. SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Operator {
    /// Runs `binary run` against `kubeconfig` with its metrics on a free
    /// loopback port, and waits until `/metrics` answers (then 2 s more, so
    /// start-up is over before memory is read). Returns the process and the
    /// metrics port.
    pub fn start(binary: &Path, kubeconfig: &Path, env: &[(&str, &str)]) -> (Operator, u16) {
        let port = crate::process::free_port().expect("a free loopback port");
        let operator = Operator(
            Command::new(binary)
                .arg("run")
                .env("KUBECONFIG", kubeconfig)
                .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
                .env("LOG_LEVEL", "warn")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display())),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not serve /metrics within 60 s",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        (operator, port)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Creates the objects `make(0..n)` through `api`, 32 requests at a time;
/// returns how long that took.
pub async fn create_all<K>(api: &Api<K>, n: u64, make: impl Fn(u64) -> K) -> Duration
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let object = make(i);
            async move { api.create(&PostParams::default(), &object).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("every object is accepted");
    started.elapsed()
}

/// When half and all of the objects were done, counted from the start.
pub struct Progress {
    pub half: Duration,
    pub all: Duration,
}

/// Lists `api` every second until `n` objects are `done` (`what` names that
/// state in the progress lines printed every 30 s with the operator's
/// memory). Panics after `timeout`.
pub async fn wait_all<K>(
    api: &Api<K>,
    n: u64,
    what: &str,
    operator_pid: u32,
    started: Instant,
    timeout: Duration,
    done: impl Fn(&K) -> bool,
) -> Progress
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    let mut last_print = Instant::now();
    let mut half = None;
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .expect("listing the objects");
        let count = list.items.iter().filter(|o| done(o)).count() as u64;
        if half.is_none() && count * 2 >= n {
            half = Some(started.elapsed());
        }
        if count >= n {
            let all = started.elapsed();
            return Progress {
                half: half.unwrap_or(all),
                all,
            };
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            let (hwm, rss) = memory_mib(operator_pid);
            println!(
                "  {:>5.0}s: {count}/{n} {what}, operator RSS {rss:.1} MiB (peak {hwm:.1})",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        assert!(
            started.elapsed() < timeout,
            "only {count}/{n} {what} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What the operator did while nothing changed.
pub struct Idle {
    pub seconds: u64,
    pub writes: u64,
    pub requests: u64,
    pub reconciles: u64,
}

/// Counts the operator's API writes, requests and reconciles during `idle`
/// (after 5 s for in-flight work to settle).
pub fn measure_idle(metrics_port: u16, idle: Duration) -> Idle {
    std::thread::sleep(Duration::from_secs(5));
    let before = counts(metrics_port);
    std::thread::sleep(idle);
    let after = counts(metrics_port);
    Idle {
        seconds: idle.as_secs(),
        writes: after.writes - before.writes,
        requests: after.requests - before.requests,
        reconciles: after.reconciles - before.reconciles,
    }
}

impl std::fmt::Display for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "during {:>3} s idle: API writes {:>3}, API requests {:>3}, reconciles {:>3}",
            self.seconds, self.writes, self.requests, self.reconciles
        )
    }
}

/// A scale benchmark of one operator: `count` objects created at once in a
/// fresh cluster, the time until all of them are `done`, the operator's
/// memory, and what it does while idle afterwards.
pub struct Scale<K> {
    /// The operator's binary (`env!("CARGO_BIN_EXE_<name>")`).
    pub binary: &'static str,
    /// Its CRD directory under `deploy/`.
    pub crd_dir: std::path::PathBuf,
    /// Plural kind for the report (`Workshops`).
    pub kind: &'static str,
    /// The state waited for (`Ready`).
    pub state: &'static str,
    pub count: u64,
    pub idle: Duration,
    pub timeout: Duration,
    /// Objects the benchmarked ones need first (YAML, server-side applied).
    pub prerequisites: String,
    /// Run before the operator starts, on the benchmark's runtime (tasks it
    /// spawns keep running), with the client and the count.
    pub prepare: Option<Prepare>,
    /// Extra environment of the operator process.
    pub operator_env: Vec<(&'static str, String)>,
    pub make: fn(u64) -> K,
    pub done: fn(&K) -> bool,
}

/// See [`Scale::prepare`].
pub type Prepare = Box<dyn FnOnce(kube::Client, u64) -> futures::future::BoxFuture<'static, ()>>;

/// The namespace the benchmarked objects are created in.
pub const NAMESPACE: &str = "bench";

impl<K> Scale<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    /// Runs the benchmark and prints its figures.
    pub fn run(self) {
        let n = self.count;
        let started = Instant::now();
        let cluster = Cluster::start(ClusterOptions {
            nodes: nodes(n),
            start_timeout: Duration::from_secs(300),
            ..ClusterOptions::default()
        })
        .expect("the local cluster starts (ENVTEST_BIN_DIR=$(hack/control-plane.sh))");
        println!(
            "cluster up in {:.1}s ({} KWOK nodes)",
            started.elapsed().as_secs_f64(),
            nodes(n).len()
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt.block_on(cluster.client()).unwrap();
        rt.block_on(async {
            crate::manifest::install_crd_dir(&client, &self.crd_dir)
                .await
                .expect("installing the CRDs");
            let ns = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n");
            crate::manifest::apply_yaml(&client, &ns, NAMESPACE, "bench")
                .await
                .expect("creating the namespace");
            if !self.prerequisites.is_empty() {
                crate::manifest::apply_yaml(&client, &self.prerequisites, NAMESPACE, "bench")
                    .await
                    .expect("applying the prerequisites");
            }
        });
        if let Some(prepare) = self.prepare {
            rt.block_on(prepare(client.clone(), n));
        }

        let env: Vec<(&str, &str)> = self
            .operator_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let (operator, port) = Operator::start(Path::new(self.binary), cluster.kubeconfig(), &env);
        let (_, rss_start) = memory_mib(operator.pid());

        let api: Api<K> = Api::namespaced(client.clone(), NAMESPACE);
        let t0 = Instant::now();
        let created = rt.block_on(create_all(&api, n, self.make));
        println!("created {n} {} in {:.1}s", self.kind, created.as_secs_f64());
        let progress = rt.block_on(wait_all(
            &api,
            n,
            self.state,
            operator.pid(),
            t0,
            self.timeout,
            self.done,
        ));
        let (hwm_done, rss_done) = memory_mib(operator.pid());
        let at_done = counts(port);
        // Nothing changes now, so the operator should not write anything.
        let idle = measure_idle(port, self.idle);
        let (hwm_end, rss_end) = memory_mib(operator.pid());

        let state = self.state;
        let row = |label: String, value: String| println!("  {label:<31}{value}");
        println!();
        println!(
            "{} scale benchmark ({n} {})",
            Path::new(self.binary)
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            self.kind
        );
        row(
            format!("all {state} after"),
            format!(
                "{:>8.1} s (half after {:.1} s, creation took {:.1} s)",
                progress.all.as_secs_f64(),
                progress.half.as_secs_f64(),
                created.as_secs_f64()
            ),
        );
        row(
            "operator RSS at start".into(),
            format!("{rss_start:>8.1} MiB"),
        );
        row(
            format!("operator RSS when all {state}"),
            format!("{rss_done:>8.1} MiB (peak so far {hwm_done:.1} MiB)"),
        );
        row(
            "operator RSS after idle".into(),
            format!("{rss_end:>8.1} MiB (peak {hwm_end:.1} MiB)"),
        );
        row(
            format!("API requests until all {state}"),
            format!(
                "{:>8} ({} writes), reconciles {}",
                at_done.requests, at_done.writes, at_done.reconciles
            ),
        );
        println!("  {idle}");
        drop(operator);
        drop(cluster);
    }
}
