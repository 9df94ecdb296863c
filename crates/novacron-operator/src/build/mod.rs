//! Pure builders: the objects a VirtualMachine needs, from its validated
//! spec. No I/O, no clock; deterministic output so tests compare whole
//! objects.
//!
//! | object | name | built by |
//! |---|---|---|
//! | root disk PersistentVolumeClaim | `<vm>-rootdisk` | [`disks`] |
//! | data disk PersistentVolumeClaims | `<vm>-<volume>` | [`disks`] |
//! | importer Job (http(s) and marketplace images) | `<vm>-import-<hash>` | [`disks`] |
//! | launch ConfigMap (`launch.json`) | `<vm>-launch` | [`launch`] |
//! | launcher Pod | `<vm>-launcher` | [`pod`] |
//! | migration target Pod and ConfigMap | `<vm>-launcher-<hash>`, `<vm>-launch-<hash>` | [`crate::migration::target`] |
//! | migration TLS Secret | `<vm>-migration-tls` | [`crate::migration::tls`] |

pub mod devices;
pub mod disks;
pub mod launch;
pub mod mac;
pub mod pod;

use std::collections::BTreeMap;

use operator_core::labels::Labels;

use crate::controllers::OPERATOR;

/// Label on every child naming its VM (for lookups and selectors).
pub const VM_LABEL: &str = "novacron.io/vm";
/// Annotation on the launcher pod: hash of everything the running VM was
/// started from; a different hash means the VM must be restarted
/// (`Recreate`) to pick up the change.
pub const SPEC_HASH_ANNOTATION: &str = "novacron.io/spec-hash";
/// Annotation on the root disk claim: hash of the image source imported into
/// it (set once the import succeeded).
pub const IMPORTED_ANNOTATION: &str = "novacron.io/imported-source";
/// `app.kubernetes.io/name` of every child.
pub const APP: &str = "novacron-vm";

/// Names of a VM's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub vm: String,
}

impl Names {
    pub fn of(vm: &str) -> Self {
        Names { vm: vm.to_owned() }
    }

    /// The launcher pod.
    pub fn pod(&self) -> String {
        format!("{}-launcher", self.vm)
    }

    /// The ConfigMap holding `launch.json`.
    pub fn config_map(&self) -> String {
        format!("{}-launch", self.vm)
    }

    /// The Secret with the VM's migration TLS certificates (mounted by
    /// every launcher pod of a VM that migrates encrypted).
    pub fn migration_tls(&self) -> String {
        format!("{}-migration-tls", self.vm)
    }

    /// The launcher pod receiving the VM in the migration with UID
    /// `migration_uid` (and, with [`Names::target_config_map`], its launch
    /// ConfigMap).
    pub fn target_pod(&self, migration_uid: &str) -> String {
        format!("{}-{}", self.pod(), &stable_hash_hex(&[migration_uid])[..8])
    }

    /// The launch ConfigMap of [`Names::target_pod`].
    pub fn target_config_map(&self, migration_uid: &str) -> String {
        format!(
            "{}-{}",
            self.config_map(),
            &stable_hash_hex(&[migration_uid])[..8]
        )
    }

    /// The root disk claim.
    pub fn root_disk(&self) -> String {
        format!("{}-rootdisk", self.vm)
    }

    /// The claim of data volume `name`.
    pub fn volume(&self, name: &str) -> String {
        format!("{}-{name}", self.vm)
    }

    /// The importer Job for the source with hash `source_hash`. Kept within
    /// 63 characters: the Job controller copies the name into a pod label.
    pub fn import_job(&self, source_hash: &str) -> String {
        let prefix: String = self.vm.chars().take(44).collect();
        let prefix = prefix.trim_end_matches('-');
        format!(
            "{prefix}-import-{}",
            &source_hash[..8.min(source_hash.len())]
        )
    }
}

/// The standard labels of a child of `vm` with `component`.
pub fn labels(vm: &str, component: &str) -> BTreeMap<String, String> {
    Labels::new(APP, vm)
        .component(component)
        .managed_by(OPERATOR)
        .part_of("novacron")
        .with(VM_LABEL, vm)
        .build()
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases and
/// platforms (unlike `DefaultHasher`), for MAC addresses and names that must
/// never change.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator so ("ab", "c") and ("a", "bc") differ.
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// [`stable_hash`] as 16 hex digits.
pub fn stable_hash_hex(parts: &[&str]) -> String {
    format!("{:016x}", stable_hash(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_children() {
        let n = Names::of("web");
        assert_eq!(n.pod(), "web-launcher");
        assert_eq!(n.config_map(), "web-launch");
        assert_eq!(n.root_disk(), "web-rootdisk");
        assert_eq!(n.volume("data"), "web-data");
        assert_eq!(n.import_job("0123456789abcdef"), "web-import-01234567");
        let long = Names::of(&"a".repeat(63));
        assert!(long.import_job("0123456789abcdef").len() <= 63);
    }

    #[test]
    fn stable_hash_is_fixed_and_separates_parts() {
        // Fixed values: changing them would change every VM's MAC address.
        assert_eq!(stable_hash_hex(&[""]), "cbf29ce484222325");
        assert_eq!(stable_hash_hex(&["a"]), "af63dc4c8601ec8c");
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
    }

    #[test]
    fn labels_name_the_vm() {
        let l = labels("web", "launcher");
        assert_eq!(l[VM_LABEL], "web");
        assert_eq!(l["app.kubernetes.io/component"], "launcher");
        assert_eq!(l["app.kubernetes.io/managed-by"], OPERATOR);
    }
}
