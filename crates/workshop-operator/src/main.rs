//! The workshop-operator binary: `run` (default), `crd`, `version`.

use std::process::ExitCode;

fn main() -> ExitCode {
    operator_core::cli::main(
        workshop_operator::OPERATOR,
        workshop_operator::controllers::run,
    )
}
