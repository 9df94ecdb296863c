//! The participant's RStudio session: a one-replica Deployment.
//!
//! A Deployment (not a StatefulSet) because the home volume is a separate, explicitly named
//! claim whose lifetime the operator controls (kept after the session stops); `Recreate` so
//! the old and new pod never both mount the `ReadWriteOnce` home during an update.
//!
//! What `rocker/rstudio` needs, and why the container is not fully non-root:
//! - Its entrypoint `/init` (s6-overlay) must start as root: it sets the `rstudio` user's
//!   password from `PASSWORD`, fixes ownership of the home and starts `rserver`, which runs
//!   every R session as `rstudio` (uid 1000) after PAM authentication. Starting the container as
//!   uid 1000 breaks password authentication (PAM needs root), which would leave only
//!   `DISABLE_AUTH`, the very thing the original got wrong. So the processes participants use
//!   (R sessions) are non-root; the supervisor is root with a minimal capability set: all
//!   capabilities dropped except those s6 and rserver use to switch users and manage files
//!   (`CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `KILL`, `SETGID`, `SETUID`, `AUDIT_WRITE`),
//!   no privilege escalation (no setuid binaries such as `sudo`; `ROOT` is not enabled), seccomp
//!   `RuntimeDefault`. The root filesystem stays writable: s6 and rserver write under `/etc`,
//!   `/var` and `/run`.
//! - Authentication is on: `PASSWORD` comes from the participant's Secret; `DISABLE_AUTH` is never
//!   set. The user name is `rstudio`.
//! - The home volume is mounted at `/home/rstudio`; `fsGroup: 1000` makes it writable by the
//!   `rstudio` user from the first start.
//! - Behind a path prefix (path routing), RStudio must know the prefix it is served under: the
//!   proxy's `X-RStudio-Root-Path` header or, equivalently and independent of the ingress
//!   controller, the `www-root-path` option. The container appends `www-root-path=/<id>/` to
//!   `/etc/rstudio/rserver.conf` before `exec /init`. (The ingress controller must still strip
//!   the prefix; see [`super::ingress`].)
//! - No service account token (participants have no business with the API), no service links
//!   (a namespace with many Services would flood the environment), 60 s grace so s6 can stop
//!   rserver, which suspends sessions to disk.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator_core::builders::{DeploymentParams, deployment};

use super::{HOME_DIR, Names, PASSWORD_KEY, RSTUDIO_PORT, RSTUDIO_UID, RSTUDIO_USER, root_path};
use crate::crd::WorkshopSpec;

/// Capabilities the rocker entrypoint and rserver need as root (see the module docs).
pub const CAPABILITIES: [&str; 8] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
];

/// Sets `www-root-path` from `RSTUDIO_ROOT_PATH` once, then hands over to the image's entrypoint.
pub const ROOT_PATH_ENTRYPOINT: &str = "conf=/etc/rstudio/rserver.conf; \
grep -q '^www-root-path=' \"$conf\" 2>/dev/null || echo \"www-root-path=$RSTUDIO_ROOT_PATH\" >> \"$conf\"; \
exec /init";

/// `<name>-<id>`: one RStudio pod for participant `id`.
pub fn session(ws: &Names, spec: &WorkshopSpec, id: &str) -> Deployment {
    let selector = ws.session_selector(id);
    let labels = ws.labels("session", Some(id));
    let p = DeploymentParams {
        labels: labels.clone(),
        ..DeploymentParams::new(
            ws.deployment(id),
            &ws.namespace,
            selector,
            pod_template(ws, spec, id, labels),
        )
    };
    deployment(&p)
}

