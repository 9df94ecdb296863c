//! The VM's disks: the root disk claim (filled by an importer Job, cloned
//! from a claim, or restored from a VolumeSnapshot) and the data volume
//! claims.
//!
//! Layout inside the launcher pod (and the importer): the root disk claim is
//! a filesystem volume mounted at `/disks/rootdisk` holding a qcow2 image
//! `disk.img` of the requested size; data volumes are raw block devices
//! (`volumeMode: Block`) at `/dev/disks/<name>`, so a blank disk needs no
//! formatting step.
//!
//! Deletion policy: every claim has the VM as owner, so deleting the VM
//! deletes its disks (the user asked for the VM to go). Removing a volume
//! from `spec.volumes` only detaches it: its claim stays until the VM is
//! deleted, so an edit never destroys data.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, TypedLocalObjectReference, TypedObjectReference, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use operator_core::builders::{
    AccessMode as PvcAccessMode, JobParams, PvcParams, job, persistent_volume_claim,
    restricted_container_security_context, restricted_pod_security_context,
};

use super::{IMPORTED_ANNOTATION, Names, labels, stable_hash_hex};
use crate::crd::{AccessMode, VmSpec};

/// Name of the root disk in the launch config and the pod.
pub const ROOT_DISK: &str = "rootdisk";
/// Mount point of the root disk claim.
pub const ROOT_MOUNT: &str = "/disks/rootdisk";
/// The root disk image file.
pub const ROOT_IMAGE: &str = "/disks/rootdisk/disk.img";
/// Directory of the data volumes' block devices.
pub const BLOCK_DIR: &str = "/dev/disks";
/// User and group the launcher and importer run as (QEMU's usual `qemu`
/// uid/gid 107, as in KubeVirt); the claims are owned by this group.
pub const QEMU_UID: i64 = 107;
/// The importer Job's container (its log carries the import progress).
pub const IMPORTER_CONTAINER: &str = "importer";

/// Where the root disk comes from, resolved (a `marketplace://` name already
/// looked up in the catalog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSource {
    /// Download an http(s) image (with an optional `sha256:`/`sha512:`
    /// checksum) into the claim.
    Import {
        url: String,
        checksum: Option<String>,
    },
    /// Clone a claim (CSI clone), possibly from another namespace.
    ClonePvc {
        namespace: Option<String>,
        name: String,
    },
    /// Restore a VolumeSnapshot of the VM's namespace.
    Snapshot { name: String },
}

impl RootSource {
    /// A short stable hash of the source (names the importer Job, marks the
    /// claim once imported).
    pub fn hash(&self) -> String {
        match self {
            RootSource::Import { url, checksum } => {
                stable_hash_hex(&["import", url, checksum.as_deref().unwrap_or("")])
            }
            RootSource::ClonePvc { namespace, name } => {
                stable_hash_hex(&["pvc", namespace.as_deref().unwrap_or(""), name])
            }
            RootSource::Snapshot { name } => stable_hash_hex(&["snapshot", name]),
        }
    }
}

fn pvc_mode(m: Option<AccessMode>) -> PvcAccessMode {
    match m.unwrap_or(AccessMode::ReadWriteOnce) {
        AccessMode::ReadWriteOnce => PvcAccessMode::ReadWriteOnce,
        AccessMode::ReadOnlyMany => PvcAccessMode::ReadOnlyMany,
        AccessMode::ReadWriteMany => PvcAccessMode::ReadWriteMany,
        AccessMode::ReadWriteOncePod => PvcAccessMode::ReadWriteOncePod,
    }
}

/// The root disk claim. `imported` marks a claim whose import finished
/// (kept on every later apply so the mark is never lost).
pub fn root_disk(
    vm: &str,
    namespace: &str,
    spec: &VmSpec,
    source: &RootSource,
    imported: bool,
) -> PersistentVolumeClaim {
    let mut pvc = persistent_volume_claim(&PvcParams {
        labels: labels(vm, "rootdisk"),
        ..PvcParams::new(
            Names::of(vm).root_disk(),
            namespace,
            spec.resources.disk.clone(),
        )
    });
    let claim = pvc.spec.as_mut().expect("the builder sets a spec");
    claim.volume_mode = Some("Filesystem".into());
    if spec.root_disk_access_mode.is_some() {
        // Only when asked: the access mode of an existing claim is immutable.
        claim.access_modes = Some(vec![pvc_mode(spec.root_disk_access_mode).as_str().into()]);
    }
    match source {
        RootSource::Import { .. } => {}
        RootSource::ClonePvc {
            namespace: Some(from),
            name,
        } if from != namespace => {
            // Cross-namespace clones need the CrossNamespaceVolumeDataSource
            // feature and a ReferenceGrant in the source namespace.
            claim.data_source_ref = Some(TypedObjectReference {
                api_group: None,
                kind: "PersistentVolumeClaim".into(),
                name: name.clone(),
                namespace: Some(from.clone()),
            });
        }
        RootSource::ClonePvc { name, .. } => {
            claim.data_source = Some(TypedLocalObjectReference {
                api_group: None,
                kind: "PersistentVolumeClaim".into(),
                name: name.clone(),
            });
        }
        RootSource::Snapshot { name } => {
            claim.data_source = Some(TypedLocalObjectReference {
                api_group: Some("snapshot.storage.k8s.io".into()),
                kind: "VolumeSnapshot".into(),
                name: name.clone(),
            });
        }
    }
    if imported {
        pvc.metadata.annotations = Some(BTreeMap::from([(
            IMPORTED_ANNOTATION.to_owned(),
            source.hash(),
        )]));
    }
    pvc
}

