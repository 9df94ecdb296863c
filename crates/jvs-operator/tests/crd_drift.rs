//! The committed CRDs under deploy/ match the Rust types.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/jvs-operator/crds");
    if let Err(problems) = operator_core::crd::check_drift(
        &jvs_operator::crd::all(),
        &dir,
        "cargo run -p jvs-operator -- crd --out-dir deploy/jvs-operator/crds",
    ) {
        panic!("{problems}");
    }
}
