//! PersistentVolumeClaim.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::object_meta;

/// A PVC access mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessMode {
    /// `ReadWriteOnce`: one node mounts read-write.
    ReadWriteOnce,
    /// `ReadOnlyMany`: many nodes mount read-only.
    ReadOnlyMany,
    /// `ReadWriteMany`: many nodes mount read-write.
    ReadWriteMany,
    /// `ReadWriteOncePod`: one pod mounts read-write.
    ReadWriteOncePod,
}

impl AccessMode {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadOnlyMany => "ReadOnlyMany",
            AccessMode::ReadWriteMany => "ReadWriteMany",
            AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }
}

/// Parameters for [`persistent_volume_claim`].
#[derive(Clone, Debug, PartialEq)]
pub struct PvcParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels (usually [`crate::labels::Labels::build`]).
    pub labels: BTreeMap<String, String>,
    /// Requested storage, e.g. `10Gi`.
    pub size: Quantity,
    /// `None` uses the cluster's default StorageClass; `Some("")` explicitly requests no class
    /// (static binding); otherwise the class name.
    pub storage_class: Option<String>,
    /// Access modes; empty means `[ReadWriteOnce]`.
    pub access_modes: Vec<AccessMode>,
}

impl PvcParams {
    /// A `ReadWriteOnce` claim of `size` in the default StorageClass, without labels.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, size: Quantity) -> Self {
        PvcParams {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            size,
            storage_class: None,
            access_modes: vec![AccessMode::ReadWriteOnce],
        }
    }
}

/// The PVC described by `p`.
///
/// Only the size of a bound claim can change later (and only grow, if the StorageClass allows
/// expansion); the other spec fields are immutable.
pub fn persistent_volume_claim(p: &PvcParams) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: object_meta(&p.name, &p.namespace, &p.labels),
        spec: Some(pvc_spec(
            &p.size,
            p.storage_class.as_deref(),
            &p.access_modes,
        )),
        status: None,
    }
}

/// A PVC spec (also used for StatefulSet `volumeClaimTemplates`). Empty `access_modes` means
/// `[ReadWriteOnce]`.
pub fn pvc_spec(
    size: &Quantity,
    storage_class: Option<&str>,
    access_modes: &[AccessMode],
) -> PersistentVolumeClaimSpec {
    let modes = if access_modes.is_empty() {
        &[AccessMode::ReadWriteOnce][..]
    } else {
        access_modes
    };
    PersistentVolumeClaimSpec {
        access_modes: Some(modes.iter().map(|m| m.as_str().to_owned()).collect()),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".to_owned(), size.clone())])),
            limits: None,
        }),
        storage_class_name: storage_class.map(str::to_owned),
        ..PersistentVolumeClaimSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::builders::test_util::labels;

    #[test]
    fn builds_a_whole_pvc() {
        let p = PvcParams {
            labels: labels(&[("app.kubernetes.io/name", "jvs")]),
            storage_class: Some("fast".into()),
            access_modes: vec![AccessMode::ReadWriteOnce, AccessMode::ReadOnlyMany],
            ..PvcParams::new("ws-data", "team-a", Quantity("10Gi".into()))
        };
        assert_eq!(
            serde_json::to_value(persistent_volume_claim(&p)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": "ws-data",
                    "namespace": "team-a",
                    "labels": {"app.kubernetes.io/name": "jvs"}
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                    "resources": {"requests": {"storage": "10Gi"}},
                    "storageClassName": "fast"
                }
            })
        );
    }

    #[test]
    fn defaults_to_read_write_once_in_the_default_class() {
        let p = PvcParams {
            access_modes: vec![],
            ..PvcParams::new("d", "ns", Quantity("1Gi".into()))
        };
        assert_eq!(
            serde_json::to_value(persistent_volume_claim(&p)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "d", "namespace": "ns"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}
                }
            })
        );
        // An explicit empty class is kept (static binding).
        let spec = pvc_spec(&Quantity("1Gi".into()), Some(""), &[]);
        assert_eq!(spec.storage_class_name.as_deref(), Some(""));
    }
}
