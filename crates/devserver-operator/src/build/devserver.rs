//! A DevServer's objects: the host-key Secret, the SSH configuration
//! (sshd_config, authorized_keys and nss_wrapper's passwd/group), the
//! persistent home claim, the StatefulSet and the SSH Service (plus a
//! headless Service in distributed mode).
//!
//! The pod runs the user's image with an injected SSH server (see
//! [`super::sshd`]): an init container from the SSH server image runs
//! `/install <bundle dir>` to copy a relocatable OpenSSH bundle into an
//! emptyDir, and the main container runs that bundle's sshd as uid 1000
//! (user `dev`) on port [`sshd::SSH_PORT`]; the Service exposes it on port
//! [`SSH_PORT`].
//!
//! Contract of the SSH server image: `/install <dir>` copies the bundle
//! (`bin/sshd`, `bin/cat`, `lib/ld-linux-x86-64.so.2`, `lib/*.so*`) into
//! `<dir>`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretVolumeSource,
    SecurityContext, Service, TCPSocketAction, Volume, VolumeMount as K8sVolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator_core::builders::{
    self, ConfigMapParams, PvcParams, PvcRetentionPolicy, SecretParams, ServiceKind, ServiceParams,
    ServicePortParams, StatefulSetParams, VolumeClaimTemplate,
};

use super::hostkey::{self, HostKey};
use super::sshd::{self, SshLayout};
use super::{APP_DEVSERVER, child_name, labels};
use crate::crd::{
    DevServerFlavorSpec, DevServerMode, DevServerSpec, HOME_PATH, SHARED_PATH, SshServiceType,
    VolumeMount,
};

/// Image used when neither the DevServer nor its flavor names one.
pub const DEFAULT_IMAGE: &str = "ubuntu:24.04";
/// Image providing the injected SSH server.
pub const DEFAULT_SSH_IMAGE: &str = concat!(
    "ghcr.io/orchestra-operators/devserver-sshd:",
    env!("CARGO_PKG_VERSION")
);
/// The SSH Service's port (the pod listens on [`sshd::SSH_PORT`]).
pub const SSH_PORT: i32 = 22;
/// uid and gid of user `dev`.
pub const DEV_UID: i64 = sshd::DEV_UID as i64;
/// Port of the rank-0 rendezvous in distributed mode.
pub const MASTER_PORT: i32 = 29500;
/// Annotation on the StatefulSet: a hash of its pod template, so the
/// reconciler knows before applying that the pods are about to be replaced.
pub const TEMPLATE_HASH: &str = "devserver.io/pod-template-hash";
/// Pod label (set by the StatefulSet controller) with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Images the operator uses (from its configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub default_image: String,
    pub ssh_image: String,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            default_image: DEFAULT_IMAGE.into(),
            ssh_image: DEFAULT_SSH_IMAGE.into(),
        }
    }
}

/// Everything the builder needs, already observed and validated.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub spec: &'a DevServerSpec,
    pub flavor: &'a DevServerFlavorSpec,
    /// The server's host key (read from its Secret, or generated once).
    pub host_key: &'a HostKey,
    /// `authorized_keys` content: `ssh.publicKey`, else the owner's keys.
    pub authorized_keys: &'a str,
    pub images: &'a Images,
    /// Where the SSH server's files are and its port ([`SshLayout::in_pod`]
    /// in production).
    pub layout: &'a SshLayout,
    /// Whether pods should run (`running` and not expired or idle-stopped).
    pub run: bool,
}

/// The desired children of one DevServer.
#[derive(Clone, Debug, PartialEq)]
pub struct DevServerObjects {
    pub host_keys: Secret,
    pub ssh_config: ConfigMap,
    /// The standalone persistent home (distributed servers get one claim
    /// per pod from `volumeClaimTemplates`).
    pub home: Option<PersistentVolumeClaim>,
    pub stateful_set: StatefulSet,
    pub ssh_service: Service,
    /// Distributed mode only: stable pod DNS names for the rendezvous.
    pub headless_service: Option<Service>,
}

