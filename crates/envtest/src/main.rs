//! `envtest up`: start the local cluster, optionally install CRDs, run
//! operator binaries against it and apply manifests, then keep everything
//! running until Ctrl-C.

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
    },
}

fn main() -> anyhow::Result<()> {
    let Command::Up {
        kubeconfig,
        install,
        run,
        apply,
    } = Cli::parse().command;
    eprintln!("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK...");
    let cluster = envtest::Cluster::start(envtest::ClusterOptions::default())?;
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
        let names = rt.block_on(apply_dir(&client, dir, &Filter::All))?;
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
    // Samples: the operators' own kinds and namespaced objects; cluster
    // infrastructure (a second default StorageClass, PersistentVolumes for
    // a cloud CSI driver) would change the demo cluster itself.
    let filter = Filter::SamplesFor(installed_groups);
    for dir in &apply {
        let names = rt.block_on(apply_dir(&client, dir, &filter))?;
        eprintln!("applied {} from {}", names.join(", "), dir.display());
    }

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
    println!();
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes");
    if !install.is_empty() {
        println!("  kubectl get crds");
    }
    println!();
    println!("component logs: {}", log_dir.display());
    println!("press Ctrl-C to stop");
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
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
    /// Objects of these API groups, and namespaced objects of any group.
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
    if groups.contains(&gvk.group) {
        return Ok(true);
    }
    let (_, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    Ok(caps.scope == kube::discovery::Scope::Namespaced)
}

/// Applies the `.yaml` files of `dir` (sorted), each with its own field
/// manager so files that complete one object merge instead of replacing
/// each other; returns the object names.
async fn apply_dir(
    client: &kube::Client,
    dir: &Path,
    filter: &Filter,
) -> anyhow::Result<Vec<String>> {
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
            let applied = envtest::manifest::apply_object(client, obj, "default", &manager)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
            names.push(applied.metadata.name.unwrap_or_default());
        }
    }
    Ok(names)
}
