//! Pure builder of the `qemu-system-x86_64` command line from a
//! [`LaunchConfig`]. Host facts (KVM present, allocated PCI devices, seed
//! ISO path) are passed in so the output is deterministic and unit-tested.

use std::path::Path;

use crate::config::{Accel, HostDeviceConfig, HostDeviceKind, LaunchConfig, NicKind};

/// Accelerator actually used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolvedAccel {
    Kvm,
    Tcg,
}

impl ResolvedAccel {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedAccel::Kvm => "kvm",
            ResolvedAccel::Tcg => "tcg",
        }
    }
}

/// Whether `/dev/kvm` opens read-write (what QEMU needs for `-accel kvm`).
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Picks the accelerator: `auto` takes KVM when available; `kvm` without
/// `/dev/kvm` is an error rather than a silent 10x slower VM.
pub fn resolve_accel(accel: Accel, kvm: bool) -> Result<ResolvedAccel, String> {
    match (accel, kvm) {
        (Accel::Tcg, _) | (Accel::Auto, false) => Ok(ResolvedAccel::Tcg),
        (Accel::Kvm | Accel::Auto, true) => Ok(ResolvedAccel::Kvm),
        (Accel::Kvm, false) => {
            Err("accel kvm requested but /dev/kvm cannot be opened read-write".into())
        }
    }
}

/// One PCI function to pass through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciPassthrough {
    /// Config name of the device.
    pub name: String,
    /// Device class.
    pub kind: HostDeviceKind,
    /// PCI address `dddd:bb:dd.f`.
    pub address: String,
}