/// Names of a DevServer's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub host_keys: String,
    pub ssh_config: String,
    pub home: String,
    /// Short enough that pod names and revision labels stay valid.
    pub stateful_set: String,
    pub ssh_service: String,
    pub headless_service: String,
}

impl Names {
    pub fn of(name: &str) -> Self {
        Names {
            host_keys: child_name(name, "-host-keys", 253),
            ssh_config: child_name(name, "-ssh-config", 253),
            home: child_name(name, "-home", 253),
            stateful_set: child_name(name, "", 52),
            ssh_service: child_name(name, "-ssh", 63),
            headless_service: child_name(name, "-headless", 63),
        }
    }
}

/// The host-key Secret's data for `key`.
pub fn host_key_data(key: &HostKey) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        (
            hostkey::PRIVATE_KEY.to_string(),
            key.private_pem.clone().into_bytes(),
        ),
        (
            hostkey::PUBLIC_KEY.to_string(),
            key.public_line.clone().into_bytes(),
        ),
    ])
}

/// The host key stored in a Secret, if it holds a complete one.
pub fn host_key_from_secret(secret: &Secret) -> Option<HostKey> {
    let data = secret.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|s| !s.is_empty())
    };
    Some(HostKey {
        private_pem: get(hostkey::PRIVATE_KEY)?,
        public_line: get(hostkey::PUBLIC_KEY)?,
    })
}

/// The flavor's volumes overlaid with the server's (the server wins on the
/// same `mountPath`), sorted by path.
pub fn merge_volumes(flavor: &[VolumeMount], server: &[VolumeMount]) -> Vec<VolumeMount> {
    let mut by_path: BTreeMap<&str, &VolumeMount> = BTreeMap::new();
    for v in flavor.iter().chain(server) {
        by_path.insert(v.mount_path.as_str(), v);
    }
    by_path.into_values().cloned().collect()
}

/// Requests and limits of the flavor.
pub fn resources(flavor: &DevServerFlavorSpec) -> Option<ResourceRequirements> {
    let r = flavor.resources.as_ref()?;
    Some(ResourceRequirements {
        requests: r.requests.clone().filter(|m| !m.is_empty()),
        limits: r.limits.clone().filter(|m| !m.is_empty()),
        ..ResourceRequirements::default()
    })
}

fn mount(name: &str, path: &str, read_only: bool) -> K8sVolumeMount {
    K8sVolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..K8sVolumeMount::default()
    }
}

