//! The `jvs.io/v1alpha1` API: [`Workspace`] and [`Snapshot`].
//!
//! Every field of the original JVS operator document keeps its JSON name (including
//! `juiceFsConfig`) and default, so the document's manifests apply unchanged
//! (`deploy/jvs-operator/samples/`). Admission rejects what `jvs` cannot do through the schema and
//! CEL rules; [`crate::validate`] checks again (plus what CEL cannot express: cron expressions and
//! time zones) before anything runs.

mod rules;
pub mod snapshot;
pub mod workspace;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use snapshot::{
    Compression, CompressionType, RestorePhase, RestoreStatus, Snapshot, SnapshotPhase,
    SnapshotSpec, SnapshotStatus, SnapshotTemplate,
};
pub use workspace::{
    AutoSnapshot, JuiceFsConfig, JuiceFsSecretsRef, Quiesce, QuiesceMode, RetentionPolicy, Runner,
    SnapshotEngine, StorageDeletionPolicy, Workload, Workspace, WorkspacePhase, WorkspaceSpec,
    WorkspaceStatus,
};

/// The API group.
pub const GROUP: &str = "jvs.io";

/// A `jvs` tag or worktree name: `[a-zA-Z0-9._-]+` (jvs `pathutil.ValidateName`/`ValidateTag`).
pub const JVS_NAME_PATTERN: &str = "^[a-zA-Z0-9._-]+$";
/// A DNS-1123 subdomain (object names).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Longest Workspace name: children are named `<name>-<suffix>` and labelled with it.
pub const MAX_WORKSPACE_NAME_LEN: usize = 50;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;
/// Most tags on a snapshot, or protected by a retention policy.
pub const MAX_TAGS: usize = 32;

/// Every CRD of this operator.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Workspace::crd(), Snapshot::crd()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    fn schema(crd: &CustomResourceDefinition) -> Value {
        serde_json::to_value(crd).unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            .clone()
    }

    fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String)> {
        crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.json_path))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn names_scope_and_short_names() {
        let ws = Workspace::crd();
        assert_eq!(ws.metadata.name.as_deref(), Some("workspaces.jvs.io"));
        assert_eq!(ws.spec.names.short_names, Some(vec!["jvs".to_string()]));
        assert_eq!(ws.spec.scope, "Namespaced");
        assert_eq!(ws.spec.versions[0].name, "v1alpha1");
        let snap = Snapshot::crd();
        assert_eq!(snap.metadata.name.as_deref(), Some("snapshots.jvs.io"));
        assert_eq!(
            snap.spec.names.short_names,
            Some(vec!["jvssnap".to_string()])
        );
        assert_eq!(snap.spec.scope, "Namespaced");
        assert_eq!(all().len(), 2);
    }

    #[test]
    fn printer_columns() {
        assert_eq!(
            columns(&Workspace::crd()),
            pairs(&[
                ("Status", ".status.phase"),
                ("Ready", ".status.readyReplicas"),
                ("Snapshots", ".status.snapshotCount"),
                ("Last Snapshot", ".status.lastSnapshotTime"),
                ("Next Snapshot", ".status.nextSnapshotTime"),
                ("Age", ".metadata.creationTimestamp"),
            ])
        );
        assert_eq!(
            columns(&Snapshot::crd()),
            pairs(&[
                ("Workspace", ".spec.workspace"),
                ("Status", ".status.phase"),
                ("SnapshotID", ".status.snapshotID"),
                ("Tags", ".spec.tags"),
                ("Age", ".metadata.creationTimestamp"),
            ])
        );
    }

    #[test]
    fn json_names_and_defaults_of_the_original() {
        let ws = schema(&Workspace::crd());
        let p = &ws["properties"]["spec"]["properties"];
        assert!(
            p.get("juiceFsConfig").is_some(),
            "the document's JSON name is juiceFsConfig"
        );
        assert!(p.get("juicefsConfig").is_none());
        assert_eq!(p["replicas"]["default"], 1);
        assert_eq!(p["storage"]["default"], "10Gi");
        assert_eq!(p["defaultEngine"]["default"], "copy");
        assert_eq!(
            p["defaultEngine"]["enum"],
            json!(["juicefs-clone", "reflink-copy", "copy"])
        );
        let retention = &p["retentionPolicy"]["properties"];
        assert_eq!(retention["keepMinSnapshots"]["default"], 10);
        assert_eq!(retention["keepMinAge"]["default"], "24h");
        assert_eq!(
            p["autoSnapshot"]["properties"]["maxSnapshots"]["default"],
            30
        );
        let status = &ws["properties"]["status"]["properties"];
        for field in [
            "phase",
            "snapshotCount",
            "currentSnapshot",
            "lastSnapshotTime",
            "nextSnapshotTime",
            "readyReplicas",
            "observedGeneration",
            "conditions",
        ] {
            assert!(status.get(field).is_some(), "Workspace status.{field}");
        }

        let snap = schema(&Snapshot::crd());
        let p = &snap["properties"]["spec"]["properties"];
        for field in [
            "workspace",
            "note",
            "tags",
            "template",
            "compression",
            "restoreOnCreate",
            "restoreWorktree",
        ] {
            assert!(p.get(field).is_some(), "Snapshot spec.{field}");
        }
        assert_eq!(
            p["template"]["enum"],
            json!([
                "pre-experiment",
                "pre-deploy",
                "checkpoint",
                "work",
                "release",
                "archive"
            ])
        );
        assert_eq!(snap["properties"]["spec"]["required"], json!(["workspace"]));
        let status = &snap["properties"]["status"]["properties"];
        for field in [
            "phase",
            "snapshotID",
            "createdAt",
            "completedAt",
            "integrityState",
            "descriptorChecksum",
            "restoreStatus",
            "conditions",
        ] {
            assert!(status.get(field).is_some(), "Snapshot status.{field}");
        }
    }

    #[test]
    fn schemas_carry_the_cel_rules() {
        let text = serde_json::to_string(&all()).unwrap();
        for needle in [
            "self.type != 'gzip' || !has(self.level) || self.level in [1, 6, 9]",
            "self in ['gzip', 'none']",
            "self == oldSelf",
            "!self.enabled || has(self.schedule)",
            "quantity(self).compareTo(quantity(oldSelf)) >= 0",
            "'source' in self.secretsRef.keys",
            "self != 'main'",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn every_field_is_described() {
        fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
            let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
                if let Some(items) = schema.get("items") {
                    walk(&format!("{path}[]"), items, missing);
                }
                return;
            };
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                if p.starts_with(".status.conditions")
                    || p.starts_with(".spec.runner.resources.")
                    || ["metadata", "apiVersion", "kind"].contains(&&p[1..])
                {
                    continue;
                }
                if sub.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        for crd in all() {
            let mut missing = Vec::new();
            walk("", &schema(&crd), &mut missing);
            assert!(
                missing.is_empty(),
                "{:?}: fields without description: {missing:?}",
                crd.metadata.name
            );
        }
    }

    #[test]
    fn the_workload_template_schema_stays_small() {
        let yaml = operator_core::crd::to_yaml(&Workspace::crd());
        assert!(
            yaml.len() < 100_000,
            "the Workspace CRD is {} bytes",
            yaml.len()
        );
        let ws = schema(&Workspace::crd());
        let template =
            &ws["properties"]["spec"]["properties"]["workload"]["properties"]["template"];
        assert_eq!(
            template["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
    }
}
