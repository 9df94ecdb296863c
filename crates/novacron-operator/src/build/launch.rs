//! The launcher's input: a [`LaunchConfig`] resolved from the VM spec
//! (sizes in bytes, paths inside the pod, stable MACs, rendered cloud-init),
//! written as `launch.json` into a ConfigMap the launcher pod mounts.
//!
//! Networking: the pod network is QEMU user-mode networking (NAT behind the
//! pod's address, like KubeVirt's masquerade binding) whatever its `type`;
//! every other network is a Multus attachment whose interface in the pod
//! (`net1`, `net2`, ... in spec order) is handed to QEMU as a tap device.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use novacron_launcher::cloudinit::{self, CloudInitInput, InterfaceInput, IpInput};
use novacron_launcher::config::{
    DiskConfig, DiskFormat, ExecHook, HookConfig, HooksConfig, HostDeviceConfig, HostDeviceKind,
    HttpGetHook, LaunchConfig, NicConfig, NicKind,
};
use operator_core::builders::{ConfigMapParams, config_map};
use operator_core::quantity::parse_bytes;

use super::devices::{ResolvedDevices, pci_resource_env};
use super::disks::{BLOCK_DIR, ROOT_DISK, ROOT_IMAGE};
use super::{Names, labels, mac};
use crate::crd::{
    DeviceType, HttpScheme, IpConfig, IpMethod, LifecycleHandler, Network, NetworkType, VmSpec,
};
use crate::validate::{POD_NETWORK, is_pod_network};

/// Key of the launch config in its ConfigMap.
pub const LAUNCH_KEY: &str = "launch.json";
/// Where the launch ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/novacron";
/// Where a `userDataSecretRef` Secret is mounted.
pub const USER_DATA_DIR: &str = "/etc/novacron-userdata";

/// Identity of the VM the config is for.
#[derive(Clone, Copy, Debug)]
pub struct VmIdentity<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
}

/// One interface of the VM, as the pod and the guest see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The spec's network name.
    pub name: String,
    pub mac: String,
    /// Multus attachment (`NAMESPACE/NAME` or `NAME`) and the pod interface
    /// name it gets; `None` for the pod network.
    pub attachment: Option<(String, String)>,
}

/// The VM's interfaces: the spec's networks in order, or one pod-network
/// interface when none are listed.
pub fn interfaces(uid: &str, spec: &VmSpec) -> Vec<Interface> {
    if spec.networks.is_empty() {
        return vec![Interface {
            name: POD_NETWORK.into(),
            mac: mac::derive(uid, POD_NETWORK),
            attachment: None,
        }];
    }
    let mut next = 1;
    spec.networks
        .iter()
        .map(|n| {
            let attachment = (!is_pod_network(n)).then(|| {
                let ifname = format!("net{next}");
                next += 1;
                (
                    n.network_attachment
                        .clone()
                        .unwrap_or_else(|| n.name.clone()),
                    ifname,
                )
            });
            Interface {
                name: n.name.clone(),
                mac: mac::for_interface(uid, &n.name, n.mac_address.as_deref()),
                attachment,
            }
        })
        .collect()
}

fn ip_input(c: &IpConfig) -> IpInput {
    match c.method {
        IpMethod::Dhcp => IpInput::Dhcp,
        IpMethod::Static => IpInput::Static {
            address: c.address.clone().unwrap_or_default(),
            gateway: c.gateway.clone(),
            dns: c.dns.clone(),
        },
    }
}

fn hook(h: &LifecycleHandler) -> HookConfig {
    HookConfig {
        exec: h.exec.as_ref().map(|e| ExecHook {
            command: e.command.clone(),
        }),
        http_get: h.http_get.as_ref().map(|g| HttpGetHook {
            host: g.host.clone(),
            port: u16::try_from(g.port).unwrap_or(80),
            path: g.path.clone(),
            scheme: match g.scheme {
                HttpScheme::Http => "http".into(),
                HttpScheme::Https => "https".into(),
            },
        }),
        timeout_seconds: u64::try_from(h.timeout_seconds).unwrap_or(30),
    }
}

fn network_of<'a>(spec: &'a VmSpec, name: &str) -> Option<&'a Network> {
    spec.networks.iter().find(|n| n.name == name)
}