fn pod_template(
    ws: &Names,
    spec: &WorkshopSpec,
    id: &str,
    labels: BTreeMap<String, String>,
) -> PodTemplateSpec {
    let mut env = vec![
        EnvVar {
            name: "USER".into(),
            value: Some(RSTUDIO_USER.into()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "PASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: ws.secret(id),
                    key: PASSWORD_KEY.into(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ];
    let root_path = root_path(spec, id);
    let command = root_path.as_ref().map(|path| {
        env.push(EnvVar {
            name: "RSTUDIO_ROOT_PATH".into(),
            value: Some(path.clone()),
            ..EnvVar::default()
        });
        vec!["/bin/sh".into(), "-c".into(), ROOT_PATH_ENTRYPOINT.into()]
    });
    let r = &spec.resources;
    let quantities = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ]))
    };
    let container = Container {
        name: "rstudio".into(),
        image: Some(spec.image.clone()),
        command,
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: RSTUDIO_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(ResourceRequirements {
            limits: quantities(&r.cpu, &r.memory),
            requests: quantities(&r.cpu_request, &r.memory_request),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(RSTUDIO_PORT),
                host: None,
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "home".into(),
            mount_path: HOME_DIR.into(),
            ..VolumeMount::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: "home".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: ws.pvc(id),
                    read_only: None,
                }),
                ..Volume::default()
            }]),
            security_context: Some(PodSecurityContext {
                fs_group: Some(RSTUDIO_UID),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(60),
            ..PodSpec::default()
        }),
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::build::test_util::{json, labels, names, workshop};

    #[test]
    fn whole_deployment_without_ingress() {
        let ws = workshop(json!({
            "image": "rocker/rstudio:4.4.1",
            "resources": {"cpu": "2", "memory": "4Gi", "cpuRequest": "1", "memoryRequest": "2Gi"}
        }));
        let selector = json!({
            "app.kubernetes.io/name": "rstudio",
            "app.kubernetes.io/instance": "intro",
            "app.kubernetes.io/component": "session",
            "orchestra.io/participant": "ada",
        });
        assert_eq!(
            json(&session(&names(), &ws.spec, "ada")),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "intro-ada",
                    "namespace": "class",
                    "labels": labels("session", Some("ada")),
                },
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": selector},
                    "strategy": {"type": "Recreate"},
                    "template": {
                        "metadata": {"labels": labels("session", Some("ada"))},
                        "spec": {
                            "automountServiceAccountToken": false,
                            "enableServiceLinks": false,
                            "terminationGracePeriodSeconds": 60,
                            "securityContext": {
                                "fsGroup": 1000,
                                "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"}
                            },
                            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "intro-ada-home"}}],
                            "containers": [{
                                "name": "rstudio",
                                "image": "rocker/rstudio:4.4.1",
                                "env": [
                                    {"name": "USER", "value": "rstudio"},
                                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                                        "name": "intro-ada-credentials", "key": "password", "optional": false
                                    }}}
                                ],
                                "ports": [{"name": "http", "containerPort": 8787, "protocol": "TCP"}],
                                "resources": {
                                    "limits": {"cpu": "2", "memory": "4Gi"},
                                    "requests": {"cpu": "1", "memory": "2Gi"}
                                },
                                "readinessProbe": {"tcpSocket": {"port": 8787}, "periodSeconds": 5},
                                "volumeMounts": [{"name": "home", "mountPath": "/home/rstudio"}],
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {
                                        "drop": ["ALL"],
                                        "add": ["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"]
                                    },
                                    "seccompProfile": {"type": "RuntimeDefault"}
                                }
                            }]
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn path_routing_tells_rstudio_its_root_path() {
        let ws = workshop(json!({"ingress": {"host": "ws.example.com"}}));
        let d = json(&session(&names(), &ws.spec, "user2"));
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["/bin/sh", "-c", ROOT_PATH_ENTRYPOINT]));
        assert_eq!(
            c["env"][2],
            json!({"name": "RSTUDIO_ROOT_PATH", "value": "/user2/"})
        );
        // Never the original's mistakes.
        let text = d.to_string();
        assert!(!text.contains("DISABLE_AUTH"));
        assert!(!text.contains("/data"));
        // Host routing serves RStudio at the root: the image's own entrypoint.
        let ws = workshop(json!({"ingress": {"host": "ws.example.com", "routing": "Host"}}));
        let d = json(&session(&names(), &ws.spec, "user2"));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0].get("command"),
            None
        );
    }
}
