//! The `novacron.io/v1alpha1` API: VirtualMachine and VirtualMachineMigration.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

mod migration;
mod virtualmachine;

pub use migration::*;
pub use virtualmachine::*;

/// The API group.
pub const GROUP: &str = "novacron.io";

/// The condition saying whether the spec is valid.
pub const ACCEPTED: &str = "Accepted";

/// Every CRD of the operator.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![VirtualMachine::crd(), VirtualMachineMigration::crd()]
}

#[cfg(test)]
mod tests;
