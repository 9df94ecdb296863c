//! `devctl`: the command line for DevServers.
//!
//! This is the starting point (`version`, `list`, `flavors`); creating,
//! deleting, SSH access and user administration build on it.

pub mod cli;
pub mod kube_client;
pub mod output;
