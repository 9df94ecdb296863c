//! The `devserver.io/v1` API: [`DevServer`] (namespaced), [`DevServerFlavor`]
//! and [`DevServerUser`] (cluster-scoped).
//!
//! Field names follow the original project's manifests exactly, so its
//! documents' examples apply unchanged. What the schema can check is checked
//! at admission (patterns, bounds, CEL rules with clear messages); the rest
//! is in [`crate::validate`].

// `printcolumn(type_ = "string", ...)` repeated per column trips clippy's
// duplicated-attribute lint, which does not understand kube's nested attributes.
#[allow(clippy::duplicated_attributes)]
mod devserver;
#[allow(clippy::duplicated_attributes)]
mod flavor;
#[allow(clippy::duplicated_attributes)]
mod user;

pub use devserver::*;
pub use flavor::*;
pub use user::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// The API group of every kind of this operator.
pub const GROUP: &str = "devserver.io";

/// Where a DevServer's home directory is mounted.
pub const HOME_PATH: &str = "/home/dev";

/// Where `sharedVolumeClaimName` is mounted.
pub const SHARED_PATH: &str = "/shared";

/// Longest quantity string accepted (`persistentHomeSize`, flavor
/// resources).
pub const MAX_QUANTITY_LEN: usize = 64;

/// Maximum number of volumes in one list (also bounds the cost of the CEL
/// rules over the list).
pub const MAX_VOLUMES: usize = 32;

/// An existing PersistentVolumeClaim mounted into the DevServer's pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Name of an existing PersistentVolumeClaim in the DevServer's namespace.
    /// Claims are user-managed: deleting the DevServer never deletes them.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("claimName must be a valid PersistentVolumeClaim name (lower-case letters, digits, '-' and '.')"))]
    pub claim_name: String,

    /// Absolute path the claim is mounted at inside the container, e.g.
    /// `/data` (no trailing slash, no `.` or `..` segments). Each path may
    /// appear only once.
    #[schemars(length(min = 2, max = 1024))]
    #[x_kube(
        validation = Rule::new("self.matches('^(/[^/]+)+$')").message("mountPath must be an absolute path without a trailing slash, e.g. /data"),
        validation = Rule::new("!self.matches('/\\\\.\\\\.?(/|$)')").message("mountPath must not contain '.' or '..' segments")
    )]
    pub mount_path: String,

    /// Mount the claim read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// The CEL rule that rejects two volumes with the same `mountPath`.
pub const DISTINCT_MOUNT_PATHS: &str =
    "self.all(v, self.exists_one(w, w.mountPath == v.mountPath))";

