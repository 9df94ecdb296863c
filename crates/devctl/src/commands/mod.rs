//! The commands, one module per group.
//!
//! - [`servers`]: create, list, delete, start, stop, extend and flavors.
//! - [`wait`]: `create --wait`'s progress display.
//! - [`describe`]: the `describe` command.
//! - [`admin`]: `admin user ...`.
//! - [`config`]: `config init|show|set`.

pub mod admin;
pub mod config;
pub mod describe;
pub mod servers;
pub mod wait;

use std::io::IsTerminal;

use anyhow::bail;
use kube::Client;

use crate::cli::Global;
use crate::config::{Config, Paths};
use crate::kube_client::{self, Target};

/// What every command needs: the global options, devctl's files and
/// configuration (read on first use, so `version` works with a broken
/// configuration).
pub struct Ctx {
    pub global: Global,
}

impl Ctx {
    pub fn new(global: Global) -> anyhow::Result<Self> {
        if let Some(ns) = &global.namespace
            && !operator_core::names::is_dns_label(ns)
        {
            bail!("invalid namespace {ns:?}: use lower-case letters, digits and '-' (at most 63)");
        }
        Ok(Ctx { global })
    }

    pub fn paths(&self) -> anyhow::Result<Paths> {
        Paths::from_env()
    }

    pub fn config(&self) -> anyhow::Result<Config> {
        crate::config::load(&self.paths()?.config)
    }

    pub fn target(&self) -> Target {
        Target {
            kubeconfig: self.global.kubeconfig.clone(),
            context: self.global.context.clone(),
        }
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        kube_client::client(&self.target()).await
    }

    /// The client and the namespace: `-n`, else the configured default,
    /// else the kubeconfig context's.
    pub async fn client_ns(&self) -> anyhow::Result<(Client, String)> {
        let client = self.client().await?;
        let ns = match &self.global.namespace {
            Some(ns) => ns.clone(),
            None => self
                .config()?
                .default_namespace
                .unwrap_or_else(|| client.default_namespace().to_string()),
        };
        Ok((client, ns))
    }
}

/// Asks `question` on the terminal; `Ok(false)` unless the answer is yes.
/// Fails (saying to pass `flag`) when stdin is not a terminal.
pub fn confirm(question: &str, flag: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question}: not asking without a terminal; pass {flag} to confirm");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
