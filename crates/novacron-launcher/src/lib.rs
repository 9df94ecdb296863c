//! The NovaCron VM launcher: runs inside a launcher pod, supervises one
//! `qemu-system-x86_64` process built from a [`config::LaunchConfig`], serves
//! its state on a small HTTP API ([`api`]) and imports disk images
//! ([`import`]). It never talks to the Kubernetes API.
//!
//! The operator (`novacron-operator`) depends on this library for the
//! contract types ([`config`], [`api`]) and the pure cloud-init renderer
//! ([`cloudinit::render`]).

pub mod api;
pub mod cloudinit;
pub mod config;
pub mod hooks;
pub mod http_get;
pub mod import;
pub mod migration;
pub mod migrator;
pub mod qemu;
pub mod qmp;
pub mod quiesce;
pub mod server;
pub mod state;
pub mod supervisor;
