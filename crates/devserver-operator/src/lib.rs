//! The DevServer operator: development environments with flavors, users,
//! SSH access and lifecycle (`devserver.io/v1`).
//!
//! - [`crd`]: the API types (DevServer, DevServerFlavor, DevServerUser).
//! - [`validate`]: checks beyond what the schema enforces at admission.
//! - [`build`]: pure builders of the child objects.
//! - [`reconcile`]: what each controller does.
//! - [`schedulable`]: whether a flavor fits on a current node.
//! - [`controllers`]: the controllers started by `devserver-operator run`.
//! - [`config`]: the operator's configuration.
//! - [`metrics`]: the operator's own Prometheus metrics.

pub mod build;
pub mod config;
pub mod controllers;
pub mod crd;
pub mod metrics;
pub mod reconcile;
pub mod schedulable;
pub mod validate;

/// The operator's name: binary, event reporter and field-manager prefix.
pub const OPERATOR_NAME: &str = "devserver-operator";

/// What identifies this operator to `operator_core`.
pub fn operator() -> operator_core::Operator {
    operator_core::Operator {
        name: OPERATOR_NAME,
        version: env!("CARGO_PKG_VERSION"),
        revision: operator_core::git_revision!(),
        crds: crd::all,
    }
}
