//! `envtest up`: start the local cluster, optionally install CRDs, run
//! operator binaries against it and apply manifests, then keep everything
//! running until Ctrl-C.

mod readiness;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use envtest::process::Component;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

#[derive(Parser)]
#[command(
    name = "envtest",
    version,
    about = "A real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster, print how to use it, and stop it on Ctrl-C.
    Up {
        /// Also copy the admin kubeconfig here (e.g. .demo/kubeconfig).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Apply every YAML file of this directory (CRDs) and wait until established. Repeatable.
        #[arg(long)]
        install: Vec<PathBuf>,
        /// Run this operator binary against the cluster. Repeatable.
        #[arg(long)]
        run: Vec<PathBuf>,
        /// Apply every YAML file of this directory into `default` after the operators start. Repeatable.
        #[arg(long)]
        apply: Vec<PathBuf>,
        /// How long to wait for the applied objects to become ready before printing where they stand.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        /// Add this many large GPU nodes (8 GPUs, 96 CPUs, 1 TiB each) to the default nodes.
        #[arg(long, default_value_t = 0)]
        large_gpu_nodes: u32,
        /// Also create this StorageClass, provisioned by KWOK like the default one. Repeatable.
        #[arg(long = "storage-class")]
        storage_classes: Vec<String>,
        /// Extra lines to print under "try" once everything is up. Repeatable.
        #[arg(long)]
        hint: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let Command::Up {
        kubeconfig,
        install,
        run,
        apply,
        wait,
        hint,
        storage_classes,
        large_gpu_nodes,
    } = Cli::parse().command;
    let mut nodes = envtest::kwok::FakeNode::defaults();
    nodes.extend(
        (0..large_gpu_nodes)
            .map(|i| envtest::kwok::FakeNode::large_gpu(&format!("kwok-gpu-large-{i}"))),
    );
    eprintln!("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK...");
    let cluster = envtest::Cluster::start(envtest::ClusterOptions {
        nodes,
        storage_classes,
        ..Default::default()
    })?;
    let info = cluster.info().clone();
    let kubeconfig = match kubeconfig {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&info.kubeconfig, &path)?;
            std::fs::canonicalize(path)?
        }
        None => info.kubeconfig.clone(),
    };
    let log_dir = info.dir.clone().unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(cluster.client())?;

    let mut installed_groups = std::collections::BTreeSet::new();
    for dir in &install {
        let names: Vec<String> = rt
            .block_on(apply_dir(&client, dir, &Filter::All))?
            .into_iter()
            .map(|o| o.metadata.name.unwrap_or_default())
            .collect();
        installed_groups.extend(
            names
                .iter()
                .filter_map(|n| n.split_once('.').map(|(_, g)| g.to_string())),
        );
        rt.block_on(envtest::manifest::wait_crds_established(
            &client,
            &names,
            std::time::Duration::from_secs(30),
        ))?;
        eprintln!("installed {} CRDs from {}", names.len(), dir.display());
    }
    let mut operators = Vec::new();
    for binary in &run {
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("operator")
            .to_string();
        let port = envtest::process::free_port()?;
        // SAFETY: single-threaded at this point; the children inherit it.
        unsafe {
            std::env::set_var("KUBECONFIG", &kubeconfig);
        }
        let args = vec![
            "run".to_string(),
            format!("--metrics-addr=127.0.0.1:{port}"),
        ];
        let binary = std::fs::canonicalize(binary)
            .map_err(|e| anyhow::anyhow!("operator binary {}: {e}", binary.display()))?;
        let component = Component::start(&name, &binary, &args, &log_dir)?;
        eprintln!(
            "running {name} (metrics on 127.0.0.1:{port}, log {})",
            component.log.display()
        );
        operators.push(component);
    }
    // Samples: the operators' own kinds, namespaced objects and the
    // PersistentVolumes they bind to; StorageClasses (a cloud provisioner,
    // a second default) would change how the demo cluster itself works.
    let filter = Filter::SamplesFor(installed_groups.clone());
    let mut applied = Vec::new();
    for dir in &apply {
        let objects = rt.block_on(apply_dir(&client, dir, &filter))?;
        let names: Vec<String> = objects
            .iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect();
        eprintln!("applied {} from {}", names.join(", "), dir.display());
        applied.extend(objects);
    }
    // The operators' own objects: wait until they are up (or the time is
    // over) and show where each stands.
    applied.retain(|o| {
        o.types.as_ref().is_some_and(|t| {
            installed_groups.contains(t.api_version.split('/').next().unwrap_or(""))
        })
    });
    let standings = if applied.is_empty() {
        Vec::new()
    } else {
        eprintln!(
            "waiting up to {} for {} objects to become ready...",
            humantime::format_duration(wait),
            applied.len()
        );
        rt.block_on(readiness::wait_until_up(&client, &applied, wait))?
    };

    // Listen for Ctrl-C (and SIGTERM) before saying it stops us: a signal
    // that arrives before the first poll of a lazily installed handler
    // would kill the process with the cluster still running.
    let (mut interrupt, mut terminate) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        anyhow::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let nodes = rt.block_on(Api::<Node>::all(client.clone()).list(&ListParams::default()))?;
    println!();
    println!(
        "cluster ready in {:.1}s at {}",
        info.timings.total.as_secs_f64(),
        info.server
    );
    println!(
        "{:<14} {:<6} {:>5} {:>8} {:>5}",
        "NODE", "READY", "CPU", "MEMORY", "GPUS"
    );
    for n in &nodes.items {
        let status = n.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let alloc = status.allocatable.unwrap_or_default();
        let get = |k: &str| {
            alloc
                .get(k)
                .map(|q| q.0.clone())
                .unwrap_or_else(|| "0".into())
        };
        println!(
            "{:<14} {:<6} {:>5} {:>8} {:>5}",
            n.metadata.name.clone().unwrap_or_default(),
            ready,
            get("cpu"),
            get("memory"),
            get("nvidia.com/gpu")
        );
    }
    if !standings.is_empty() {
        println!();
        let ready = standings.iter().filter(|s| s.ready).count();
        println!("{ready} of {} objects ready:", standings.len());
        print!("{}", readiness::table(&standings));
    }
    println!();
    println!("try:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes");
    if !install.is_empty() {
        println!("  kubectl get crds");
    }
    for line in &hint {
        println!("  {line}");
    }
    println!();
    println!("component logs: {}", log_dir.display());
    println!("press Ctrl-C to stop");
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {
                    for op in operators.iter_mut() {
                        if let Err(e) = op.check_alive() {
                            eprintln!("warning: {e}");
                        }
                    }
                    operators.retain_mut(|op| op.check_alive().is_ok());
                }
            }
        }
    });
    eprintln!("stopping...");
    for op in operators.iter_mut() {
        op.stop(std::time::Duration::from_secs(5));
    }
    drop(cluster);
    Ok(())
}

