//! Every operator's committed CRDs install side by side on one real cluster
//! (server-side apply), become Established, and every committed sample is
//! accepted unchanged.

use std::path::{Path, PathBuf};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.extension().is_some_and(|x| x == "yaml")
            && p.file_name().is_some_and(|n| n != "kustomization.yaml")
    });
    files.sort();
    files
}

#[tokio::test]
async fn all_operators_crds_and_samples_apply_together() {
    let ns = envtest::test_namespace("install-all").await.unwrap();
    let client = ns.client();
    let mut operators: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("crds").is_dir())
        .collect();
    operators.sort();
    assert!(
        !operators.is_empty(),
        "no deploy/<operator>/crds directories found"
    );

    let mut crd_names = Vec::new();
    for op in &operators {
        let names = envtest::manifest::install_crd_dir(&client, &op.join("crds"))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", op.display()));
        crd_names.extend(names);
    }

    let mut samples = 0;
    for op in &operators {
        for file in yaml_files(&op.join("samples")) {
            let yaml = std::fs::read_to_string(&file).unwrap();
            let applied = envtest::manifest::apply_yaml(&client, &yaml, &ns.name, "e2e")
                .await
                .unwrap_or_else(|e| panic!("sample {} rejected: {e:#}", file.display()));
            samples += applied.len();
        }
    }
    println!(
        "{} CRDs from {} operators, {samples} sample objects applied",
        crd_names.len(),
        operators.len()
    );
}