/// Every CRD of this operator, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        DevServer::crd(),
        DevServerFlavor::crd(),
        DevServerUser::crd(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_json(name: &str) -> serde_json::Value {
        let crd = all()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no CRD {name}"));
        serde_json::to_value(crd).unwrap()
    }

    fn rules(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(rs)) = m.get("x-kubernetes-validations") {
                    for r in rs {
                        out.push(r["rule"].as_str().unwrap().to_string());
                    }
                }
                m.values().for_each(|v| rules(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| rules(v, out)),
            _ => {}
        }
    }

    /// Every property has a description, so `kubectl explain` documents it.
    fn undocumented(path: &str, schema: &serde_json::Value, out: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let p = format!("{path}.{name}");
                // metadata, apiVersion and kind are documented by Kubernetes.
                if path.is_empty() && ["metadata", "apiVersion", "kind"].contains(&name.as_str()) {
                    continue;
                }
                if prop
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_none_or(str::is_empty)
                {
                    out.push(p.clone());
                }
                undocumented(&p, prop, out);
            }
        }
        if let Some(items) = schema.get("items") {
            undocumented(&format!("{path}[]"), items, out);
        }
    }

    #[test]
    fn names_scopes_and_short_names() {
        let crds = all();
        let names: Vec<_> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "devservers.devserver.io",
                "devserverflavors.devserver.io",
                "devserverusers.devserver.io"
            ]
        );
        assert_eq!(crds[0].spec.scope, "Namespaced");
        assert_eq!(crds[1].spec.scope, "Cluster");
        assert_eq!(crds[2].spec.scope, "Cluster");
        for crd in &crds {
            assert_eq!(crd.spec.versions.len(), 1);
            assert_eq!(crd.spec.versions[0].name, "v1");
            assert!(
                crd.spec.versions[0]
                    .subresources
                    .as_ref()
                    .unwrap()
                    .status
                    .is_some()
            );
            assert!(
                crd.spec
                    .names
                    .short_names
                    .as_ref()
                    .is_some_and(|s| !s.is_empty())
            );
        }
    }

    #[test]
    fn every_field_is_documented() {
        for name in [
            "devservers.devserver.io",
            "devserverflavors.devserver.io",
            "devserverusers.devserver.io",
        ] {
            let crd = crd_json(name);
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let mut missing = Vec::new();
            undocumented("", schema, &mut missing);
            // Types borrowed from Kubernetes (tolerations, quotas, conditions)
            // carry their upstream descriptions; ours must too.
            assert!(
                missing.is_empty(),
                "{name}: fields without a description: {missing:#?}"
            );
        }
    }

    #[test]
    fn devserver_schema_has_the_cel_rules() {
        let mut found = Vec::new();
        rules(&crd_json("devservers.devserver.io"), &mut found);
        for expected in [
            DISTINCT_MOUNT_PATHS,
            DEVSERVER_DISTRIBUTED_REQUIRED,
            DEVSERVER_DISTRIBUTED_ONLY,
            DEVSERVER_HOME_CONFLICT,
            DEVSERVER_SHARED_CONFLICT,
            DURATION_POSITIVE,
            TTL_AT_MOST_7_DAYS,
            POSITIVE_QUANTITY,
        ] {
            assert!(
                found.iter().any(|r| r == expected),
                "missing rule {expected}; have {found:#?}"
            );
        }
    }

    #[test]
    fn flavor_and_user_schemas_have_the_cel_rules() {
        let mut found = Vec::new();
        rules(&crd_json("devserverflavors.devserver.io"), &mut found);
        assert!(found.iter().any(|r| r == DISTINCT_MOUNT_PATHS));
        assert!(found.iter().any(|r| r == NON_NEGATIVE_QUANTITY));
        let mut found = Vec::new();
        rules(&crd_json("devserverusers.devserver.io"), &mut found);
        assert!(found.iter().any(|r| r == "self == oldSelf"), "{found:#?}");
    }

    #[test]
    fn mode_defaults_and_username_bounds_are_in_the_schema() {
        let crd = crd_json("devservers.devserver.io");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["mode"]["default"], "standalone");
        assert_eq!(
            spec["properties"]["mode"]["enum"],
            serde_json::json!(["standalone", "distributed"])
        );
        assert_eq!(spec["properties"]["running"]["default"], true);
        assert_eq!(spec["properties"]["volumes"]["maxItems"], MAX_VOLUMES);

        let crd = crd_json("devserverusers.devserver.io");
        let username = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["username"];
        assert_eq!(username["maxLength"], MAX_USERNAME_LEN);
        assert_eq!(format!("dev-{}", "a".repeat(MAX_USERNAME_LEN)).len(), 63);
    }

    #[test]
    fn printer_columns() {
        let cols = |name: &str| -> Vec<String> {
            crd_json(name)["spec"]["versions"][0]["additionalPrinterColumns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        let ds = cols("devservers.devserver.io");
        for c in ["Phase", "Flavor", "Owner", "Expires", "Age"] {
            assert!(ds.contains(&c.to_string()), "{ds:?}");
        }
        assert!(cols("devserverflavors.devserver.io").contains(&"Schedulable".to_string()));
        assert!(cols("devserverusers.devserver.io").contains(&"Namespace".to_string()));
    }
}
