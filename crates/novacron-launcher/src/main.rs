//! `novacron-launcher`: `run` (default) supervises the VM described by
//! `--config`; `import` fills a disk image for the importer Job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use novacron_launcher::api::ImportPhase;
use novacron_launcher::config::{DEFAULT_CONFIG_PATH, DiskFormat, LaunchConfig};
use novacron_launcher::import::{self, ImportOptions};
use novacron_launcher::state::State;
use novacron_launcher::{server, supervisor};

#[derive(Parser)]
#[command(
    name = "novacron-launcher",
    version,
    about = "Runs one NovaCron VM under QEMU, or imports a disk image"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise the VM (the default).
    Run(RunArgs),
    /// Import a disk image (http(s) URL or local path), verify, convert, resize.
    Import(ImportArgs),
    /// Print the version (as every binary of the project does).
    Version,
}

#[derive(Args)]
struct RunArgs {
    /// Launch config (JSON LaunchConfig).
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Control API address (default `0.0.0.0:<controlPort of the config>`).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Args)]
struct ImportArgs {
    /// http(s)://URL, file:///path or /path (a mounted source PVC).
    #[arg(long)]
    source: String,
    /// Expected digest: sha256:<hex> or sha512:<hex>.
    #[arg(long)]
    checksum: Option<String>,
    /// Disk image to create (left untouched when it exists).
    #[arg(long)]
    dest: PathBuf,
    /// Format of the disk image.
    #[arg(long, default_value = "qcow2")]
    format: DiskFormat,
    /// Virtual disk size (bytes or 20Gi style; 0 keeps the image size).
    #[arg(long, value_parser = import::parse_size)]
    size: Option<u64>,
    /// JSON progress file.
    #[arg(long)]
    progress_file: Option<PathBuf>,
    /// Staging directory for the download (default: the dest's directory).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
    /// Where the final result is written for Kubernetes.
    #[arg(long, default_value = "/dev/termination-log")]
    termination_message_path: PathBuf,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match cli.command {
        Some(Command::Import(args)) => runtime.block_on(import_main(args)),
        Some(Command::Run(args)) => runtime.block_on(run_main(args)),
        Some(Command::Version) => {
            // Same shape as the operators' `version` (GIT_REVISION is set by
            // the image build).
            println!(
                "novacron-launcher {} (revision {})",
                env!("CARGO_PKG_VERSION"),
                option_env!("GIT_REVISION").unwrap_or("unknown")
            );
            0
        }
        None => runtime.block_on(run_main(cli.run)),
    };
    // Do not wait for the control server's connections.
    runtime.shutdown_background();
    std::process::ExitCode::from(code as u8)
}

async fn run_main(args: RunArgs) -> i32 {
    let config = match LaunchConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            // Tell Kubernetes why, at the config's path when it is readable.
            let path = std::fs::read_to_string(&args.config)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["terminationMessagePath"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| LaunchConfig::new("", "", "", 1, 0).termination_message_path);
            let body = serde_json::json!({"phase": "Failed", "reason": "InvalidConfig", "message": e.to_string()});
            let _ = std::fs::write(path, body.to_string());
            return supervisor::EXIT_SETUP_FAILED;
        }
    };
    let state = Arc::new(State::default());
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], config.control_port)));
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {listen}: {e}");
            return supervisor::EXIT_SETUP_FAILED;
        }
    };
    tracing::info!(%listen, vm = %format!("{}/{}", config.namespace, config.name), "launcher starting");
    tokio::spawn(server::serve(listener, state.clone()));
    let signals = state.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received: shutting down the VM");
        signals.request_shutdown();
    });
    supervisor::run(&config, state).await
}

async fn import_main(args: ImportArgs) -> i32 {
    let opts = ImportOptions {
        source: args.source,
        checksum: args.checksum,
        dest: args.dest,
        format: args.format,
        size: args.size,
        progress_file: args.progress_file,
        scratch_dir: args.scratch_dir,
    };
    let result = import::run(&opts).await;
    let progress = match &result {
        Ok(p) => p.clone(),
        Err(e) => {
            tracing::error!("import failed: {e}");
            novacron_launcher::api::ImportProgress {
                phase: ImportPhase::Failed,
                message: e.to_string(),
                ..Default::default()
            }
        }
    };
    let _ = std::fs::write(
        &args.termination_message_path,
        serde_json::to_vec(&progress).unwrap_or_default(),
    );
    if result.is_ok() { 0 } else { 1 }
}
