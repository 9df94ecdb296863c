//! For the operators' scale benchmarks (`benches/scale.rs`, `harness = false`):
//! the operator as a measured child process (memory from `/proc`, API writes
//! and reconciles from its own `/metrics`) and nodes with room for many pods.
//! Benchmarks print figures; nothing here asserts on speed.

use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::FakeNode;

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
