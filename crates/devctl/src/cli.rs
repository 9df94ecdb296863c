//! The argument model (clap derive) and the dispatch to each command.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use devserver_operator::crd::VolumeMount;

use crate::args;
use crate::commands::{self, Ctx};
use crate::output::Format;

/// Manage DevServers: development environments on Kubernetes with SSH
/// access.
///
/// devctl talks to the cluster of your kubeconfig (KUBECONFIG or
/// ~/.kube/config); its own settings live in ~/.config/devctl/config.yaml
/// (see `devctl config`).
#[derive(Parser, Debug)]
#[command(name = "devctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Namespace to work in (default: `defaultNamespace` from the devctl
    /// config, else the kubeconfig context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a DevServer.
    Create(CreateArgs),
    /// List DevServers.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a DevServer in detail: spec, status, conditions, pods and events.
    Describe(NameArgs),
    /// Delete a DevServer (its persistent home is kept unless --purge).
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// Start a stopped DevServer.
    Start(NameArgs),
    /// Stop a DevServer; its persistent home and volumes are kept.
    Stop(NameArgs),
    /// Push a DevServer's expiry back.
    Extend(ExtendArgs),
    /// Open an SSH session (or run a command) on a DevServer.
    Ssh(SshArgs),
    /// Write the SSH config entry of a DevServer so plain `ssh`, `scp` and
    /// VS Code Remote-SSH reach it; print its host alias.
    SshConfig(SshConfigArgs),
    /// The stdin/stdout tunnel used by the generated ProxyCommand.
    #[command(hide = true)]
    SshProxy(NameArgs),
    /// List the flavors (sizes) a DevServer can use.
    Flavors(FlavorsArgs),
    /// Administration: DevServer users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Show or change devctl's configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script, e.g. `source <(devctl completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print devctl's version.
    Version,
}

/// A DevServer name, positional or with `--name`.
#[derive(Args, Debug, Clone)]
pub struct NameArgs {
    /// Name of the DevServer.
    #[arg(
        value_name = "NAME",
        required_unless_present = "name_flag",
        conflicts_with = "name_flag"
    )]
    pub name: Option<String>,
    /// Name of the DevServer (instead of the positional NAME).
    #[arg(long = "name", id = "name_flag", value_name = "NAME")]
    pub name_flag: Option<String>,
}

