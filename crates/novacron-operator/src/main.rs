//! The `novacron-operator` binary: `run` (default), `crd`, `version`.

use std::process::ExitCode;

use novacron_operator::{controllers, crd};
use operator_core::{Operator, Runtime};

fn main() -> ExitCode {
    operator_core::cli::main(
        Operator {
            name: controllers::OPERATOR,
            version: env!("CARGO_PKG_VERSION"),
            revision: operator_core::git_revision!(),
            crds: crd::all,
        },
        |rt: Runtime| controllers::run(rt),
    )
}
