//! `devctl` against a cluster without the DevServer CRDs (this test binary
//! has its own cluster and never installs them).

use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

#[tokio::test]
async fn a_cluster_without_the_crds_is_explained() {
    let client = envtest::client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    if crds
        .get_opt("devservers.devserver.io")
        .await
        .unwrap()
        .is_some()
    {
        eprintln!("skipped: the CRDs are installed in this (existing) cluster");
        return;
    }
    for args in [&["list"][..], &["flavors"][..]] {
        let o = Command::new(env!("CARGO_BIN_EXE_devctl"))
            .args(args)
            .env("KUBECONFIG", envtest::shared().kubeconfig())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("error: listing "), "{args:?}: {err}");
        assert!(
            err.contains("is not installed in this cluster"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("kubectl apply -f deploy/devserver-operator/crds"),
            "{args:?}: {err}"
        );
    }
}
