//! The command line every operator binary shares: `run` (the default),
//! `crd` and `version`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::Future;

use crate::runtime::{self, Operator, Runtime};

#[derive(Parser, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (the default when no subcommand is given).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crd {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the version and git revision.
    Version,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `run`, each also settable through the environment.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so several replicas can run.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Lease name (default: `<operator>-leader`).
    #[arg(long, env = "LEASE_NAME")]
    pub lease_name: Option<String>,
    /// Lease namespace (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease lasts without renewal, e.g. `15s`.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// Objects reconciled in parallel per controller.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `info,kube=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Seconds to wait for the CRDs to be established at start-up.
    #[arg(long, env = "CRD_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub crd_wait: Duration,
}

impl Default for RunArgs {
    fn default() -> Self {
        Cli::parse_from(["operator"]).run
    }
}

/// Parses the command line and runs the operator; use as the whole `main`.
///
/// `controllers` starts every controller of the operator and returns when
/// the runtime's shutdown signal fires.
pub fn main<F, Fut>(operator: Operator, controllers: F) -> ExitCode
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!(
                "{} {} (revision {})",
                operator.name, operator.version, operator.revision
            );
            ExitCode::SUCCESS
        }
        Some(Command::Crd { out_dir }) => {
            let crds = (operator.crds)();
            match out_dir {
                Some(dir) => match crate::crd::write_dir(&crds, &dir) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: writing CRDs to {}: {e}", dir.display());
                        ExitCode::FAILURE
                    }
                },
                None => {
                    print!("{}", crate::crd::to_multi_yaml(&crds));
                    ExitCode::SUCCESS
                }
            }
        }
        Some(Command::Run(args)) => run_to_exit(operator, args, controllers),
        None => run_to_exit(operator, cli.run, controllers),
    }
}

fn run_to_exit<F, Fut>(operator: Operator, args: RunArgs, controllers: F) -> ExitCode
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Err(e) = runtime::init_tracing(args.log_format, &args.log_level) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(runtime::run(&operator, args, controllers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "operator stopped");
            ExitCode::FAILURE
        }
    }
}
