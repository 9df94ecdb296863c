//! Cold and warm start times of the local cluster, printed (not asserted).
//!
//! `cargo bench -p envtest --bench cluster_start` (`ENVTEST_BENCH_RUNS`, default 3).
//! The first start is "cold": the page cache is dropped first when the
//! machine allows it (root), so binaries are read from disk.

use std::time::Instant;

use envtest::{Cluster, ClusterOptions};

fn drop_page_cache() -> bool {
    // Writing 3 frees page cache, dentries and inodes; needs root.
    std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn main() {
    let runs: usize = std::env::var("ENVTEST_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dropped = drop_page_cache();
    println!(
        "cluster start (etcd, kube-apiserver, controller-manager, scheduler, KWOK, 3 nodes Ready); page cache dropped before run 1: {dropped}"
    );
    println!(
        "{:<6} {:>8} {:>10} {:>12} {:>12} {:>9} {:>8}",
        "run", "etcd", "apiserver", "controllers", "nodes-ready", "total", "stop"
    );
    for run in 1..=runs {
        let cluster = Cluster::start(ClusterOptions::default()).expect("cluster starts");
        let t = cluster.info().timings.clone();
        let stop = Instant::now();
        drop(cluster);
        let label = if run == 1 { "cold" } else { "warm" };
        println!(
            "{:<6} {:>7.2}s {:>9.2}s {:>11.2}s {:>11.2}s {:>8.2}s {:>7.2}s",
            format!("{run} {label}"),
            t.etcd.as_secs_f64(),
            t.apiserver.as_secs_f64(),
            t.controllers.as_secs_f64(),
            t.nodes_ready.as_secs_f64(),
            t.total.as_secs_f64(),
            stop.elapsed().as_secs_f64()
        );
    }
}
