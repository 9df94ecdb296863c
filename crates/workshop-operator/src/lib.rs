//! workshop-operator: RStudio workshops (`orchestra.io/v1` Workshop) on Kubernetes.

pub mod build;
pub mod controllers;
pub mod crd;
pub mod metrics;
pub mod reconcile;
pub mod validate;

use operator_core::Operator;

/// This operator's identity, CRDs included.
pub const OPERATOR: Operator = Operator {
    name: "workshop-operator",
    version: env!("CARGO_PKG_VERSION"),
    revision: operator_core::git_revision!(),
    crds: crd::all,
};