/// Which documents of a directory to apply.
enum Filter {
    All,
    /// Objects of these API groups, PersistentVolumes, and namespaced
    /// objects of any group.
    SamplesFor(std::collections::BTreeSet<String>),
}

async fn wanted(
    client: &kube::Client,
    obj: &kube::api::DynamicObject,
    filter: &Filter,
) -> anyhow::Result<bool> {
    let Filter::SamplesFor(groups) = filter else {
        return Ok(true);
    };
    let Some(types) = &obj.types else {
        return Ok(false);
    };
    let gvk = kube::api::GroupVersionKind::try_from(types)?;
    if groups.contains(&gvk.group) || (gvk.group.is_empty() && gvk.kind == "PersistentVolume") {
        return Ok(true);
    }
    let (_, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    Ok(caps.scope == kube::discovery::Scope::Namespaced)
}

/// Applies the `.yaml` files of `dir` (sorted), each with its own field
/// manager so files that complete one object merge instead of replacing
/// each other; returns the objects as applied.
async fn apply_dir(
    client: &kube::Client,
    dir: &Path,
    filter: &Filter,
) -> anyhow::Result<Vec<kube::api::DynamicObject>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    let mut names = Vec::new();
    for file in files {
        let yaml = std::fs::read_to_string(&file)?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("file");
        let manager = format!("envtest-demo-{stem}");
        for obj in envtest::manifest::parse_documents(&yaml)? {
            let kind = obj
                .types
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_default();
            if !wanted(client, &obj, filter).await? {
                eprintln!(
                    "skipped {kind} {} from {} (cluster infrastructure)",
                    obj.metadata.name.clone().unwrap_or_default(),
                    file.display()
                );
                continue;
            }
            let types = obj.types.clone();
            let mut applied = envtest::manifest::apply_object(client, obj, "default", &manager)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
            applied.types = applied.types.or(types);
            names.push(applied);
        }
    }
    Ok(names)
}
