//! The jvs-operator binary: `run` (default), `crd`, `version`.

use std::process::ExitCode;

fn main() -> ExitCode {
    operator_core::cli::main(jvs_operator::OPERATOR, jvs_operator::controllers::run)
}
