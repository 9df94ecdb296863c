//! The CRDs committed under `deploy/devserver-operator/crds` are exactly what
//! the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/devserver-operator/crds");
    if let Err(e) = operator_core::crd::check_drift(
        &devserver_operator::crd::all(),
        &dir,
        "cargo run -p devserver-operator -- crd --out-dir deploy/devserver-operator/crds",
    ) {
        panic!("{e}");
    }
}