/// The launch config of a validated VM spec.
pub fn launch_config(
    id: VmIdentity<'_>,
    spec: &VmSpec,
    devices: &ResolvedDevices,
    termination_grace_period_seconds: i64,
) -> Result<LaunchConfig, String> {
    let memory = parse_bytes(&spec.resources.memory.0)
        .map_err(|e| format!("spec.template.spec.resources.memory: {e}"))?;
    let vcpus = u32::try_from(spec.resources.cpu)
        .ok()
        .filter(|c| *c >= 1)
        .ok_or_else(|| "spec.template.spec.resources.cpu: must be at least 1".to_string())?;
    let mut config = LaunchConfig::new(id.name, id.namespace, id.uid, vcpus, memory);
    config.shutdown_timeout_seconds = u64::try_from(termination_grace_period_seconds).unwrap_or(0);

    config.disks.push(DiskConfig {
        name: ROOT_DISK.into(),
        path: ROOT_IMAGE.into(),
        format: DiskFormat::Qcow2,
        block: false,
        read_only: false,
        boot: true,
        serial: Some(ROOT_DISK.into()),
    });
    for v in &spec.volumes {
        config.disks.push(DiskConfig {
            name: v.name.clone(),
            path: PathBuf::from(BLOCK_DIR).join(&v.name),
            format: DiskFormat::Raw,
            block: true,
            read_only: false,
            boot: false,
            serial: Some(v.name.clone()),
        });
    }

    let ifaces = interfaces(id.uid, spec);
    for i in &ifaces {
        config.nics.push(NicConfig {
            name: i.name.clone(),
            model: "virtio-net-pci".into(),
            mac: i.mac.clone(),
            kind: if i.attachment.is_some() {
                NicKind::Tap
            } else {
                NicKind::Pod
            },
            tap_device: i.attachment.as_ref().map(|(_, ifname)| ifname.clone()),
            bridge: None,
            forward_ports: Vec::new(),
        });
    }

    let input = CloudInitInput {
        instance_id: id.uid.to_owned(),
        hostname: id.name.to_owned(),
        user_data: spec.user_data.clone(),
        interfaces: ifaces
            .iter()
            .map(|i| {
                let n = network_of(spec, &i.name);
                InterfaceInput {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    ipv4: n.and_then(|n| n.ipv4.as_ref()).map(ip_input),
                    ipv6: n.and_then(|n| n.ipv6.as_ref()).map(ip_input),
                }
            })
            .collect(),
    };
    let mut cloud_init = cloudinit::render(&input);
    if let Some(r) = &spec.user_data_secret_ref {
        cloud_init.user_data = None;
        cloud_init.user_data_file = Some(PathBuf::from(USER_DATA_DIR).join(&r.key));
    }
    config.cloud_init = Some(cloud_init);

    let mut counters: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, resource) in &devices.host_devices {
        let prefix = match kind {
            DeviceType::Gpu => "gpu",
            DeviceType::Fpga => "fpga",
        };
        let n = counters.entry(prefix).or_default();
        config.host_devices.push(HostDeviceConfig {
            name: format!("{prefix}-{n}"),
            kind: match kind {
                DeviceType::Gpu => HostDeviceKind::Gpu,
                DeviceType::Fpga => HostDeviceKind::Fpga,
            },
            pci_address: None,
            resource_env: Some(pci_resource_env(resource)),
        });
        *n += 1;
    }

    if let Some(l) = &spec.lifecycle {
        config.hooks = HooksConfig {
            pre_start: l.pre_start.as_ref().map(hook),
            pre_stop: l.pre_stop.as_ref().map(hook),
        };
    }
    config
        .check()
        .map_err(|e| format!("the launch configuration is not runnable: {e}"))?;
    Ok(config)
}

/// The ConfigMap holding `launch.json`.
pub fn launch_config_map(config: &LaunchConfig) -> ConfigMap {
    let json = serde_json::to_string_pretty(config).expect("a LaunchConfig serializes");
    config_map(&ConfigMapParams {
        name: Names::of(&config.name).config_map(),
        namespace: config.namespace.clone(),
        labels: labels(&config.name, "launcher"),
        data: BTreeMap::from([(LAUNCH_KEY.to_owned(), json)]),
    })
}

