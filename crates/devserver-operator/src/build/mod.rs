//! Pure builders: the desired child objects of a validated spec. No I/O, no
//! clock reads; maps are sorted, so tests compare whole objects.
//!
//! - [`user`]: a DevServerUser's namespace, ServiceAccount, RBAC and quotas.
//! - [`devserver`]: a DevServer's host keys, home, workload and SSH Service.
//! - [`hostkey`]: OpenSSH host key encoding.
//! - [`sshd`]: the injected SSH server's configuration and command.

pub mod devserver;
pub mod hostkey;
pub mod sshd;
pub mod user;

use operator_core::labels::Labels;

use crate::OPERATOR_NAME;

/// `app.kubernetes.io/name` of everything created for DevServers.
pub const APP_DEVSERVER: &str = "devserver";
/// `app.kubernetes.io/name` of everything created for DevServerUsers.
pub const APP_USER: &str = "devserver-user";

/// Label on a user's namespace: the DevServerUser's name (also the key the
/// operator maps namespace events back to the user with).
pub const USER_LABEL: &str = "devserver.io/user";

/// The standard labels of a child of `instance`.
pub fn labels(app: &str, instance: &str, component: &str) -> Labels {
    Labels::new(app, instance)
        .component(component)
        .managed_by(OPERATOR_NAME)
        .part_of(OPERATOR_NAME)
}

/// Name `base` + `suffix`, shortened to `max` characters with a stable hash
/// when too long (so long DevServer names still give valid child names).
pub fn child_name(base: &str, suffix: &str, max: usize) -> String {
    let full = format!("{base}{suffix}");
    if full.len() <= max {
        return full;
    }
    let hash = format!("{:08x}", fnv1a(base.as_bytes()) as u32);
    let keep = max.saturating_sub(suffix.len() + hash.len() + 1);
    let mut head: String = base.chars().take(keep).collect();
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    format!("{head}-{hash}{suffix}")
}

/// FNV-1a: a stable (across releases and processes) 64-bit hash.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_fit_and_are_stable() {
        assert_eq!(child_name("mydev", "-ssh", 63), "mydev-ssh");
        let long = "a".repeat(80);
        let n = child_name(&long, "-host-keys", 63);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("-host-keys"), "{n}");
        assert_eq!(n, child_name(&long, "-host-keys", 63));
        assert_ne!(n, child_name(&"a".repeat(81), "-host-keys", 63));
    }
}
