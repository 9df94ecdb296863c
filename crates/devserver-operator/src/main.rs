//! `devserver-operator`: `run` (default), `crd [--out-dir DIR]`, `version`.

use std::process::ExitCode;

fn main() -> ExitCode {
    operator_core::cli::main(
        devserver_operator::operator(),
        devserver_operator::controllers::run,
    )
}
