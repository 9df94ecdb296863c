//! The launcher pod: one per running VM. It runs `novacron-launcher` (which
//! supervises QEMU) with the launch ConfigMap, the disks and the control
//! port; it carries the VM's placement (node selector, affinity,
//! tolerations, device constraints), its Multus attachments and its
//! resources (guest + overhead).
//!
//! Resources: each vCPU requests 100m (KubeVirt's default CPU allocation
//! ratio of 10) and is limited to one core; memory is requested and limited
//! at guest memory + [`MEMORY_OVERHEAD_MIB`] + 2% (QEMU, page tables, the
//! launcher). `/dev/kvm` comes from a device plugin extended resource (e.g.
//! `devices.kubevirt.io/kvm`) only when the operator is configured with
//! `NOVACRON_KVM_RESOURCE`; without it the launcher falls back to software
//! emulation where `/dev/kvm` is absent.
//!
//! `restartPolicy: OnFailure`: a launcher that fails (QEMU crash, failed
//! preStart hook) is restarted by the kubelet with its exponential backoff,
//! never in a hot loop; a guest that powers off ends the pod `Succeeded`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, Probe, ResourceRequirements,
    SecretVolumeSource, Toleration, Volume, VolumeDevice, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use novacron_launcher::config::{CONTROL_PORT, CONTROL_PORT_NAME, DEFAULT_RUN_DIR, LaunchConfig};
use operator_core::builders::{
    restricted_container_security_context, restricted_pod_security_context,
};
use serde_json::json;

use super::devices::ResolvedDevices;
use super::disks::{BLOCK_DIR, QEMU_UID, ROOT_DISK, ROOT_MOUNT};
use super::launch::{CONFIG_DIR, Interface, LAUNCH_KEY, USER_DATA_DIR};
use super::{Names, SPEC_HASH_ANNOTATION, labels, stable_hash_hex};
use crate::crd::{VmMetadata, VmSpec};

/// Multus' annotation listing a pod's extra networks.
pub const MULTUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// Fixed memory overhead of a launcher pod, in MiB.
pub const MEMORY_OVERHEAD_MIB: u64 = 256;
/// Seconds the kubelet waits beyond the guest's grace period before killing
/// the launcher (hooks and QEMU's own exit).
pub const EXTRA_GRACE_SECONDS: i64 = 30;

/// Operator settings that shape launcher pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSettings {
    /// The launcher image (`novacron-launcher`, QEMU, qemu-img).
    pub image: String,
    /// Extended resource exposing `/dev/kvm`, when the cluster has a KVM
    /// device plugin.
    pub kvm_resource: Option<String>,
}

impl Default for PodSettings {
    fn default() -> Self {
        PodSettings {
            image: format!(
                "ghcr.io/orchestra-operators/novacron-launcher:{}",
                env!("CARGO_PKG_VERSION")
            ),
            kvm_resource: None,
        }
    }
}

/// Memory requested for a guest of `guest_bytes`, in MiB.
pub fn pod_memory_mib(guest_bytes: u64) -> u64 {
    let guest_mib = guest_bytes.div_ceil(1 << 20);
    guest_mib + MEMORY_OVERHEAD_MIB + guest_mib.div_ceil(50)
}

/// The Multus annotation value for the VM's attachments (`None` when it
/// only uses the pod network).
pub fn multus_networks(namespace: &str, ifaces: &[Interface]) -> Option<String> {
    let list: Vec<_> = ifaces
        .iter()
        .filter_map(|i| {
            let (attachment, ifname) = i.attachment.as_ref()?;
            let (ns, name) = attachment
                .split_once('/')
                .unwrap_or((namespace, attachment.as_str()));
            Some(json!({"name": name, "namespace": ns, "interface": ifname, "mac": i.mac}))
        })
        .collect();
    (!list.is_empty()).then(|| serde_json::Value::Array(list).to_string())
}

