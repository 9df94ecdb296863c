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
//! - Behind a path prefix (path routing), a second container, the path proxy ([`super::proxy`]),
//!   strips the prefix and sets `X-RStudio-Root-Path`; it runs fully restricted (non-root uid
//!   101, read-only root filesystem, no capabilities). RStudio itself keeps serving at `/`, so
//!   `kubectl port-forward` straight to port 8787 works too.
//! - No service account token (participants have no business with the API), no service links
//!   (a namespace with many Services would flood the environment), 60 s grace so s6 can stop
//!   rserver, which suspends sessions to disk.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator_core::builders::security::restricted_container_security_context;
use operator_core::builders::{DeploymentParams, deployment};

use super::{
    HOME_DIR, Names, PASSWORD_KEY, RSTUDIO_PORT, RSTUDIO_UID, RSTUDIO_USER, path_proxy, proxy,
};
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
    let env = vec![
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
    let mut containers = vec![container];
    let mut volumes = vec![Volume {
        name: "home".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: ws.pvc(id),
            read_only: None,
        }),
        ..Volume::default()
    }];
    let mut annotations = None;
    if path_proxy(spec) {
        containers.push(proxy_container());
        volumes.extend(proxy_volumes(ws));
        annotations = Some(BTreeMap::from([(
            proxy::CONFIG_HASH_ANNOTATION.to_string(),
            proxy::config_hash(&proxy::session_conf()),
        )]));
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations,
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers,
            volumes: Some(volumes),
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

/// The path proxy: restricted, 50m/32Mi requested, 200m/64Mi at most (it only copies bytes).
fn proxy_container() -> Container {
    let quantities = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ]))
    };
    Container {
        name: "path-proxy".into(),
        image: Some(proxy::PROXY_IMAGE.into()),
        ports: Some(vec![ContainerPort {
            name: Some("proxy".into()),
            container_port: proxy::PROXY_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(ResourceRequirements {
            limits: quantities("200m", "64Mi"),
            requests: quantities("50m", "32Mi"),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(proxy::PROXY_PORT),
                host: None,
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "proxy-config".into(),
                mount_path: "/etc/nginx/conf.d".into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "proxy-tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(SecurityContext {
            run_as_user: Some(proxy::PROXY_UID),
            run_as_group: Some(proxy::PROXY_UID),
            ..restricted_container_security_context()
        }),
        ..Container::default()
    }
}

fn proxy_volumes(ws: &Names) -> [Volume; 2] {
    [
        Volume {
            name: "proxy-config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: ws.proxy_config(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "proxy-tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
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
    fn path_routing_adds_the_restricted_path_proxy() {
        let ws = workshop(json!({"ingress": {"host": "ws.example.com"}}));
        let d = json(&session(&names(), &ws.spec, "user2"));
        let pod = &d["spec"]["template"];
        assert_eq!(
            pod["metadata"]["annotations"],
            json!({"orchestra.io/proxy-config-hash": proxy::config_hash(&proxy::session_conf())})
        );
        // RStudio is unchanged: the image's own entrypoint, serving at the root.
        assert_eq!(pod["spec"]["containers"][0].get("command"), None);
        assert_eq!(
            pod["spec"]["containers"][1],
            json!({
                "name": "path-proxy",
                "image": "nginxinc/nginx-unprivileged:1.27-alpine",
                "ports": [{"name": "proxy", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {
                    "limits": {"cpu": "200m", "memory": "64Mi"},
                    "requests": {"cpu": "50m", "memory": "32Mi"}
                },
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                "volumeMounts": [
                    {"name": "proxy-config", "mountPath": "/etc/nginx/conf.d", "readOnly": true},
                    {"name": "proxy-tmp", "mountPath": "/tmp"}
                ],
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 101,
                    "runAsGroup": 101,
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"}
                }
            })
        );
        assert_eq!(
            pod["spec"]["volumes"],
            json!([
                {"name": "home", "persistentVolumeClaim": {"claimName": "intro-user2-home"}},
                {"name": "proxy-config", "configMap": {"name": "intro-proxy"}},
                {"name": "proxy-tmp", "emptyDir": {"sizeLimit": "64Mi"}}
            ])
        );
        // Never the original's mistakes.
        let text = d.to_string();
        assert!(!text.contains("DISABLE_AUTH"));
        assert!(!text.contains("/data"));
        // Host routing serves RStudio at the root of its own host: no proxy.
        let ws = workshop(json!({"ingress": {"host": "ws.example.com", "routing": "Host"}}));
        let d = json(&session(&names(), &ws.spec, "user2"));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(d["spec"]["template"]["metadata"].get("annotations"), None);
    }
}
