//! The NovaCron operator: QEMU/KVM virtual machines as Kubernetes resources
//! (`novacron.io/v1alpha1` VirtualMachine and VirtualMachineMigration).

pub mod bandwidth;
pub mod build;
pub mod catalog;
pub mod controllers;
pub mod crd;
pub mod import_progress;
pub mod metrics;
pub mod migration;
pub mod observe;
pub mod provider;
pub mod reconcile;
pub mod settings;
pub mod snapshots;
pub mod validate;
pub mod webhook;