/// Whether a network keeps working across live migration (only the NAT
/// binding of the pod network does).
pub fn migratable_binding(n: &Network) -> bool {
    !is_pod_network(n) || n.type_ == NetworkType::Masquerade
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::devices::DeviceMapping;
    use crate::crd::{Device, ExecAction, HttpGetAction, Lifecycle, VmImage, VmResources, Volume};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    const UID: &str = "6a1c0b9e-1111-4222-8333-444455556666";

    fn id() -> VmIdentity<'static> {
        VmIdentity {
            name: "web",
            namespace: "prod",
            uid: UID,
        }
    }

    fn net(name: &str, t: NetworkType) -> Network {
        serde_json::from_value(serde_json::json!({"name": name, "type": t.as_str()})).unwrap()
    }

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
            ..VmSpec::default()
        }
    }

    #[test]
    fn a_minimal_vm_boots_from_its_root_disk_on_the_pod_network() {
        let c = launch_config(id(), &spec(), &ResolvedDevices::default(), 180).unwrap();
        assert_eq!(c.vcpus, 2);
        assert_eq!(c.memory_bytes, 4 << 30);
        assert_eq!(c.uid, UID);
        assert_eq!(c.shutdown_timeout_seconds, 180);
        assert_eq!(c.disks.len(), 1);
        assert_eq!(c.disks[0].path, PathBuf::from("/disks/rootdisk/disk.img"));
        assert!(c.disks[0].boot);
        assert_eq!(c.nics.len(), 1);
        assert_eq!(c.nics[0].kind, NicKind::Pod);
        assert_eq!(c.nics[0].mac, mac::derive(UID, "default"));
        let ci = c.cloud_init.unwrap();
        assert!(ci.meta_data.contains(UID), "{}", ci.meta_data);
        assert!(ci.meta_data.contains("web"), "{}", ci.meta_data);
        assert!(ci.network_config.is_none());
    }

    #[test]
    fn multus_networks_static_addresses_volumes_devices_and_hooks() {
        let mut s = spec();
        let mut storage = net("storage", NetworkType::Bridge);
        storage.ipv4 = Some(IpConfig {
            method: IpMethod::Static,
            address: Some("10.0.1.10/24".into()),
            gateway: Some("10.0.1.1".into()),
            dns: vec!["10.0.1.2".into()],
        });
        s.networks = vec![
            net("default", NetworkType::Masquerade),
            storage,
            net("fast", NetworkType::SrIov),
        ];
        s.networks[2].network_attachment = Some("infra/sriov-a".into());
        s.volumes = vec![Volume {
            name: "data".into(),
            size: Quantity("10Gi".into()),
            storage_class: None,
            access_mode: None,
        }];
        s.devices = vec![Device {
            type_: DeviceType::Gpu,
            vendor: Some("nvidia".into()),
            model: None,
            count: 2,
        }];
        s.user_data = Some("#cloud-config\npackages: [nginx]\n".into());
        s.lifecycle = Some(Lifecycle {
            pre_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: vec!["/bin/true".into()],
                }),
                http_get: None,
                timeout_seconds: 5,
            }),
            pre_stop: Some(LifecycleHandler {
                exec: None,
                http_get: Some(HttpGetAction {
                    path: "/drain".into(),
                    port: 8080,
                    host: None,
                    scheme: HttpScheme::Https,
                }),
                timeout_seconds: 10,
            }),
        });
        let devices = DeviceMapping::default().resolve(&s.devices).unwrap();
        let c = launch_config(id(), &s, &devices, 30).unwrap();

        let kinds: Vec<_> = c
            .nics
            .iter()
            .map(|n| (n.name.as_str(), n.kind, n.tap_device.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("default", NicKind::Pod, None),
                ("storage", NicKind::Tap, Some("net1")),
                ("fast", NicKind::Tap, Some("net2")),
            ]
        );
        assert_eq!(c.disks[1].path, PathBuf::from("/dev/disks/data"));
        assert!(c.disks[1].block);
        assert_eq!(c.host_devices.len(), 1);
        assert_eq!(
            c.host_devices[0].resource_env.as_deref(),
            Some("PCI_RESOURCE_NVIDIA_COM_GPU")
        );
        let ci = c.cloud_init.as_ref().unwrap();
        assert!(ci.user_data.as_deref().unwrap().contains("nginx"));
        let netcfg = ci.network_config.as_deref().unwrap();
        assert!(netcfg.contains("10.0.1.10/24"), "{netcfg}");
        assert!(netcfg.contains("10.0.1.1"), "{netcfg}");
        assert!(netcfg.contains(&mac::derive(UID, "storage")), "{netcfg}");
        let pre_stop = c
            .hooks
            .pre_stop
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(pre_stop.url(), "https://127.0.0.1:8080/drain");
        assert_eq!(c.hooks.pre_start.as_ref().unwrap().timeout_seconds, 5);

        let ifs = interfaces(UID, &s);
        assert_eq!(
            ifs[2].attachment,
            Some(("infra/sriov-a".into(), "net2".into()))
        );
    }

    #[test]
    fn user_data_from_a_secret_is_read_from_the_mounted_file() {
        let mut s = spec();
        s.user_data_secret_ref = Some(crate::crd::SecretKeyRef {
            name: "ci".into(),
            key: "userdata".into(),
        });
        let c = launch_config(id(), &s, &ResolvedDevices::default(), 30).unwrap();
        let ci = c.cloud_init.unwrap();
        assert_eq!(ci.user_data, None);
        assert_eq!(
            ci.user_data_file,
            Some(PathBuf::from("/etc/novacron-userdata/userdata"))
        );
    }

    #[test]
    fn the_config_map_holds_launch_json() {
        let c = launch_config(id(), &spec(), &ResolvedDevices::default(), 30).unwrap();
        let cm = launch_config_map(&c);
        assert_eq!(cm.metadata.name.as_deref(), Some("web-launch"));
        let json = &cm.data.as_ref().unwrap()[LAUNCH_KEY];
        let back: LaunchConfig = serde_json::from_str(json).unwrap();
        assert_eq!(back, c);
    }
}
