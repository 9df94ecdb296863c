//! A fresh namespace per test, deleted when the test ends.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

use crate::cluster::client_from_kubeconfig;

/// A namespace created for one test, with a client for it. Dropping it
/// deletes the namespace (set `ENVTEST_KEEP=1` to keep it for debugging).
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    kubeconfig: PathBuf,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` and waits for its `default` ServiceAccount,
    /// so pods can be created right away.
    pub async fn create(kubeconfig: PathBuf, prefix: &str) -> anyhow::Result<Self> {
        let client = client_from_kubeconfig(&kubeconfig).await?;
        let name = format!("{}-{}", sanitize(prefix), suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "envtest.io/test-namespace": "true" } }
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sas.get_opt("default").await?.is_none() {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "namespace {name}: default ServiceAccount never appeared (is kube-controller-manager running?)"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            name,
            client,
            kubeconfig,
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var("ENVTEST_KEEP").is_ok_and(|v| v == "1" || v == "true") {
            return;
        }
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        // Drop cannot await, and the test's runtime may be shutting down: use
        // a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = client_from_kubeconfig(&kubeconfig).await.ok()?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

fn sanitize(prefix: &str) -> String {
    let s: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    s.trim_matches('-').to_string()
}

fn suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..6)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}
