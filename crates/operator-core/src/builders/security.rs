//! Pod and container security defaults that satisfy the `restricted` Pod Security Standard.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

/// Container security context for the `restricted` profile: non-root, no privilege escalation,
/// read-only root filesystem, all capabilities dropped, seccomp `RuntimeDefault`.
///
/// Containers that must write somewhere mount an `emptyDir` (e.g. at `/tmp`) instead of relaxing
/// `readOnlyRootFilesystem`.
pub fn restricted_container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

/// Pod security context for the `restricted` profile, running as `uid`:`gid` with volumes owned
/// by `fs_group`. `fsGroupChangePolicy: OnRootMismatch` avoids re-chowning large volumes on every
/// start.
pub fn restricted_pod_security_context(uid: i64, gid: i64, fs_group: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(gid),
        fs_group: Some(fs_group),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn container_context_is_restricted() {
        assert_eq!(
            serde_json::to_value(restricted_container_security_context()).unwrap(),
            json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"}
            })
        );
    }

    #[test]
    fn pod_context_is_restricted() {
        assert_eq!(
            serde_json::to_value(restricted_pod_security_context(1000, 1001, 2000)).unwrap(),
            json!({
                "fsGroup": 2000,
                "fsGroupChangePolicy": "OnRootMismatch",
                "runAsGroup": 1001,
                "runAsNonRoot": true,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}
            })
        );
    }
}
