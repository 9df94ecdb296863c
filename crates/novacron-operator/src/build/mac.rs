//! Stable MAC addresses: derived from the VM's UID and the network's name,
//! so a guest keeps its MACs across restarts and migrations (its DHCP leases
//! and udev interface names stay put), and two VMs never share one.

use super::stable_hash;

/// A locally administered unicast MAC (`02:xx:xx:xx:xx:xx`) for interface
/// `network` of the VM with `vm_uid`.
pub fn derive(vm_uid: &str, network: &str) -> String {
    let h = stable_hash(&[vm_uid, network]).to_be_bytes();
    // First octet 0x02: locally administered (bit 1), unicast (bit 0 clear).
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        h[0], h[1], h[2], h[3], h[4]
    )
}

/// The MAC of an interface: the one the user fixed, else the derived one.
/// Lower case either way, as QEMU and cloud-init print them.
pub fn for_interface(vm_uid: &str, network: &str, fixed: Option<&str>) -> String {
    match fixed {
        Some(m) => m.to_ascii_lowercase(),
        None => derive(vm_uid, network),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_are_stable_unicast_and_local() {
        let a = derive("7f0c2a4e-0000-4000-8000-000000000001", "default");
        assert_eq!(a, derive("7f0c2a4e-0000-4000-8000-000000000001", "default"));
        assert!(a.starts_with("02:"), "{a}");
        assert_eq!(a.len(), 17);
        crate::validate::parse_mac(&a).unwrap();
        assert_ne!(a, derive("7f0c2a4e-0000-4000-8000-000000000001", "storage"));
        assert_ne!(a, derive("7f0c2a4e-0000-4000-8000-000000000002", "default"));
    }

    #[test]
    fn a_fixed_mac_wins() {
        assert_eq!(
            for_interface("uid", "default", Some("02:00:00:AA:BB:CC")),
            "02:00:00:aa:bb:cc"
        );
        assert_eq!(for_interface("uid", "x", None), derive("uid", "x"));
    }
}