/// Whether the root disk claim holds `source` already: imported (marked) or
/// created from the clone/snapshot source (the provisioner fills it before
/// binding).
pub fn root_disk_ready(pvc: &PersistentVolumeClaim, source: &RootSource) -> bool {
    let bound = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Bound");
    match source {
        RootSource::Import { .. } => {
            bound
                && pvc
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(IMPORTED_ANNOTATION))
                    .is_some()
        }
        _ => bound,
    }
}

/// Whether the root disk claim was imported from exactly `source`.
pub fn imported_from(pvc: &PersistentVolumeClaim, source: &RootSource) -> bool {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IMPORTED_ANNOTATION))
        .is_some_and(|h| *h == source.hash())
}

/// The data volume claims, in spec order.
pub fn data_volumes(vm: &str, namespace: &str, spec: &VmSpec) -> Vec<PersistentVolumeClaim> {
    let names = Names::of(vm);
    spec.volumes
        .iter()
        .map(|v| {
            let mut pvc = persistent_volume_claim(&PvcParams {
                labels: labels(vm, "datadisk"),
                storage_class: v.storage_class.clone(),
                access_modes: vec![pvc_mode(v.access_mode)],
                ..PvcParams::new(names.volume(&v.name), namespace, v.size.clone())
            });
            pvc.spec
                .as_mut()
                .expect("the builder sets a spec")
                .volume_mode = Some("Block".into());
            pvc
        })
        .collect()
}