fn pvc_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// The DevServer's children.
pub fn devserver_objects(i: &Inputs) -> DevServerObjects {
    let names = Names::of(i.name);
    let ns = i.namespace;
    let server_labels = labels(APP_DEVSERVER, i.name, "server");
    let selector = server_labels.selector();
    let meta_labels = |component: &str| labels(APP_DEVSERVER, i.name, component).build();

    let host_keys = builders::secret(&SecretParams {
        labels: meta_labels("host-keys"),
        data: host_key_data(i.host_key),
        ..SecretParams::new(&names.host_keys, ns)
    });
    let distributed = (i.spec.mode == DevServerMode::Distributed)
        .then_some(i.spec.distributed.as_ref())
        .flatten();
    let home_claim = i.spec.persistent_home_size.clone();
    let home = match (&home_claim, distributed) {
        (Some(size), None) => Some(builders::persistent_volume_claim(&PvcParams {
            labels: meta_labels("home"),
            ..PvcParams::new(&names.home, ns, size.clone())
        })),
        _ => None,
    };

    // Volumes and mounts, in a fixed order.
    let mut volumes = vec![
        empty_dir("sshd"),
        Volume {
            name: "host-keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.host_keys.clone()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "ssh-config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.ssh_config.clone(),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let layout = i.layout;
    let mut mounts = vec![
        mount("sshd", &layout.bundle_dir(), true),
        mount("host-keys", &layout.host_key_dir(), true),
        mount("ssh-config", &layout.config_dir(), true),
    ];
    let merged = merge_volumes(
        i.flavor.volumes.as_deref().unwrap_or_default(),
        i.spec.volumes.as_deref().unwrap_or_default(),
    );
    let home_from_volume = merged.iter().any(|v| v.mount_path == HOME_PATH);
    match (&home_claim, distributed) {
        (Some(_), None) => volumes.push(pvc_volume("home", &names.home, false)),
        // From the StatefulSet's volumeClaimTemplates.
        (Some(_), Some(_)) => {}
        (None, _) if home_from_volume => {}
        (None, _) => volumes.push(empty_dir("home")),
    }
    if home_claim.is_some() || !home_from_volume {
        mounts.push(mount("home", HOME_PATH, false));
    }
    if let Some(shared) = &i.spec.shared_volume_claim_name {
        volumes.push(pvc_volume("shared", shared, false));
        mounts.push(mount("shared", SHARED_PATH, false));
    }
    for (n, v) in merged.iter().enumerate() {
        let vname = format!("vol-{n}");
        volumes.push(pvc_volume(&vname, &v.claim_name, v.read_only));
        mounts.push(mount(&vname, &v.mount_path, v.read_only));
    }
    volumes.push(empty_dir("tmp"));
    mounts.push(mount("tmp", "/tmp", false));

    let mut envs = vec![
        env("HOME", HOME_PATH),
        env("USER", "dev"),
        env("DEVSERVER_NAME", i.name),
    ];
    let replicas = distributed.map_or(1, |d| d.world_size);
    if let Some(d) = distributed {
        let master = format!(
            "{}-0.{}.{ns}.svc",
            names.stateful_set, names.headless_service
        );
        let index = EnvVar {
            name: "RANK".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{POD_INDEX_LABEL}']"),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        };
        envs.push(index.clone());
        envs.push(EnvVar {
            name: "NODE_RANK".into(),
            ..index
        });
        envs.push(env("WORLD_SIZE", d.world_size.to_string()));
        envs.push(env("MASTER_ADDR", master));
        envs.push(env("MASTER_PORT", MASTER_PORT.to_string()));
        if let Some(n) = d.nprocs_per_node {
            envs.push(env("NPROC_PER_NODE", n.to_string()));
        }
        if let Some(b) = d.backend {
            let b = serde_json::to_value(b).expect("an enum serializes");
            envs.push(env("DIST_BACKEND", b.as_str().unwrap_or_default()));
        }
        for (k, v) in d.nccl_settings.iter().flatten() {
            envs.push(env(k, v.clone()));
        }
    }
    // SSH sessions do not inherit the container's environment: sshd sets
    // the same values (all but the per-pod ones such as RANK) itself.
    let session_env: Vec<(String, String)> = envs
        .iter()
        .filter(|e| !matches!(e.name.as_str(), "HOME" | "USER"))
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    let ssh_config = builders::config_map(&ConfigMapParams {
        name: names.ssh_config.clone(),
        namespace: ns.into(),
        labels: meta_labels("ssh"),
        data: BTreeMap::from([
            (
                sshd::AUTHORIZED_KEYS_FILE.to_string(),
                i.authorized_keys.to_string(),
            ),
            (
                sshd::SSHD_CONFIG_FILE.to_string(),
                sshd::sshd_config(layout, &session_env),
            ),
            (sshd::PASSWD_FILE.to_string(), sshd::passwd(layout)),
            (sshd::GROUP_FILE.to_string(), sshd::group(layout)),
        ]),
    });
    envs.extend(sshd::sshd_env(layout).into_iter().map(|(k, v)| env(&k, v)));
    let ssh_port = i32::from(layout.port);

    let image = i
        .spec
        .image
        .clone()
        .or_else(|| i.flavor.default_image.clone())
        .unwrap_or_else(|| i.images.default_image.clone());
    let main = Container {
        name: "devserver".into(),
        image: Some(image),
        command: Some(sshd::sshd_command(layout)),
        env: Some(envs),
        ports: Some(vec![ContainerPort {
            name: Some("ssh".into()),
            container_port: ssh_port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(ssh_port),
                host: None,
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: resources(i.flavor),
        // A development environment writes to its root filesystem (package
        // caches, tools); everything else is restricted.
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(false),
            ..builders::restricted_container_security_context()
        }),
        volume_mounts: Some(mounts),
        working_dir: Some(HOME_PATH.into()),
        ..Container::default()
    };
    let install = Container {
        name: "install-sshd".into(),
        image: Some(i.images.ssh_image.clone()),
        command: Some(vec!["/install".into(), layout.bundle_dir()]),
        security_context: Some(builders::restricted_container_security_context()),
        volume_mounts: Some(vec![mount("sshd", &layout.bundle_dir(), false)]),
        ..Container::default()
    };
    let pod_security = builders::restricted_pod_security_context(DEV_UID, DEV_UID, DEV_UID);
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta::default()),
        spec: Some(PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            hostname: (distributed.is_none()).then(|| names.stateful_set.clone()),
            init_containers: Some(vec![install]),
            containers: vec![main],
            node_selector: i.flavor.node_selector.clone().filter(|m| !m.is_empty()),
            tolerations: i.flavor.tolerations.clone().filter(|t| !t.is_empty()),
            security_context: Some(pod_security),
            volumes: Some(volumes),
            termination_grace_period_seconds: Some(10),
            ..PodSpec::default()
        }),
    };
    let mut sts = StatefulSetParams {
        labels: server_labels.build(),
        replicas: if i.run { replicas } else { 0 },
        service_name: distributed.map(|_| names.headless_service.clone()),
        pod_management_policy: builders::PodManagementPolicy::Parallel,
        ..StatefulSetParams::new(
            &names.stateful_set,
            ns,
            selector.clone(),
            template,
            PvcRetentionPolicy::RETAIN,
        )
    };
    if let (Some(size), Some(_)) = (&home_claim, distributed) {
        sts.volume_claim_templates = vec![VolumeClaimTemplate {
            labels: meta_labels("home"),
            ..VolumeClaimTemplate::new("home", size.clone())
        }];
    }
    let mut stateful_set = builders::stateful_set(&sts);
    let template_hash = serde_json::to_string(&stateful_set.spec.as_ref().map(|s| &s.template))
        .map(|t| format!("{:016x}", super::fnv1a(t.as_bytes())))
        .unwrap_or_default();
    stateful_set
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_HASH.into(), template_hash);

    let service_type = i
        .spec
        .ssh
        .as_ref()
        .and_then(|s| s.service_type)
        .unwrap_or_default();
    // In distributed mode SSH reaches rank 0.
    let mut ssh_selector = selector.clone();
    if distributed.is_some() {
        ssh_selector.insert(POD_INDEX_LABEL.into(), "0".into());
    }
    let ssh_service = builders::service(&ServiceParams {
        labels: meta_labels("ssh"),
        ports: vec![ServicePortParams::tcp("ssh", SSH_PORT).target(IntOrString::Int(ssh_port))],
        ..ServiceParams::new(
            &names.ssh_service,
            ns,
            match service_type {
                SshServiceType::ClusterIP => ServiceKind::ClusterIp,
                SshServiceType::NodePort => ServiceKind::NodePort,
            },
            ssh_selector,
        )
    });
    let headless_service = distributed.map(|_| {
        builders::service(&ServiceParams {
            labels: meta_labels("rendezvous"),
            ports: vec![
                ServicePortParams::tcp("ssh", ssh_port),
                ServicePortParams::tcp("rendezvous", MASTER_PORT),
            ],
            publish_not_ready_addresses: true,
            ..ServiceParams::new(&names.headless_service, ns, ServiceKind::Headless, selector)
        })
    });

    DevServerObjects {
        host_keys,
        ssh_config,
        home,
        stateful_set,
        ssh_service,
        headless_service,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DevServer, DevServerFlavor};
    use serde_json::{Value, json};

    fn key() -> HostKey {
        hostkey::encode_ed25519(&[1u8; 32], "mydev")
    }

    fn server(yaml: &str) -> DevServer {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn flavor(yaml: &str) -> DevServerFlavor {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn gpu_flavor() -> DevServerFlavor {
        flavor(include_str!(
            "../../../../deploy/devserver-operator/samples/flavor-gpu-small.yaml"
        ))
    }

    fn build(ds: &DevServer, f: &DevServerFlavor, run: bool) -> DevServerObjects {
        devserver_objects(&Inputs {
            name: &ds.metadata.name.clone().unwrap(),
            namespace: "dev-alice",
            spec: &ds.spec,
            flavor: &f.spec,
            host_key: &key(),
            authorized_keys: "ssh-ed25519 AAAA alice\n",
            images: &Images::default(),
            layout: &SshLayout::in_pod(),
            run,
        })
    }

    fn pod(o: &DevServerObjects) -> Value {
        serde_json::to_value(&o.stateful_set).unwrap()["spec"]["template"]["spec"].clone()
    }

    const SIMPLE: &str = "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata: {name: mydev}\nspec:\n  owner: alice\n  flavor: gpu-small\n  image: python:3.12\n";

    #[test]
    fn a_gpu_server_gets_the_flavors_resources_and_scheduling() {
        let o = build(&server(SIMPLE), &gpu_flavor(), true);
        let pod = pod(&o);
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "python:3.12");
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(c["resources"]["requests"]["cpu"], "4");
        assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
        assert_eq!(c["command"][0], "/devserver/lib/ld-linux-x86-64.so.2");
        assert_eq!(c["command"][5], "/devserver/bin/sshd");
        assert_eq!(c["ports"][0]["containerPort"], 2222);
        let env: BTreeMap<String, String> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
            .collect();
        assert_eq!(env["NSS_WRAPPER_PASSWD"], "/etc/devserver/ssh/passwd");
        assert_eq!(c["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(pod["securityContext"]["runAsUser"], 1000);
        assert_eq!(pod["securityContext"].get("sysctls"), None);
        assert_eq!(pod["initContainers"][0]["image"], DEFAULT_SSH_IMAGE);
        assert_eq!(pod["automountServiceAccountToken"], false);
        let sts = serde_json::to_value(&o.stateful_set).unwrap();
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["metadata"]["name"], "mydev");
        // Home is an emptyDir without persistentHomeSize.
        assert!(o.home.is_none());
        let vols = pod["volumes"].as_array().unwrap();
        assert!(
            vols.iter()
                .any(|v| v["name"] == "home" && v.get("emptyDir").is_some())
        );

        let svc = serde_json::to_value(&o.ssh_service).unwrap();
        assert_eq!(svc["metadata"]["name"], "mydev-ssh");
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["ports"][0]["port"], 22);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 2222);
        assert_eq!(
            svc["spec"]["selector"],
            sts["spec"]["selector"]["matchLabels"]
        );
        assert!(o.headless_service.is_none());

        let secret = serde_json::to_value(&o.host_keys).unwrap();
        assert_eq!(secret["metadata"]["name"], "mydev-host-keys");
        assert!(secret["data"].get(hostkey::PRIVATE_KEY).is_some());
        let cm = serde_json::to_value(&o.ssh_config).unwrap();
        assert_eq!(cm["data"]["authorized_keys"], "ssh-ed25519 AAAA alice\n");
        let config = cm["data"]["sshd_config"].as_str().unwrap();
        for line in [
            "PasswordAuthentication no",
            "PermitRootLogin no",
            "AllowAgentForwarding yes",
            "Port 2222",
        ] {
            assert!(config.lines().any(|l| l == line), "{line}");
        }
        assert_eq!(cm["data"]["passwd"], sshd::passwd(&SshLayout::in_pod()));
    }

    #[test]
    fn stopping_scales_to_zero_and_keeps_everything_else() {
        let ds = server(SIMPLE);
        let running = build(&ds, &gpu_flavor(), true);
        let stopped = build(&ds, &gpu_flavor(), false);
        let r = serde_json::to_value(&stopped.stateful_set).unwrap();
        assert_eq!(r["spec"]["replicas"], 0);
        let hash = |o: &DevServerObjects| {
            o.stateful_set.metadata.annotations.as_ref().unwrap()[TEMPLATE_HASH].clone()
        };
        assert_eq!(hash(&running), hash(&stopped), "scaling is no rollout");
        let mut edited = ds.clone();
        edited.spec.image = Some("python:3.13".into());
        assert_ne!(hash(&build(&edited, &gpu_flavor(), true)), hash(&running));
        assert_eq!(running.ssh_service, stopped.ssh_service);
        assert_eq!(running.host_keys, stopped.host_keys);
        assert_eq!(build(&ds, &gpu_flavor(), true), running, "deterministic");
    }

    #[test]
    fn volumes_merge_with_the_server_winning_and_home_and_shared_mount() {
        let f = flavor(
            "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata: {name: f}\nspec:\n  volumes:\n  - {claimName: datasets, mountPath: /data, readOnly: true}\n  - {claimName: models, mountPath: /models}\n",
        );
        let ds = server(
            "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata: {name: mydev}\nspec:\n  persistentHomeSize: 10Gi\n  sharedVolumeClaimName: team\n  volumes:\n  - {claimName: mine, mountPath: /data}\n",
        );
        let o = build(&ds, &f, true);
        let pod = pod(&o);
        let claims: BTreeMap<String, (String, bool)> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let c = v.get("persistentVolumeClaim")?;
                Some((
                    v["name"].as_str()?.to_string(),
                    (
                        c["claimName"].as_str()?.to_string(),
                        c["readOnly"].as_bool().unwrap_or(false),
                    ),
                ))
            })
            .collect();
        let mounts: BTreeMap<String, String> = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap().to_string(),
                    m["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let claim_at = |path: &str| claims[&mounts[path]].clone();
        assert_eq!(claim_at("/data"), ("mine".into(), false));
        assert_eq!(claim_at("/models"), ("models".into(), false));
        assert_eq!(claim_at("/shared"), ("team".into(), false));
        assert_eq!(claim_at("/home/dev"), ("mydev-home".into(), false));
        let home = serde_json::to_value(o.home.unwrap()).unwrap();
        assert_eq!(home["spec"]["resources"]["requests"]["storage"], "10Gi");
        assert_eq!(home["metadata"]["name"], "mydev-home");
    }

    #[test]
    fn a_volume_at_the_home_path_replaces_the_empty_dir() {
        let ds = server(
            "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata: {name: mydev}\nspec:\n  volumes:\n  - {claimName: myhome, mountPath: /home/dev}\n",
        );
        let o = build(&ds, &gpu_flavor(), true);
        let pod = pod(&o);
        assert!(
            !pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "home")
        );
        let at_home: Vec<_> = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mountPath"] == "/home/dev")
            .collect();
        assert_eq!(at_home.len(), 1);
    }

    #[test]
    fn distributed_mode_runs_world_size_pods_with_rank_and_master() {
        let ds = server(include_str!(
            "../../../../deploy/devserver-operator/samples/devserver-distributed.yaml"
        ));
        let o = build(&ds, &gpu_flavor(), true);
        let sts = serde_json::to_value(&o.stateful_set).unwrap();
        let world = ds.spec.distributed.as_ref().unwrap().world_size;
        assert_eq!(sts["spec"]["replicas"], world);
        let headless = o.headless_service.as_ref().unwrap();
        assert_eq!(
            sts["spec"]["serviceName"],
            headless.metadata.name.clone().unwrap()
        );
        let envs = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
        let names: Vec<_> = envs
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        for n in ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"] {
            assert!(names.contains(&n), "{names:?}");
        }
        // SSH sessions get the static ones from sshd.
        let config = &o.ssh_config.data.as_ref().unwrap()["sshd_config"];
        assert!(
            config.contains(&format!("\"WORLD_SIZE={world}\"")),
            "{config}"
        );
        let svc = serde_json::to_value(&o.ssh_service).unwrap();
        assert_eq!(svc["spec"]["selector"][POD_INDEX_LABEL], "0");
    }

    #[test]
    fn long_names_give_valid_child_names() {
        let n = Names::of(&"x".repeat(200));
        assert!(n.stateful_set.len() <= 52);
        assert!(n.ssh_service.len() <= 63);
        assert!(n.headless_service.len() <= 63);
    }

    #[test]
    fn host_keys_round_trip_through_the_secret() {
        let o = build(&server(SIMPLE), &gpu_flavor(), true);
        assert_eq!(host_key_from_secret(&o.host_keys), Some(key()));
        assert_eq!(host_key_from_secret(&Secret::default()), None);
    }
}
