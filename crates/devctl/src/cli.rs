//! The command line: arguments and what each command does.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use devserver_operator::crd::{DevServer, DevServerFlavor};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use crate::kube_client::{client, explain};
use crate::output::{self, Format};

/// Manage DevServers: development environments on Kubernetes with SSH
/// access.
#[derive(Parser, Debug)]
#[command(name = "devctl", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print devctl's version.
    Version,
    /// List DevServers.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// List the flavors (sizes) a DevServer can use.
    Flavors(FlavorsArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Namespace to list (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// List DevServers in every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct FlavorsArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The version line: `devctl <version> (revision <git revision>)`.
pub fn version() -> String {
    format!(
        "devctl {} (revision {})",
        env!("CARGO_PKG_VERSION"),
        option_env!("GIT_REVISION").unwrap_or("unknown")
    )
}

/// Runs `cli`, writing results to `out` (notes such as "nothing found" go to
/// stderr so that `-o json` output stays parseable).
pub async fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Version => writeln!(out, "{}", version())?,
        Command::List(args) => list(args, out).await?,
        Command::Flavors(args) => flavors(args, out).await?,
    }
    out.flush()?;
    Ok(())
}

async fn list(args: ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = client().await?;
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let (api, what): (Api<DevServer>, String) = if args.all_namespaces {
        (Api::all(client), "DevServers in all namespaces".into())
    } else {
        (
            Api::namespaced(client, &namespace),
            format!("DevServers in namespace {namespace}"),
        )
    };
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| explain(e, &what, "devservers.devserver.io"))?
        .items;
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    if items.is_empty() && args.output == Format::Table {
        eprintln!("No {what}.");
        return Ok(());
    }
    let now = Timestamp::now();
    let text = output::render(&items, args.output, |items| {
        output::devserver_table(items, now, args.all_namespaces)
    })?;
    out.write_all(text.as_bytes())
        .context("writing the output")?;
    Ok(())
}

async fn flavors(args: FlavorsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let api: Api<DevServerFlavor> = Api::all(client().await?);
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| explain(e, "DevServerFlavors", "devserverflavors.devserver.io"))?
        .items;
    // The default flavor first, then by name.
    items.sort_by(|a, b| {
        (!a.spec.default, &a.metadata.name).cmp(&(!b.spec.default, &b.metadata.name))
    });
    if items.is_empty() && args.output == Format::Table {
        eprintln!(
            "No DevServerFlavors: ask an administrator to create some (see deploy/devserver-operator/samples)."
        );
        return Ok(());
    }
    let text = output::render(&items, args.output, output::flavor_table)?;
    out.write_all(text.as_bytes())
        .context("writing the output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from(["devctl", "list", "-n", "dev-alice", "-o", "json"]).unwrap();
        match cli.command {
            Command::List(a) => {
                assert_eq!(a.namespace.as_deref(), Some("dev-alice"));
                assert_eq!(a.output, Format::Json);
                assert!(!a.all_namespaces);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["devctl", "list", "-A", "-n", "x"]).is_err());
        assert!(Cli::try_parse_from(["devctl", "list", "-o", "xml"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["devctl", "ls"]).unwrap().command,
            Command::List(_)
        ));
        assert!(matches!(
            Cli::try_parse_from(["devctl", "flavors", "-o", "yaml"])
                .unwrap()
                .command,
            Command::Flavors(FlavorsArgs {
                output: Format::Yaml
            })
        ));
    }

    #[test]
    fn version_names_the_binary() {
        assert!(version().starts_with(&format!("devctl {} (revision ", env!("CARGO_PKG_VERSION"))));
    }
}