/// The importer Job: `novacron-launcher import` downloads the image into
/// `disk.img` on the root disk claim, verifying the checksum and converting
/// it to a qcow2 of the disk's size. Retries are the Job's (exponential
/// backoff, at most `backoffLimit`), never a hot loop.
pub fn importer_job(
    vm: &str,
    namespace: &str,
    spec: &VmSpec,
    url: &str,
    checksum: Option<&str>,
    source_hash: &str,
    image: &str,
) -> Job {
    // Validation guarantees a parseable size; 0 lets the importer keep the
    // image's own size.
    let size_bytes = operator_core::quantity::parse_bytes(&spec.resources.disk.0).unwrap_or(0);
    let names = Names::of(vm);
    let mut args = vec![
        "import".to_owned(),
        "--source".into(),
        url.to_owned(),
        "--dest".into(),
        ROOT_IMAGE.into(),
        "--format".into(),
        "qcow2".into(),
        "--size".into(),
        size_bytes.to_string(),
    ];
    if let Some(c) = checksum {
        args.extend(["--checksum".to_owned(), c.to_owned()]);
    }
    let container = Container {
        name: IMPORTER_CONTAINER.into(),
        image: Some(image.to_owned()),
        command: Some(vec!["novacron-launcher".into()]),
        args: Some(args),
        volume_mounts: Some(vec![
            VolumeMount {
                name: ROOT_DISK.into(),
                mount_path: ROOT_MOUNT.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("100m".into())),
                ("memory".to_owned(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("512Mi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_container_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(vec![
                Volume {
                    name: ROOT_DISK.into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: names.root_disk(),
                        read_only: None,
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(Default::default()),
                    ..Volume::default()
                },
            ]),
            security_context: Some(restricted_pod_security_context(
                QEMU_UID, QEMU_UID, QEMU_UID,
            )),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
    };
    job(&JobParams {
        labels: labels(vm, "importer"),
        backoff_limit: Some(3),
        active_deadline_seconds: Some(6 * 3600),
        ..JobParams::new(names.import_job(source_hash), namespace, template)
    })
}

/// State of an importer Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportState {
    Running,
    Succeeded,
    Failed(String),
}

/// The state of an importer Job from its status conditions.
pub fn import_state(job: &Job) -> ImportState {
    let status = job.status.clone().unwrap_or_default();
    for c in status.conditions.unwrap_or_default() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => return ImportState::Succeeded,
            "Failed" => {
                return ImportState::Failed(
                    c.message
                        .or(c.reason)
                        .unwrap_or_else(|| "the importer failed".into()),
                );
            }
            _ => {}
        }
    }
    if status.succeeded.unwrap_or(0) > 0 {
        ImportState::Succeeded
    } else {
        ImportState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{VmImage, VmResources, Volume as VmVolume};
    use serde_json::json;

    fn spec() -> VmSpec {
        VmSpec {
            resources: VmResources {
                cpu: 2,
                memory: Quantity("4Gi".into()),
                disk: Quantity("50Gi".into()),
            },
            image: VmImage {
                source: "https://example.com/u.qcow2".into(),
                ..VmImage::default()
            },
            volumes: vec![VmVolume {
                name: "data".into(),
                size: Quantity("100Gi".into()),
                storage_class: Some("fast".into()),
                access_mode: Some(AccessMode::ReadWriteMany),
            }],
            ..VmSpec::default()
        }
    }

    fn import() -> RootSource {
        RootSource::Import {
            url: "https://example.com/u.qcow2".into(),
            checksum: Some("sha256:ab".into()),
        }
    }

    #[test]
    fn root_disk_claims_by_source() {
        let pvc = root_disk("web", "ns", &spec(), &import(), false);
        let v = serde_json::to_value(&pvc).unwrap();
        assert_eq!(v["metadata"]["name"], "web-rootdisk");
        assert_eq!(v["spec"]["resources"]["requests"]["storage"], "50Gi");
        assert_eq!(v["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(v["spec"]["volumeMode"], "Filesystem");
        assert!(v["spec"].get("dataSource").is_none());
        assert!(v["metadata"].get("annotations").is_none());

        let marked = root_disk("web", "ns", &spec(), &import(), true);
        assert!(imported_from(&marked, &import()));

        let clone = root_disk(
            "web",
            "ns",
            &spec(),
            &RootSource::ClonePvc {
                namespace: None,
                name: "golden".into(),
            },
            false,
        );
        let v = serde_json::to_value(&clone).unwrap();
        assert_eq!(
            v["spec"]["dataSource"],
            json!({"kind": "PersistentVolumeClaim", "name": "golden"})
        );
        let cross = root_disk(
            "web",
            "ns",
            &spec(),
            &RootSource::ClonePvc {
                namespace: Some("images".into()),
                name: "golden".into(),
            },
            false,
        );
        let v = serde_json::to_value(&cross).unwrap();
        assert_eq!(
            v["spec"]["dataSourceRef"],
            json!({"kind": "PersistentVolumeClaim", "name": "golden", "namespace": "images"})
        );
        let snap = root_disk(
            "web",
            "ns",
            &spec(),
            &RootSource::Snapshot { name: "s1".into() },
            false,
        );
        let v = serde_json::to_value(&snap).unwrap();
        assert_eq!(
            v["spec"]["dataSource"],
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s1"})
        );
    }

    #[test]
    fn data_volumes_are_block_claims_with_their_class_and_mode() {
        let pvcs = data_volumes("web", "ns", &spec());
        let v = serde_json::to_value(&pvcs[0]).unwrap();
        assert_eq!(v["metadata"]["name"], "web-data");
        assert_eq!(v["spec"]["storageClassName"], "fast");
        assert_eq!(v["spec"]["accessModes"], json!(["ReadWriteMany"]));
        assert_eq!(v["spec"]["volumeMode"], "Block");
        assert_eq!(v["spec"]["resources"]["requests"]["storage"], "100Gi");
    }

    #[test]
    fn importer_job_runs_the_launcher_import_on_the_root_claim() {
        let src = import();
        let j = importer_job(
            "web",
            "ns",
            &spec(),
            "https://example.com/u.qcow2",
            Some("sha256:ab"),
            &src.hash(),
            "img:1",
        );
        let v = serde_json::to_value(&j).unwrap();
        assert!(
            v["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-import-")
        );
        assert_eq!(v["spec"]["backoffLimit"], 3);
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "web-rootdisk"
        );
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "img:1");
        assert_eq!(
            c["args"],
            json!([
                "import",
                "--source",
                "https://example.com/u.qcow2",
                "--dest",
                "/disks/rootdisk/disk.img",
                "--format",
                "qcow2",
                "--size",
                "53687091200",
                "--checksum",
                "sha256:ab"
            ])
        );
        assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    }

    #[test]
    fn import_state_from_job_conditions() {
        let mut j: Job = serde_json::from_value(json!({"status": {}})).unwrap();
        assert_eq!(import_state(&j), ImportState::Running);
        j = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
        ]}}))
        .unwrap();
        assert_eq!(
            import_state(&j),
            ImportState::Failed("Job has reached the specified backoff limit".into())
        );
        j = serde_json::from_value(json!({"status": {"succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}
        ]}}))
        .unwrap();
        assert_eq!(import_state(&j), ImportState::Succeeded);
    }

    #[test]
    fn source_hashes_differ_by_source() {
        assert_ne!(
            import().hash(),
            RootSource::Import {
                url: "https://example.com/u.qcow2".into(),
                checksum: None
            }
            .hash()
        );
    }
}