/// Resolves host devices to PCI addresses: a fixed `pciAddress`, or every
/// address the device plugin put in `resourceEnv` (comma separated, as
/// KubeVirt's `PCI_RESOURCE_*` convention).
pub fn resolve_host_devices(
    devices: &[HostDeviceConfig],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<PciPassthrough>, String> {
    let mut out = Vec::new();
    for d in devices {
        let addresses: Vec<String> = match (&d.pci_address, &d.resource_env) {
            (Some(a), _) => vec![a.clone()],
            (None, Some(var)) => {
                let value = env(var).ok_or_else(|| {
                    format!("host device {:?}: environment variable {var} is not set (no device allocated?)", d.name)
                })?;
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            (None, None) => {
                return Err(format!(
                    "host device {:?} has neither pciAddress nor resourceEnv",
                    d.name
                ));
            }
        };
        if addresses.is_empty() {
            return Err(format!(
                "host device {:?}: no PCI address allocated",
                d.name
            ));
        }
        for address in addresses {
            if !is_pci_address(&address) {
                return Err(format!(
                    "host device {:?}: {address:?} is not a PCI address like 0000:65:00.0",
                    d.name
                ));
            }
            // Two entries naming the same resource must not pass a function twice.
            if out.iter().any(|p: &PciPassthrough| p.address == address) {
                continue;
            }
            out.push(PciPassthrough {
                name: d.name.clone(),
                kind: d.kind,
                address,
            });
        }
    }
    Ok(out)
}

fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.bytes()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// Host facts the command line depends on.
#[derive(Clone, Debug)]
pub struct HostFacts<'a> {
    pub accel: ResolvedAccel,
    /// The cloud-init seed ISO, when one was built.
    pub seed_iso: Option<&'a Path>,
    /// Resolved passthrough devices.
    pub pci: &'a [PciPassthrough],
}

/// QEMU block node name of the `index`th config disk (node names are
/// limited to 31 characters, so they are positional, not the disk name).
pub fn disk_node_name(index: usize) -> String {
    format!("disk{index}")
}

/// Block node name of the cloud-init seed.
pub const SEED_NODE_NAME: &str = "cidata";

/// Escapes a value for QEMU's `key=value,...` option syntax.
fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

/// The full argument list (without the binary).
pub fn command_line(config: &LaunchConfig, host: &HostFacts<'_>) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let name = esc(&format!("{}_{}", config.namespace, config.name));
    push(&["-name", &format!("guest={name},debug-threads=on")]);
    if is_uuid(&config.uid) {
        push(&["-uuid", &config.uid]);
    }
    // No defaults (no VGA, floppy, default NIC): only what the spec asks for.
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&[
        "-machine",
        &esc(&config.machine),
        "-accel",
        host.accel.as_str(),
    ]);
    let cpu = config
        .cpu_model
        .clone()
        .unwrap_or_else(|| match host.accel {
            ResolvedAccel::Kvm => "host".into(),
            ResolvedAccel::Tcg => "max".into(),
        });
    push(&["-cpu", &esc(&cpu)]);
    push(&["-smp", &config.vcpus.to_string()]);
    push(&["-m", &format!("{}M", config.memory_bytes.div_ceil(1 << 20))]);
    // QMP and the serial console through explicit chardevs: paths may
    // contain commas, which `-qmp unix:...` could not escape.
    let qmp = esc(&config.qmp_socket_path().to_string_lossy());
    push(&[
        "-chardev",
        &format!("socket,id=qmp,path={qmp},server=on,wait=off"),
        "-mon",
        "chardev=qmp,mode=control",
    ]);
    let serial = esc(&config.serial_log_path().to_string_lossy());
    push(&[
        "-chardev",
        &format!("file,id=serial0,path={serial}"),
        "-serial",
        "chardev:serial0",
    ]);

    let mut boot_index = 1;
    for (index, disk) in config.disks.iter().enumerate() {
        let node = disk_node_name(index);
        let driver = if disk.block { "host_device" } else { "file" };
        let ro = if disk.read_only { "on" } else { "off" };
        let path = esc(&disk.path.to_string_lossy());
        push(&[
            "-blockdev",
            &format!(
                "driver={driver},filename={path},node-name={node}-file,read-only={ro},cache.direct=off,aio=threads"
            ),
            "-blockdev",
            &format!(
                "driver={},file={node}-file,node-name={node},read-only={ro}",
                disk.format.as_str()
            ),
        ]);
        // virtio-blk serials are 20 bytes; the guest sees /dev/disk/by-id/virtio-<serial>.
        let serial: String = disk
            .serial
            .as_deref()
            .unwrap_or(&disk.name)
            .chars()
            .take(20)
            .collect();
        let mut dev = format!(
            "virtio-blk-pci,drive={node},id=virtio-{node},serial={}",
            esc(&serial)
        );
        if disk.boot {
            dev.push_str(&format!(",bootindex={boot_index}"));
            boot_index += 1;
        }
        push(&["-device", &dev]);
    }
    if let Some(iso) = host.seed_iso {
        let path = esc(&iso.to_string_lossy());
        push(&[
            "-blockdev",
            &format!("driver=file,filename={path},node-name={SEED_NODE_NAME}-file,read-only=on"),
            "-blockdev",
            &format!(
                "driver=raw,file={SEED_NODE_NAME}-file,node-name={SEED_NODE_NAME},read-only=on"
            ),
            "-device",
            &format!(
                "virtio-blk-pci,drive={SEED_NODE_NAME},id=virtio-{SEED_NODE_NAME},serial=cidata"
            ),
        ]);
    }

    for (index, nic) in config.nics.iter().enumerate() {
        let netdev = match nic.kind {
            NicKind::Pod => {
                let mut s = format!("user,id=net{index}");
                for port in &nic.forward_ports {
                    s.push_str(&format!(",hostfwd=tcp::{port}-:{port}"));
                }
                s
            }
            NicKind::Tap => format!(
                "tap,id=net{index},ifname={},script=no,downscript=no",
                esc(nic.tap_device.as_deref().unwrap_or_default())
            ),
            NicKind::Bridge => format!(
                "bridge,id=net{index},br={}",
                esc(nic.bridge.as_deref().unwrap_or_default())
            ),
        };
        push(&["-netdev", &netdev]);
        push(&[
            "-device",
            &format!(
                "{},netdev=net{index},mac={},id=nic{index}",
                esc(&nic.model),
                nic.mac.to_ascii_lowercase()
            ),
        ]);
    }

    for (index, dev) in host.pci.iter().enumerate() {
        push(&[
            "-device",
            &format!("vfio-pci,host={},id=hostdev{index}", dev.address),
        ]);
    }
    // Entropy for the guest's early boot (SSH host keys), cheap and migratable.
    push(&[
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
    ]);
    // The guest agent channel: used to freeze filesystems for a snapshot
    // when the guest runs qemu-ga (otherwise the VM is paused instead).
    let qga = esc(&config.guest_agent_socket_path().to_string_lossy());
    push(&[
        "-chardev",
        &format!("socket,id=qga0,path={qga},server=on,wait=off"),
        "-device",
        "virtio-serial-pci,id=virtio-serial0",
        "-device",
        "virtserialport,bus=virtio-serial0.0,chardev=qga0,name=org.qemu.guest_agent.0",
    ]);
    // A migration target waits for the source; the identical device list
    // above is what makes the incoming state load.
    if config.incoming.is_some() {
        a.extend(crate::migration::incoming_args());
    }
    a
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DiskConfig, DiskFormat, NicConfig};
    use std::path::PathBuf;

    fn config() -> LaunchConfig {
        let mut c = LaunchConfig::new(
            "web",
            "prod",
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            2,
            1536 << 20,
        );
        c.run_dir = PathBuf::from("/run/nc");
        c.disks = vec![
            DiskConfig {
                name: "root".into(),
                path: "/disks/root/disk.img".into(),
                format: DiskFormat::Qcow2,
                block: false,
                read_only: false,
                boot: true,
                serial: None,
            },
            DiskConfig {
                name: "data".into(),
                path: "/dev/vols/data".into(),
                format: DiskFormat::Raw,
                block: true,
                read_only: true,
                boot: false,
                serial: Some("a-very-long-serial-number-here".into()),
            },
        ];
        c.nics = vec![
            NicConfig {
                name: "default".into(),
                model: "virtio-net-pci".into(),
                mac: "52:54:00:AB:00:01".into(),
                kind: NicKind::Pod,
                tap_device: None,
                bridge: None,
                forward_ports: vec![22],
            },
            NicConfig {
                name: "storage".into(),
                model: "virtio-net-pci".into(),
                mac: "52:54:00:ab:00:02".into(),
                kind: NicKind::Tap,
                tap_device: Some("tap1".into()),
                bridge: None,
                forward_ports: vec![],
            },
        ];
        c
    }

    fn joined(args: &[String]) -> String {
        args.join(" ")
    }

    #[test]
    fn builds_the_full_command_line() {
        let c = config();
        let seed = PathBuf::from("/run/nc/cidata.iso");
        let pci = vec![PciPassthrough {
            name: "gpu".into(),
            kind: HostDeviceKind::Gpu,
            address: "0000:65:00.0".into(),
        }];
        let args = command_line(
            &c,
            &HostFacts {
                accel: ResolvedAccel::Tcg,
                seed_iso: Some(&seed),
                pci: &pci,
            },
        );
        let expected = [
            "-name guest=prod_web,debug-threads=on",
            "-uuid 1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "-nodefaults -no-user-config -display none",
            "-machine q35 -accel tcg -cpu max -smp 2 -m 1536M",
            "-chardev socket,id=qmp,path=/run/nc/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control",
            "-chardev file,id=serial0,path=/run/nc/serial.log -serial chardev:serial0",
            "-blockdev driver=file,filename=/disks/root/disk.img,node-name=disk0-file,read-only=off,cache.direct=off,aio=threads",
            "-blockdev driver=qcow2,file=disk0-file,node-name=disk0,read-only=off",
            "-device virtio-blk-pci,drive=disk0,id=virtio-disk0,serial=root,bootindex=1",
            "-blockdev driver=host_device,filename=/dev/vols/data,node-name=disk1-file,read-only=on,cache.direct=off,aio=threads",
            "-blockdev driver=raw,file=disk1-file,node-name=disk1,read-only=on",
            "-device virtio-blk-pci,drive=disk1,id=virtio-disk1,serial=a-very-long-serial-n",
            "-blockdev driver=file,filename=/run/nc/cidata.iso,node-name=cidata-file,read-only=on",
            "-blockdev driver=raw,file=cidata-file,node-name=cidata,read-only=on",
            "-device virtio-blk-pci,drive=cidata,id=virtio-cidata,serial=cidata",
            "-netdev user,id=net0,hostfwd=tcp::22-:22",
            "-device virtio-net-pci,netdev=net0,mac=52:54:00:ab:00:01,id=nic0",
            "-netdev tap,id=net1,ifname=tap1,script=no,downscript=no",
            "-device virtio-net-pci,netdev=net1,mac=52:54:00:ab:00:02,id=nic1",
            "-device vfio-pci,host=0000:65:00.0,id=hostdev0",
            "-object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0",
            "-chardev socket,id=qga0,path=/run/nc/qga.sock,server=on,wait=off",
            "-device virtio-serial-pci,id=virtio-serial0",
            "-device virtserialport,bus=virtio-serial0.0,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
        .join(" ");
        assert_eq!(joined(&args), expected);
    }

    #[test]
    fn kvm_uses_host_cpu_and_commas_are_escaped() {
        let mut c = config();
        c.disks[0].path = "/disks/a,b.img".into();
        c.uid = "not-a-uuid".into();
        c.nics[1].kind = NicKind::Bridge;
        c.nics[1].bridge = Some("br0".into());
        let args = command_line(
            &c,
            &HostFacts {
                accel: ResolvedAccel::Kvm,
                seed_iso: None,
                pci: &[],
            },
        );
        let s = joined(&args);
        assert!(s.contains("-accel kvm -cpu host"));
        assert!(s.contains("filename=/disks/a,,b.img,"));
        assert!(!s.contains("-uuid"));
        assert!(!s.contains("cidata"));
        assert!(s.contains("-netdev bridge,id=net1,br=br0"));
        c.cpu_model = Some("Skylake-Server".into());
        let s = joined(&command_line(
            &c,
            &HostFacts {
                accel: ResolvedAccel::Kvm,
                seed_iso: None,
                pci: &[],
            },
        ));
        assert!(s.contains("-cpu Skylake-Server"));
    }

    #[test]
    fn a_migration_target_waits_for_the_stream() {
        let host = HostFacts {
            accel: ResolvedAccel::Tcg,
            seed_iso: None,
            pci: &[],
        };
        let mut c = config();
        let plain = command_line(&c, &host);
        assert!(!plain.iter().any(|a| a == "-incoming"));
        c.incoming = Some(crate::config::IncomingConfig::default());
        let target = command_line(&c, &host);
        assert_eq!(&target[..plain.len()], &plain[..]);
        assert_eq!(&target[plain.len()..], ["-incoming", "defer"]);
    }

    #[test]
    fn memory_rounds_up_to_mebibytes() {
        let mut c = config();
        c.memory_bytes = (512 << 20) + 1;
        let s = joined(&command_line(
            &c,
            &HostFacts {
                accel: ResolvedAccel::Tcg,
                seed_iso: None,
                pci: &[],
            },
        ));
        assert!(s.contains("-m 513M"));
    }

    #[test]
    fn accel_resolution() {
        assert_eq!(resolve_accel(Accel::Auto, true), Ok(ResolvedAccel::Kvm));
        assert_eq!(resolve_accel(Accel::Auto, false), Ok(ResolvedAccel::Tcg));
        assert_eq!(resolve_accel(Accel::Tcg, true), Ok(ResolvedAccel::Tcg));
        assert!(
            resolve_accel(Accel::Kvm, false)
                .unwrap_err()
                .contains("/dev/kvm")
        );
    }

    #[test]
    fn host_devices_from_fixed_address_and_device_plugin_env() {
        let devices = vec![
            HostDeviceConfig {
                name: "fpga".into(),
                kind: HostDeviceKind::Fpga,
                pci_address: Some("0000:af:00.0".into()),
                resource_env: None,
            },
            HostDeviceConfig {
                name: "gpu".into(),
                kind: HostDeviceKind::Gpu,
                pci_address: None,
                resource_env: Some("PCI_RESOURCE_NVIDIA_COM_GPU".into()),
            },
        ];
        let env = |k: &str| {
            (k == "PCI_RESOURCE_NVIDIA_COM_GPU").then(|| "0000:3b:00.0, 0000:5e:00.0".to_string())
        };
        let r = resolve_host_devices(&devices, env).unwrap();
        let addrs: Vec<&str> = r.iter().map(|p| p.address.as_str()).collect();
        assert_eq!(addrs, ["0000:af:00.0", "0000:3b:00.0", "0000:5e:00.0"]);
        // The same resource listed twice passes each function once.
        let twice = [devices[1].clone(), devices[1].clone()];
        assert_eq!(resolve_host_devices(&twice, env).unwrap().len(), 2);
        let err = resolve_host_devices(&devices, |_| None).unwrap_err();
        assert!(
            err.contains("PCI_RESOURCE_NVIDIA_COM_GPU is not set"),
            "{err}"
        );
        let err = resolve_host_devices(&devices, |_| Some("garbage".into())).unwrap_err();
        assert!(err.contains("not a PCI address"), "{err}");
        let args = command_line(
            &config(),
            &HostFacts {
                accel: ResolvedAccel::Tcg,
                seed_iso: None,
                pci: &r,
            },
        );
        assert_eq!(
            args.iter()
                .filter(|a| a.starts_with("vfio-pci,host="))
                .count(),
            3
        );
    }
}
