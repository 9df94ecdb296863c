//! ConfigMap and Secret.
//!
//! Secrets are built with `data` (bytes, base64 on the wire via `k8s_openapi::ByteString`), not
//! `stringData`: `stringData` is write-only, so server-side apply cannot track or prune its keys
//! and every read shows a diff. With `data`, removed keys are pruned and an unchanged Secret
//! produces no write.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::{non_empty, object_meta};

/// Parameters for [`config_map`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Entries.
    pub data: BTreeMap<String, String>,
}

/// The ConfigMap described by `p`.
pub fn config_map(p: &ConfigMapParams) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(&p.name, &p.namespace, &p.labels),
        data: Some(p.data.clone()),
        ..ConfigMap::default()
    }
}

/// Parameters for [`secret`]. Its `Debug` output shows keys but never values.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Secret type, e.g. `Opaque`, `kubernetes.io/tls` (immutable after creation).
    pub type_: String,
    /// Entries (raw bytes; strings via `.into_bytes()`).
    pub data: BTreeMap<String, Vec<u8>>,
}

impl SecretParams {
    /// An empty `Opaque` Secret.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        SecretParams {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            type_: "Opaque".to_owned(),
            data: BTreeMap::new(),
        }
    }

    /// Adds an entry.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }
}

impl std::fmt::Debug for SecretParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretParams")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("labels", &self.labels)
            .field("type_", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The Secret described by `p`.
pub fn secret(p: &SecretParams) -> Secret {
    Secret {
        metadata: object_meta(&p.name, &p.namespace, &p.labels),
        type_: Some(p.type_.clone()),
        data: non_empty(
            p.data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::builders::test_util::labels;

    #[test]
    fn builds_a_whole_config_map() {
        let p = ConfigMapParams {
            name: "cfg".into(),
            namespace: "ns".into(),
            labels: labels(&[("a", "b")]),
            data: labels(&[("z.conf", "z=1\n"), ("a.conf", "a=1\n")]),
        };
        assert_eq!(
            serde_json::to_value(config_map(&p)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cfg", "namespace": "ns", "labels": {"a": "b"}},
                "data": {"a.conf": "a=1\n", "z.conf": "z=1\n"}
            })
        );
    }

    #[test]
    fn builds_a_whole_secret_with_base64_data() {
        let p = SecretParams::new("creds", "ns")
            .with("password", "hunter2")
            .with("bin", vec![0u8, 255]);
        assert_eq!(
            serde_json::to_value(secret(&p)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "creds", "namespace": "ns"},
                "type": "Opaque",
                "data": {"bin": "AP8=", "password": "aHVudGVyMg=="}
            })
        );
        let debug = format!("{p:?}");
        assert!(debug.contains("password"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
