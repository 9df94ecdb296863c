//! The committed CRDs under deploy/ match the Rust types.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/novacron-operator/crds");
    if let Err(e) = operator_core::crd::check_drift(
        &novacron_operator::crd::all(),
        &dir,
        "cargo run -p novacron-operator -- crd --out-dir deploy/novacron-operator/crds",
    ) {
        panic!("{e}");
    }
}
