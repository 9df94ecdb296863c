//! jvs-operator: versioned JVS workspaces and snapshots (`jvs.io/v1alpha1` Workspace, Snapshot).

pub mod controllers;
pub mod crd;
pub mod validate;

use operator_core::Operator;

/// This operator's identity, CRDs included.
pub const OPERATOR: Operator = Operator {
    name: "jvs-operator",
    version: env!("CARGO_PKG_VERSION"),
    revision: operator_core::git_revision!(),
    crds: crd::all,
};