fn volume(name: &str, claim: String) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim,
            read_only: None,
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// Everything the pod is built from.
pub struct PodInput<'a> {
    pub config: &'a LaunchConfig,
    pub spec: &'a VmSpec,
    /// The template's labels and annotations for the pod.
    pub metadata: Option<&'a VmMetadata>,
    pub interfaces: &'a [Interface],
    pub devices: &'a ResolvedDevices,
    pub settings: &'a PodSettings,
}

/// The launcher pod, with the [`SPEC_HASH_ANNOTATION`] of its content.
pub fn launcher_pod(input: &PodInput<'_>) -> Pod {
    let PodInput {
        config,
        spec,
        metadata,
        interfaces,
        devices,
        settings,
    } = input;
    let names = Names::of(&config.name);

    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    let mem = Quantity(format!("{}Mi", pod_memory_mib(config.memory_bytes)));
    requests.insert(
        "cpu".to_owned(),
        Quantity(format!("{}m", config.vcpus * 100)),
    );
    requests.insert("memory".to_owned(), mem.clone());
    limits.insert("cpu".to_owned(), Quantity(config.vcpus.to_string()));
    limits.insert("memory".to_owned(), mem);
    let mut extended: BTreeMap<String, i64> = devices.resources.clone();
    if let Some(kvm) = &settings.kvm_resource {
        extended.insert(kvm.clone(), 1);
    }
    for (resource, count) in extended {
        // Extended resources cannot be overcommitted: requests = limits.
        requests.insert(resource.clone(), Quantity(count.to_string()));
        limits.insert(resource, Quantity(count.to_string()));
    }

    let mut volumes = vec![
        Volume {
            name: "launch".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        volume(ROOT_DISK, names.root_disk()),
        Volume {
            name: "run".into(),
            empty_dir: Some(Default::default()),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(Default::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        mount("launch", CONFIG_DIR, true),
        mount(ROOT_DISK, ROOT_MOUNT, false),
        mount("run", DEFAULT_RUN_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    if let Some(r) = &spec.user_data_secret_ref {
        volumes.push(Volume {
            name: "userdata".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(r.name.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("userdata", USER_DATA_DIR, true));
    }
    if let Some(dir) = &config.migration_tls_dir {
        // Both sides of a migration read the VM's certificates here.
        volumes.push(Volume {
            name: "migration-tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.migration_tls()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("migration-tls", &dir.to_string_lossy(), true));
    }
    let mut devices_block = Vec::new();
    for v in &spec.volumes {
        let vol = format!("disk-{}", v.name);
        volumes.push(volume(&vol, names.volume(&v.name)));
        devices_block.push(VolumeDevice {
            name: vol,
            device_path: format!("{BLOCK_DIR}/{}", v.name),
        });
    }

    let container = Container {
        name: "compute".into(),
        image: Some(settings.image.clone()),
        command: Some(vec!["novacron-launcher".into()]),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{LAUNCH_KEY}"),
            "--listen".into(),
            format!("0.0.0.0:{CONTROL_PORT}"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(CONTROL_PORT_NAME.into()),
            container_port: i32::from(CONTROL_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(novacron_launcher::api::HEALTHZ_PATH.into()),
                port: IntOrString::String(CONTROL_PORT_NAME.into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            limits: Some(limits),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(mounts),
        volume_devices: (!devices_block.is_empty()).then_some(devices_block),
        security_context: Some(restricted_container_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };

    let mut node_selector = spec.node_selector.clone();
    node_selector.extend(devices.node_selector.clone());
    let mut tolerations: Vec<Toleration> = spec.tolerations.clone();
    for t in &devices.tolerations {
        if !tolerations.contains(t) {
            tolerations.push(t.clone());
        }
    }

    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        node_selector: (!node_selector.is_empty()).then_some(node_selector),
        affinity: spec.affinity.clone(),
        tolerations: (!tolerations.is_empty()).then_some(tolerations),
        restart_policy: Some("OnFailure".into()),
        termination_grace_period_seconds: Some(
            spec.termination_grace_period_seconds + EXTRA_GRACE_SECONDS,
        ),
        security_context: Some(restricted_pod_security_context(
            QEMU_UID, QEMU_UID, QEMU_UID,
        )),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        hostname: Some(config.name.clone()),
        ..PodSpec::default()
    };

    // The operator's own labels win over the user's.
    let mut pod_labels = metadata.map(|m| m.labels.clone()).unwrap_or_default();
    pod_labels.extend(labels(&config.name, "launcher"));
    let mut annotations = metadata.map(|m| m.annotations.clone()).unwrap_or_default();
    if let Some(networks) = multus_networks(&config.namespace, interfaces) {
        annotations.insert(MULTUS_ANNOTATION.into(), networks);
    }
    let launch_json = serde_json::to_string(config).expect("a LaunchConfig serializes");
    let spec_json = serde_json::to_string(&pod_spec).expect("a PodSpec serializes");
    let annotations_json = serde_json::to_string(&annotations).expect("a map serializes");
    annotations.insert(
        SPEC_HASH_ANNOTATION.into(),
        stable_hash_hex(&[&launch_json, &spec_json, &annotations_json]),
    );
    Pod {
        metadata: ObjectMeta {
            name: Some(names.pod()),
            namespace: Some(config.namespace.clone()),
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The pod's spec hash annotation.
pub fn spec_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(SPEC_HASH_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::devices::DeviceMapping;
    use crate::build::launch::{VmIdentity, interfaces, launch_config};
    use crate::crd::{
        Device, DeviceType, Network, SecretKeyRef, VmImage, VmResources, Volume as VmVolume,
    };

    const UID: &str = "6a1c0b9e-1111-4222-8333-444455556666";

    fn spec() -> VmSpec {
        VmSpec {
            resources: VmResources {
                cpu: 2,
                memory: Quantity("4Gi".into()),
                disk: Quantity("50Gi".into()),
            },
            image: VmImage {
                source: "marketplace://ubuntu".into(),
                ..VmImage::default()
            },
            termination_grace_period_seconds: 60,
            ..VmSpec::default()
        }
    }

    fn build(spec: &VmSpec, meta: Option<&VmMetadata>, settings: &PodSettings) -> Pod {
        let devices = DeviceMapping::default().resolve(&spec.devices).unwrap();
        let id = VmIdentity {
            name: "web",
            namespace: "prod",
            uid: UID,
        };
        let config = launch_config(id, spec, &devices, 60).unwrap();
        let ifaces = interfaces(UID, spec);
        launcher_pod(&PodInput {
            config: &config,
            spec,
            metadata: meta,
            interfaces: &ifaces,
            devices: &devices,
            settings,
        })
    }

    #[test]
    fn a_minimal_launcher_pod() {
        let pod = build(&spec(), None, &PodSettings::default());
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "web-launcher");
        assert_eq!(v["metadata"]["labels"]["novacron.io/vm"], "web");
        assert!(
            v["metadata"]["annotations"]
                .get(MULTUS_ANNOTATION)
                .is_none()
        );
        assert_eq!(
            v["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
                .as_str()
                .unwrap()
                .len(),
            16
        );
        let s = &v["spec"];
        assert_eq!(s["restartPolicy"], "OnFailure");
        assert_eq!(s["terminationGracePeriodSeconds"], 90);
        assert_eq!(s["automountServiceAccountToken"], false);
        assert_eq!(s["securityContext"]["runAsUser"], 107);
        let c = &s["containers"][0];
        assert!(
            c["image"]
                .as_str()
                .unwrap()
                .starts_with("ghcr.io/orchestra-operators/novacron-launcher:")
        );
        assert_eq!(
            c["args"],
            json!([
                "--config",
                "/etc/novacron/launch.json",
                "--listen",
                "0.0.0.0:8100"
            ])
        );
        assert_eq!(
            c["ports"],
            json!([{"name": "control", "containerPort": 8100, "protocol": "TCP"}])
        );
        // 4Gi guest + 256Mi + 2%.
        assert_eq!(
            c["resources"],
            json!({
                "requests": {"cpu": "200m", "memory": "4434Mi"},
                "limits": {"cpu": "2", "memory": "4434Mi"}
            })
        );
        assert_eq!(s["volumes"][0]["configMap"]["name"], "web-launch");
        assert_eq!(
            s["volumes"][1]["persistentVolumeClaim"]["claimName"],
            "web-rootdisk"
        );
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    }

    #[test]
    fn placement_devices_networks_volumes_and_metadata_reach_the_pod() {
        let mut s = spec();
        s.node_selector = BTreeMap::from([("disk".into(), "ssd".into())]);
        s.affinity = Some(
            serde_json::from_value(json!({"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]}
            }}))
            .unwrap(),
        );
        s.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("vms".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }];
        s.devices = vec![Device {
            type_: DeviceType::Gpu,
            vendor: Some("nvidia".into()),
            model: Some("tesla-t4".into()),
            count: 2,
        }];
        s.networks = vec![
            serde_json::from_value::<Network>(json!({"name": "default", "type": "masquerade"}))
                .unwrap(),
            serde_json::from_value::<Network>(json!({"name": "storage", "type": "bridge"}))
                .unwrap(),
        ];
        s.volumes = vec![VmVolume {
            name: "data".into(),
            size: Quantity("10Gi".into()),
            storage_class: None,
            access_mode: None,
        }];
        s.user_data_secret_ref = Some(SecretKeyRef {
            name: "ci".into(),
            key: "userdata".into(),
        });
        let meta = VmMetadata {
            labels: BTreeMap::from([
                ("team".into(), "a".into()),
                ("novacron.io/vm".into(), "spoof".into()),
            ]),
            annotations: BTreeMap::from([("prometheus.io/scrape".into(), "true".into())]),
        };
        let settings = PodSettings {
            image: "img:1".into(),
            kvm_resource: Some("devices.kubevirt.io/kvm".into()),
        };
        let pod = build(&s, Some(&meta), &settings);
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["labels"]["team"], "a");
        assert_eq!(v["metadata"]["labels"]["novacron.io/vm"], "web");
        assert_eq!(v["metadata"]["annotations"]["prometheus.io/scrape"], "true");
        let multus: serde_json::Value = serde_json::from_str(
            v["metadata"]["annotations"][MULTUS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            multus,
            json!([{"name": "storage", "namespace": "prod", "interface": "net1",
                    "mac": crate::build::mac::derive(UID, "storage")}])
        );
        let spec = &v["spec"];
        assert_eq!(
            spec["nodeSelector"],
            json!({"disk": "ssd", "nvidia.com/gpu.product": "tesla-t4"})
        );
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["key"],
            "zone"
        );
        assert_eq!(spec["tolerations"][0]["key"], "dedicated");
        assert_eq!(spec["tolerations"][1]["key"], "nvidia.com/gpu");
        let c = &spec["containers"][0];
        assert_eq!(c["resources"]["requests"]["nvidia.com/gpu"], "2");
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "2");
        assert_eq!(c["resources"]["limits"]["devices.kubevirt.io/kvm"], "1");
        assert_eq!(
            c["volumeDevices"],
            json!([{"name": "disk-data", "devicePath": "/dev/disks/data"}])
        );
        let vols = spec["volumes"].as_array().unwrap();
        assert!(vols.iter().any(|v| v["secret"]["secretName"] == "ci"));
        assert!(
            vols.iter()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == "web-data")
        );
    }

    #[test]
    fn the_spec_hash_changes_with_the_vm_and_not_otherwise() {
        let a = build(&spec(), None, &PodSettings::default());
        let b = build(&spec(), None, &PodSettings::default());
        assert_eq!(spec_hash(&a), spec_hash(&b));
        let mut bigger = spec();
        bigger.resources.cpu = 4;
        let c = build(&bigger, None, &PodSettings::default());
        assert_ne!(spec_hash(&a), spec_hash(&c));
    }

    #[test]
    fn memory_overhead() {
        assert_eq!(pod_memory_mib(512 << 20), 512 + 256 + 11);
    }
}
