//! The NovaCron operator: QEMU/KVM virtual machines as Kubernetes resources
//! (`novacron.io/v1alpha1` VirtualMachine and VirtualMachineMigration).

pub mod bandwidth;
pub mod controllers;
pub mod crd;
pub mod validate;
