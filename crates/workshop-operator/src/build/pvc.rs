//! The participant's persistent home volume.
//!
//! Mounted at the RStudio user's home (`/home/rstudio`), not `/data`, so everything a
//! participant saves from RStudio (projects, `~/R` packages, history) persists. The operator never
//! prunes these claims: they are kept when a participant is removed and after expiry, and go
//! only with the Workshop itself (owner reference), which the operator deletes once
//! `spec.retention.afterExpiry` has passed, or a user deletes.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use operator_core::builders::{PvcParams, persistent_volume_claim};

use super::Names;
use crate::crd::WorkshopSpec;

/// `<name>-<id>-home`, `ReadWriteOnce`, `spec.storage.size` in `spec.storage.storageClass`
/// (empty or unset: the cluster's default class).
pub fn home(ws: &Names, spec: &WorkshopSpec, id: &str) -> PersistentVolumeClaim {
    let p = PvcParams {
        labels: ws.labels("home", Some(id)),
        storage_class: spec.storage.storage_class.clone().filter(|c| !c.is_empty()),
        ..PvcParams::new(
            ws.pvc(id),
            &ws.namespace,
            Quantity(spec.storage.size.clone()),
        )
    };
    persistent_volume_claim(&p)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::build::test_util::{json, labels, names, workshop};

    #[test]
    fn whole_claim() {
        let ws = workshop(json!({"storage": {"size": "20Gi", "storageClass": "fast-ssd"}}));
        assert_eq!(
            json(&home(&names(), &ws.spec, "user1")),
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": "intro-user1-home",
                    "namespace": "class",
                    "labels": labels("home", Some("user1")),
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "20Gi"}},
                    "storageClassName": "fast-ssd"
                }
            })
        );
    }

    #[test]
    fn empty_class_means_the_default_class() {
        let ws = workshop(json!({"storage": {"storageClass": ""}}));
        let pvc = json(&home(&names(), &ws.spec, "user1"));
        assert_eq!(pvc["spec"].get("storageClassName"), None);
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");
    }
}
