//! `envtest up`: start the local cluster and keep it running until Ctrl-C.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { kubeconfig } => up(kubeconfig),
    }
}

fn up(copy_to: Option<PathBuf>) -> anyhow::Result<()> {
    eprintln!("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK...");
    let cluster = envtest::Cluster::start(envtest::ClusterOptions::default())?;
    let info = cluster.info();
    let kubeconfig = match copy_to {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&info.kubeconfig, &path)?;
            std::fs::canonicalize(path)?
        }
        None => info.kubeconfig.clone(),
    };
    println!(
        "cluster ready in {:.1}s at {}",
        info.timings.total.as_secs_f64(),
        info.server
    );
    println!();
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes");
    if let Some(dir) = &info.dir {
        println!();
        println!("component logs: {}", dir.display());
    }
    println!("press Ctrl-C to stop");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tokio::signal::ctrl_c())?;
    eprintln!("stopping...");
    drop(cluster);
    Ok(())
}
