//! `devctl`: the command line for DevServers, from create to SSH.
//!
//! - [`cli`]: the argument model and dispatch.
//! - [`args`]: parsing of names, volumes, durations and sizes.
//! - [`config`]: devctl's configuration file.
//! - [`kube_client`]: the client, namespace and API error messages.
//! - [`commands`]: one module per command group.
//! - [`ssh`]: SSH config entries, pinned host keys and the tunnel.
//! - [`output`]: tables, JSON and YAML.

pub mod args;
pub mod cli;
pub mod commands;
pub mod config;
pub mod kube_client;
pub mod output;
pub mod ssh;