impl NameArgs {
    /// The validated name.
    pub fn get(&self) -> anyhow::Result<String> {
        args::object_name(self.name.clone(), self.name_flag.clone())
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub name: NameArgs,
    /// Flavor (size) of the server; see `devctl flavors`. Default:
    /// `defaultFlavor` from the devctl config, else the cluster's default
    /// flavor.
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: Option<String>,
    /// Container image, e.g. python:3.12 (default: the flavor's or the
    /// operator's image). It needs no SSH server.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Public key allowed to log in (default: `sshKey`.pub from the devctl
    /// config, else your DevServerUser's keys).
    #[arg(long, value_name = "FILE")]
    pub ssh_public_key_file: Option<PathBuf>,
    /// Mount an existing PersistentVolumeClaim: PVC:/path, PVC:/path:ro or
    /// PVC:/path:rw. Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "PVC:/PATH[:ro|rw]", value_parser = args::parse_volume)]
    pub volumes: Vec<VolumeMount>,
    /// Time to live, counted from creation (e.g. 8h, 2d; at most 7d).
    #[arg(long, value_name = "DURATION", value_parser = args::ttl)]
    pub ttl: Option<Duration>,
    /// Stop the server after this long without SSH activity (e.g. 2h).
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    pub idle_timeout: Option<Duration>,
    /// Size of a persistent home directory (e.g. 50Gi), kept when the
    /// server stops. Default: an ephemeral home.
    #[arg(long, value_name = "SIZE", value_parser = args::size)]
    pub home_size: Option<String>,
    /// An existing (ReadWriteMany) claim to mount at /shared.
    #[arg(long, value_name = "PVC")]
    pub shared: Option<String>,
    /// Who owns the server (a DevServerUser's username).
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// Wait until the server is Running, showing what it waits for.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits before giving up.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = args::duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// List DevServers in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format: table, wide (more columns), json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub name: NameArgs,
    /// Also delete the persistent home (the claim NAME-home). Its data is
    /// lost: asks for confirmation unless --yes.
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub name: NameArgs,
    /// How much later the server expires (e.g. 2h, 30m, 1d).
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    pub by: Duration,
}

#[derive(Args, Debug)]
pub struct SshArgs {
    #[command(flatten)]
    pub name: NameArgs,
    /// Forward your SSH agent (default: `forwardAgent` from the devctl
    /// config).
    #[arg(short = 'A', long)]
    pub forward_agent: bool,
    /// User to log in as (the DevServer's user is `dev`).
    #[arg(short = 'l', long, value_name = "USER", default_value = "dev")]
    pub login: String,
    /// Command to run instead of a shell (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SshConfigArgs {
    #[command(flatten)]
    pub name: NameArgs,
    /// Add `Include <devctl's ssh config>` to ~/.ssh/config (asked
    /// interactively otherwise; never done silently).
    #[arg(long)]
    pub install: bool,
}

#[derive(Args, Debug)]
pub struct FlavorsArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// DevServer users: namespace dev-USERNAME, ServiceAccount and RBAC.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (the operator creates namespace dev-USERNAME).
    Create {
        /// The username: lower-case letters, digits and '-'.
        username: String,
        /// The user's SSH public key file(s). Repeatable.
        #[arg(long, value_name = "FILE")]
        ssh_public_key_file: Vec<PathBuf>,
    },
    /// Delete a user (the namespace is kept unless its policy says Delete).
    Delete {
        /// The username.
        username: String,
    },
    /// List users.
    List {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print a kubeconfig that authenticates as the user's ServiceAccount
    /// (cluster CA inlined). Re-run it to refresh the token, or use --exec.
    Kubeconfig {
        /// The username.
        username: String,
        /// Lifetime of the token.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = args::duration)]
        duration: Duration,
        /// Instead of a token, call `devctl admin user token` (with your
        /// kubeconfig) whenever a fresh one is needed.
        #[arg(long)]
        exec: bool,
        /// Write to this file (mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        output_file: Option<PathBuf>,
    },
    /// Print a fresh token as an ExecCredential (kubectl credential plugin).
    #[command(hide = true)]
    Token {
        /// The username.
        username: String,
        /// Lifetime of the token.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = args::duration)]
        duration: Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Create the configuration file with the SSH key found in ~/.ssh.
    Init {
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the configuration and where it is.
    Show,
    /// Set a key: sshKey, forwardAgent, defaultFlavor or defaultNamespace
    /// (an empty value removes it).
    Set {
        /// The key.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(crate::config::KEYS))]
        key: String,
        /// The value.
        value: String,
    },
}

/// The version line: `devctl <version> (revision <git revision>)`.
pub fn version() -> String {
    format!(
        "devctl {} (revision {})",
        env!("CARGO_PKG_VERSION"),
        option_env!("GIT_REVISION").unwrap_or("unknown")
    )
}

/// Runs `cli`, writing results to `out` (notes and progress go to stderr so
/// that `-o json` output stays parseable).
pub async fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    let ctx = Ctx::new(cli.global)?;
    match cli.command {
        Command::Version => writeln!(out, "{}", version())?,
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "devctl", out);
        }
        Command::Config { command } => commands::config::run(&ctx, command, out)?,
        Command::Create(a) => commands::servers::create(&ctx, a, out).await?,
        Command::List(a) => commands::servers::list(&ctx, a, out).await?,
        Command::Describe(a) => commands::describe::describe(&ctx, &a.get()?, out).await?,
        Command::Delete(a) => commands::servers::delete(&ctx, a, out).await?,
        Command::Start(a) => commands::servers::set_running(&ctx, &a.get()?, true, out).await?,
        Command::Stop(a) => commands::servers::set_running(&ctx, &a.get()?, false, out).await?,
        Command::Extend(a) => commands::servers::extend(&ctx, a, out).await?,
        Command::Flavors(a) => commands::servers::flavors(&ctx, a, out).await?,
        Command::Admin {
            command: AdminCommand::User { command },
        } => commands::admin::run(&ctx, command, out).await?,
        Command::Ssh(a) => crate::ssh::ssh(&ctx, a).await?,
        Command::SshConfig(a) => crate::ssh::ssh_config(&ctx, a, out).await?,
        Command::SshProxy(a) => crate::ssh::proxy::run(&ctx, &a.get()?).await?,
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("devctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn names_are_positional_or_flags() {
        for args in [&["describe", "mydev"][..], &["describe", "--name", "mydev"]] {
            match parse(args).unwrap().command {
                Command::Describe(n) => assert_eq!(n.get().unwrap(), "mydev"),
                other => panic!("{other:?}"),
            }
        }
        assert!(parse(&["describe"]).is_err(), "a name is required");
        assert!(parse(&["describe", "a", "--name", "b"]).is_err());
        assert!(parse(&["start", "a", "b"]).is_err());
    }

    #[test]
    fn ssh_takes_a_name_then_a_command() {
        match parse(&["ssh", "mydev", "-A", "--", "echo", "ok"])
            .unwrap()
            .command
        {
            Command::Ssh(a) => {
                assert_eq!(a.name.get().unwrap(), "mydev");
                assert!(a.forward_agent);
                assert_eq!(a.command, ["echo", "ok"]);
            }
            other => panic!("{other:?}"),
        }
        // The original devctl ran a positional name as a remote command;
        // here words after the name need `--`.
        assert!(parse(&["ssh", "mydev", "echo"]).is_err());
        match parse(&["ssh", "--name", "mydev"]).unwrap().command {
            Command::Ssh(a) => assert!(a.command.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_options() {
        let cli = parse(&[
            "-n",
            "dev-alice",
            "create",
            "mydev",
            "--flavor",
            "gpu-small",
            "-v",
            "data:/data:ro",
            "--volume",
            "cache:/cache",
            "--ttl",
            "8h",
            "--idle-timeout",
            "30m",
            "--home-size",
            "50Gi",
            "--wait",
            "--timeout",
            "2m",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("dev-alice"));
        let Command::Create(c) = cli.command else {
            panic!()
        };
        assert_eq!(c.volumes.len(), 2);
        assert!(c.volumes[0].read_only);
        assert_eq!(c.ttl, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(c.home_size.as_deref(), Some("50Gi"));
        assert!(c.wait);
        assert_eq!(c.timeout, Duration::from_secs(120));
        for (bad, says) in [
            (&["create", "x", "-v", "data:rel"][..], "must be absolute"),
            (&["create", "x", "-v", "data:/d:rx"], "must be ro or rw"),
            (&["create", "x", "--ttl", "8d"], "at most 7d"),
            (&["create", "x", "--ttl", "8 hours"], "invalid duration"),
            (&["create", "x", "--home-size", "big"], "invalid size"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&[
            "list",
            "-n",
            "x",
            "--context",
            "kind",
            "--kubeconfig",
            "/k",
            "-o",
            "wide",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("x"));
        assert_eq!(cli.global.context.as_deref(), Some("kind"));
        assert_eq!(cli.global.kubeconfig, Some(PathBuf::from("/k")));
        let Command::List(l) = cli.command else {
            panic!()
        };
        assert_eq!(l.output, Format::Wide);
        assert!(parse(&["list", "-o", "xml"]).is_err());
        assert!(matches!(parse(&["ls"]).unwrap().command, Command::List(_)));
        assert!(matches!(
            parse(&["flavors", "-o", "yaml"]).unwrap().command,
            Command::Flavors(FlavorsArgs {
                output: Format::Yaml
            })
        ));
    }

    #[test]
    fn extend_admin_config_completion() {
        let Command::Extend(e) = parse(&["extend", "mydev", "--by", "2h"]).unwrap().command else {
            panic!()
        };
        assert_eq!(e.by, Duration::from_secs(7200));
        assert!(parse(&["extend", "mydev"]).is_err(), "--by is required");
        assert!(parse(&["admin", "user", "kubeconfig", "alice"]).is_ok());
        assert!(parse(&["admin", "user", "create", "alice"]).is_ok());
        assert!(parse(&["config", "set", "defaultFlavor", "x"]).is_ok());
        assert!(parse(&["config", "set", "colour", "x"]).is_err());
        assert!(parse(&["completion", "zsh"]).is_ok());
        assert!(parse(&["completion", "tcsh"]).is_err());
    }

    #[test]
    fn version_names_the_binary() {
        assert!(version().starts_with(&format!("devctl {} (revision ", env!("CARGO_PKG_VERSION"))));
    }
}
