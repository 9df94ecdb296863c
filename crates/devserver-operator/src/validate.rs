//! Checks of each spec beyond what the CRD schema enforces at admission.
//!
//! The schema and its CEL rules already reject most mistakes; these pure
//! functions repeat the important ones (objects stored before a rule
//! existed, or created with validation off) and add what CEL cannot
//! express well: exact duration bounds, quantity comparison, SSH key format,
//! label and toleration syntax. Each problem names the field and says what
//! to change.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use operator_core::duration::{DurationError, parse_duration, parse_duration_bounded};
use operator_core::quantity;

use crate::crd::{
    DevServerFlavorSpec, DevServerMode, DevServerSpec, DevServerUserSpec, HOME_PATH,
    MAX_USERNAME_LEN, MAX_VOLUMES, SHARED_PATH, VolumeMount,
};
pub use operator_core::names::{is_dns_label, is_dns_subdomain};

/// The longest `timeToLive` a DevServer may have.
pub const MAX_TIME_TO_LIVE: Duration = Duration::from_secs(7 * 24 * 3600);

/// One thing wrong with a spec: the field and a message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the field, e.g. `spec.volumes[1].mountPath`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a spec is invalid: every problem found, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl ValidationError {
    /// The condition and event reason for an invalid spec.
    pub fn reason(&self) -> &'static str {
        "InvalidSpec"
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { problems: self.0 })
        }
    }
}

/// Validates a DevServer spec.
pub fn devserver(spec: &DevServerSpec) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    if let Some(owner) = &spec.owner
        && owner.trim().is_empty()
    {
        p.add("spec.owner", "must not be empty");
    }
    if let Some(flavor) = &spec.flavor
        && !is_dns_subdomain(flavor)
    {
        p.add(
            "spec.flavor",
            format!("{flavor:?} is not a valid DevServerFlavor name"),
        );
    }
    if let Some(image) = &spec.image {
        check_image(&mut p, "spec.image", image);
    }
    match (spec.mode, &spec.distributed) {
        (DevServerMode::Distributed, None) => p.add(
            "spec.distributed",
            "is required when mode is distributed (set worldSize)",
        ),
        (DevServerMode::Standalone, Some(_)) => p.add(
            "spec.distributed",
            "is only allowed when mode is distributed",
        ),
        _ => {}
    }
    if let Some(d) = &spec.distributed {
        if !(1..=256).contains(&d.world_size) {
            p.add(
                "spec.distributed.worldSize",
                format!("must be between 1 and 256, not {}", d.world_size),
            );
        }
        if let Some(n) = d.nprocs_per_node
            && !(1..=64).contains(&n)
        {
            p.add(
                "spec.distributed.nprocsPerNode",
                format!("must be between 1 and 64, not {n}"),
            );
        }
        for key in d.nccl_settings.iter().flat_map(BTreeMap::keys) {
            if !is_env_name(key) {
                p.add(
                    "spec.distributed.ncclSettings",
                    format!(
                        "{key:?} is not an environment variable name (letters, digits and '_')"
                    ),
                );
            }
        }
    }
    if let Some(key) = spec.ssh.as_ref().and_then(|s| s.public_key.as_deref()) {
        check_authorized_keys(&mut p, "spec.ssh.publicKey", key);
    }
    if let Some(size) = &spec.persistent_home_size {
        check_positive_quantity(&mut p, "spec.persistentHomeSize", size);
    }
    if let Some(claim) = &spec.shared_volume_claim_name
        && !is_dns_subdomain(claim)
    {
        p.add(
            "spec.sharedVolumeClaimName",
            format!("{claim:?} is not a valid PersistentVolumeClaim name"),
        );
    }
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    check_volumes(&mut p, "spec.volumes", volumes);
    for (i, v) in volumes.iter().enumerate() {
        if spec.persistent_home_size.is_some() && v.mount_path == HOME_PATH {
            p.add(
                format!("spec.volumes[{i}].mountPath"),
                "cannot be /home/dev when persistentHomeSize is set (the persistent home is mounted there)",
            );
        }
        if spec.shared_volume_claim_name.is_some() && v.mount_path == SHARED_PATH {
            p.add(
                format!("spec.volumes[{i}].mountPath"),
                "cannot be /shared when sharedVolumeClaimName is set (the shared claim is mounted there)",
            );
        }
    }
    if let Some(lc) = &spec.lifecycle {
        if let Some(ttl) = &lc.time_to_live
            && let Err(e) = parse_duration_bounded(ttl, MAX_TIME_TO_LIVE)
        {
            p.add("spec.lifecycle.timeToLive", duration_message(e));
        }
        if let Some(idle) = &lc.idle_timeout
            && let Err(e) = parse_duration(idle)
        {
            p.add("spec.lifecycle.idleTimeout", duration_message(e));
        }
    }
    p.finish()
}

/// Validates a DevServerFlavor spec.
pub fn flavor(spec: &DevServerFlavorSpec) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    if let Some(image) = &spec.default_image {
        check_image(&mut p, "spec.defaultImage", image);
    }
    if let Some(res) = &spec.resources {
        let requests = check_resource_map(&mut p, "spec.resources.requests", res.requests.as_ref());
        let limits = check_resource_map(&mut p, "spec.resources.limits", res.limits.as_ref());
        for (name, request) in &requests {
            let Some(limit) = limits.get(name) else {
                continue;
            };
            if request > limit {
                p.add(
                    format!("spec.resources.requests.{name}"),
                    format!(
                        "must not exceed the limit ({} > {})",
                        res_str(res.requests.as_ref(), name),
                        res_str(res.limits.as_ref(), name)
                    ),
                );
            } else if is_extended_resource(name) && request != limit {
                p.add(
                    format!("spec.resources.requests.{name}"),
                    "must equal the limit for an extended resource such as a GPU (or set only the limit)",
                );
            }
        }
    }
    for (key, value) in spec.node_selector.iter().flatten() {
        if !is_qualified_name(key) {
            p.add(
                "spec.nodeSelector",
                format!("{key:?} is not a valid label key"),
            );
        }
        if !operator_core::labels::is_valid_label_value(value) {
            p.add(
                format!("spec.nodeSelector.{key}"),
                format!("{value:?} is not a valid label value"),
            );
        }
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        check_toleration(&mut p, &format!("spec.tolerations[{i}]"), t);
    }
    check_volumes(
        &mut p,
        "spec.volumes",
        spec.volumes.as_deref().unwrap_or_default(),
    );
    p.finish()
}

/// Validates a DevServerUser spec.
pub fn user(spec: &DevServerUserSpec) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    if spec.username.len() > MAX_USERNAME_LEN || !is_dns_label(&spec.username) {
        p.add(
            "spec.username",
            format!(
                "{:?} must be a DNS label of at most {MAX_USERNAME_LEN} characters (lower-case letters, digits and '-'), so that the namespace dev-<username> is valid",
                spec.username
            ),
        );
    }
    for (i, key) in spec.ssh_public_keys.iter().flatten().enumerate() {
        check_authorized_keys(&mut p, &format!("spec.sshPublicKeys[{i}]"), key);
    }
    let refs = spec
        .rbac
        .as_ref()
        .and_then(|r| r.additional_role_refs.as_deref())
        .unwrap_or_default();
    for (i, r) in refs.iter().enumerate() {
        if r.api_group != "rbac.authorization.k8s.io" {
            p.add(
                format!("spec.rbac.additionalRoleRefs[{i}].apiGroup"),
                "must be rbac.authorization.k8s.io",
            );
        }
        if !is_dns_subdomain(&r.name) && !r.name.split(':').all(is_dns_subdomain) {
            p.add(
                format!("spec.rbac.additionalRoleRefs[{i}].name"),
                format!("{:?} is not a valid role name", r.name),
            );
        }
    }
    p.finish()
}

/// The namespace of a user: `dev-<username>`.
pub fn user_namespace(username: &str) -> String {
    format!("{}{username}", crate::crd::NAMESPACE_PREFIX)
}

fn duration_message(e: DurationError) -> String {
    match e {
        DurationError::TooLarge { input, max } => format!("{input:?} is too long: at most {max}"),
        other => other.to_string(),
    }
}

fn check_image(p: &mut Problems, field: &str, image: &str) {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        p.add(
            field,
            format!("{image:?} is not an image reference (no spaces, e.g. ubuntu:24.04)"),
        );
    }
}

fn check_positive_quantity(p: &mut Problems, field: &str, q: &Quantity) {
    match quantity::parse_quantity(q) {
        Ok(v) if v.is_positive() => {}
        Ok(_) => p.add(field, format!("{:?} must be greater than zero", q.0)),
        Err(e) => p.add(field, e.to_string()),
    }
}

fn check_resource_map(
    p: &mut Problems,
    field: &str,
    map: Option<&BTreeMap<String, Quantity>>,
) -> BTreeMap<String, quantity::Quantity> {
    let mut out = BTreeMap::new();
    for (name, q) in map.into_iter().flatten() {
        if !is_qualified_name(name) {
            p.add(field, format!("{name:?} is not a valid resource name"));
            continue;
        }
        match quantity::parse_quantity(q) {
            Ok(v) if v.is_negative() => p.add(
                format!("{field}.{name}"),
                format!("{:?} must not be negative", q.0),
            ),
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(e) => p.add(format!("{field}.{name}"), e.to_string()),
        }
    }
    out
}

fn res_str(map: Option<&BTreeMap<String, Quantity>>, name: &str) -> String {
    map.and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

/// Resources outside the `kubernetes.io` namespace with a domain prefix,
/// such as `nvidia.com/gpu`, cannot be overcommitted.
fn is_extended_resource(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, _)) => !(domain == "kubernetes.io" || domain.ends_with(".kubernetes.io")),
        None => false,
    }
}

fn check_toleration(p: &mut Problems, field: &str, t: &Toleration) {
    let operator = t.operator.as_deref().unwrap_or("Equal");
    match operator {
        "Exists" => {
            if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                p.add(
                    format!("{field}.value"),
                    "must be empty when operator is Exists",
                );
            }
        }
        "Equal" => {
            if t.key.as_deref().unwrap_or_default().is_empty() {
                p.add(format!("{field}.key"), "is required when operator is Equal (use operator Exists to tolerate every taint)");
            }
        }
        other => p.add(
            format!("{field}.operator"),
            format!("{other:?} must be Exists or Equal"),
        ),
    }
    if let Some(effect) = t.effect.as_deref()
        && !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
    {
        p.add(
            format!("{field}.effect"),
            format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"),
        );
    }
    if let Some(key) = t.key.as_deref()
        && !key.is_empty()
        && !is_qualified_name(key)
    {
        p.add(
            format!("{field}.key"),
            format!("{key:?} is not a valid taint key"),
        );
    }
    if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
        p.add(
            format!("{field}.tolerationSeconds"),
            "is only allowed with effect NoExecute",
        );
    }
}

fn check_volumes(p: &mut Problems, field: &str, volumes: &[VolumeMount]) {
    if volumes.len() > MAX_VOLUMES {
        p.add(
            field,
            format!("at most {MAX_VOLUMES} volumes, not {}", volumes.len()),
        );
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, v) in volumes.iter().enumerate() {
        if !is_dns_subdomain(&v.claim_name) {
            p.add(
                format!("{field}[{i}].claimName"),
                format!(
                    "{:?} is not a valid PersistentVolumeClaim name",
                    v.claim_name
                ),
            );
        }
        if let Err(msg) = check_mount_path(&v.mount_path) {
            p.add(
                format!("{field}[{i}].mountPath"),
                format!("{:?} {msg}", v.mount_path),
            );
            continue;
        }
        if let Some(first) = seen.insert(v.mount_path.as_str(), i) {
            p.add(
                format!("{field}[{i}].mountPath"),
                format!(
                    "{:?} is already used by {field}[{first}]: each path can be mounted only once",
                    v.mount_path
                ),
            );
        }
    }
}

/// An absolute path without empty, `.` or `..` segments and without a
/// trailing slash (so equal paths are equal strings).
pub fn check_mount_path(path: &str) -> Result<(), &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must be an absolute path, e.g. /data");
    };
    if rest.is_empty() {
        return Err("cannot be the root directory");
    }
    if path.len() > 1024 {
        return Err("is too long (at most 1024 characters)");
    }
    for seg in rest.split('/') {
        match seg {
            "" => return Err("must not contain empty segments or end with '/'"),
            "." | ".." => return Err("must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    if path.contains('\0') || path.contains(':') {
        return Err("must not contain ':' or NUL characters");
    }
    Ok(())
}

/// Key types OpenSSH accepts in `authorized_keys`.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// Each non-empty, non-comment line must hold `<key-type> <key>` (options
/// before the key type are allowed, as in `authorized_keys`). The key blob
/// itself is not decoded, so placeholders like `AAAA...` in documentation
/// pass; the SSH server ignores lines it cannot use.
fn check_authorized_keys(p: &mut Problems, field: &str, text: &str) {
    let mut keys = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let typed = tokens.iter().position(|t| KEY_TYPES.contains(t));
        match typed {
            Some(i) if i + 1 < tokens.len() => keys += 1,
            Some(_) => p.add(field, format!("line {}: the key after {:?} is missing", n + 1, tokens[tokens.len() - 1])),
            None => p.add(
                field,
                format!(
                    "line {}: not an OpenSSH public key (expected e.g. \"ssh-ed25519 AAAA... you@host\"; the type must be one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...)",
                    n + 1
                ),
            ),
        }
    }
    if keys == 0 && !text.trim().is_empty() && p.0.iter().all(|x| x.field != field) {
        p.add(field, "contains no key");
    }
}

/// A label key or resource name: `[prefix/]name`, the prefix a DNS
/// subdomain, the name at most 63 alphanumerics, `-`, `_` or `.`.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if prefix.is_some_and(|p| !is_dns_subdomain(p)) {
        return false;
    }
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        DistributedSpec, FlavorResources, LifecycleSpec, RoleKind, RoleRef, SshSpec, UserRbac,
    };

    fn ds(yaml: &str) -> DevServerSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn fields(r: Result<(), ValidationError>) -> Vec<String> {
        r.err()
            .map(|e| e.problems.into_iter().map(|p| p.field).collect())
            .unwrap_or_default()
    }

    fn vol(claim: &str, path: &str) -> VolumeMount {
        VolumeMount {
            claim_name: claim.into(),
            mount_path: path.into(),
            read_only: false,
        }
    }

    #[test]
    fn the_document_example_is_valid() {
        let spec = ds(r#"
owner: user@example.com
flavor: gpu-large
ssh:
  publicKey: "ssh-rsa AAAA..."
persistentHomeSize: 100Gi
sharedVolumeClaimName: efs-shared-claim
"#);
        assert_eq!(devserver(&spec), Ok(()));
        assert_eq!(spec.mode, DevServerMode::Standalone);
        assert!(spec.running);
    }

    #[test]
    fn a_minimal_spec_is_valid() {
        assert_eq!(devserver(&ds("{}")), Ok(()));
    }

    #[test]
    fn duplicate_mount_paths_are_rejected_with_both_indices() {
        let mut spec = ds("flavor: cpu-small");
        spec.volumes = Some(vec![vol("a", "/data"), vol("b", "/out"), vol("c", "/data")]);
        let err = devserver(&spec).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].field, "spec.volumes[2].mountPath");
        assert!(
            err.to_string().contains("already used by spec.volumes[0]"),
            "{err}"
        );
    }

    #[test]
    fn bad_mount_paths_are_rejected() {
        for bad in ["data", "/", "/data/", "/a//b", "/a/../b", "/a/.", "/a:b"] {
            assert!(check_mount_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["/data", "/home/dev", "/a/b.c/..d"] {
            assert_eq!(check_mount_path(good), Ok(()), "{good:?}");
        }
        let mut spec = ds("{}");
        spec.volumes = Some(vec![vol("Bad_Name", "relative")]);
        assert_eq!(
            fields(devserver(&spec)),
            ["spec.volumes[0].claimName", "spec.volumes[0].mountPath"]
        );
    }

    #[test]
    fn home_and_shared_conflicts() {
        let mut spec = ds("persistentHomeSize: 10Gi\nsharedVolumeClaimName: shared");
        spec.volumes = Some(vec![vol("a", "/home/dev"), vol("b", "/shared")]);
        assert_eq!(
            fields(devserver(&spec)),
            ["spec.volumes[0].mountPath", "spec.volumes[1].mountPath"]
        );
        // Without persistentHomeSize, a claim at /home/dev is the documented way to keep a home.
        let mut spec = ds("{}");
        spec.volumes = Some(vec![vol("mydev-home", "/home/dev")]);
        assert_eq!(devserver(&spec), Ok(()));
    }

    #[test]
    fn mode_and_distributed_must_agree() {
        let spec = ds("mode: distributed");
        assert_eq!(fields(devserver(&spec)), ["spec.distributed"]);
        assert!(
            devserver(&spec)
                .unwrap_err()
                .to_string()
                .contains("required when mode is distributed")
        );
        let mut spec = ds("{}");
        spec.distributed = Some(DistributedSpec {
            world_size: 2,
            nprocs_per_node: None,
            backend: None,
            nccl_settings: None,
        });
        assert_eq!(fields(devserver(&spec)), ["spec.distributed"]);
        spec.mode = DevServerMode::Distributed;
        assert_eq!(devserver(&spec), Ok(()));
        spec.distributed.as_mut().unwrap().world_size = 0;
        spec.distributed.as_mut().unwrap().nprocs_per_node = Some(100);
        spec.distributed.as_mut().unwrap().nccl_settings =
            Some([("1BAD".to_string(), "x".to_string())].into());
        assert_eq!(
            fields(devserver(&spec)),
            [
                "spec.distributed.worldSize",
                "spec.distributed.nprocsPerNode",
                "spec.distributed.ncclSettings"
            ]
        );
    }

    #[test]
    fn durations_are_bounded() {
        let lc = |ttl: &str, idle: &str| {
            let mut spec = ds("{}");
            spec.lifecycle = Some(LifecycleSpec {
                time_to_live: Some(ttl.into()),
                idle_timeout: Some(idle.into()),
            });
            devserver(&spec)
        };
        assert_eq!(lc("2h30m", "30m"), Ok(()));
        assert_eq!(lc("7d", "1d"), Ok(()));
        assert_eq!(lc("168h", "1h"), Ok(()));
        let err = lc("7d1s", "1h").unwrap_err();
        assert_eq!(err.problems[0].field, "spec.lifecycle.timeToLive");
        assert!(err.to_string().contains("at most 7d"), "{err}");
        assert_eq!(
            fields(lc("0s", "0m")),
            ["spec.lifecycle.timeToLive", "spec.lifecycle.idleTimeout"]
        );
        assert_eq!(
            fields(lc("1h 30m", "90")),
            ["spec.lifecycle.timeToLive", "spec.lifecycle.idleTimeout"]
        );
    }

    #[test]
    fn home_size_must_be_a_positive_quantity() {
        for (size, ok) in [
            ("100Gi", true),
            ("1", true),
            ("0", false),
            ("-1Gi", false),
            ("lots", false),
        ] {
            let mut spec = ds("{}");
            spec.persistent_home_size = Some(Quantity(size.into()));
            assert_eq!(devserver(&spec).is_ok(), ok, "{size}");
        }
    }

    #[test]
    fn ssh_keys_need_a_type_and_a_key() {
        let with_key = |k: &str| {
            let mut spec = ds("{}");
            spec.ssh = Some(SshSpec {
                public_key: Some(k.into()),
                service_type: None,
            });
            devserver(&spec)
        };
        assert_eq!(
            with_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ you@host"),
            Ok(())
        );
        assert_eq!(
            with_key("# mine\nssh-rsa AAAA...\n\necdsa-sha2-nistp256 AAAAE2 x\n"),
            Ok(())
        );
        assert_eq!(with_key("no-agent-forwarding ssh-ed25519 AAAAC3"), Ok(()));
        assert!(
            with_key("hunter2")
                .unwrap_err()
                .to_string()
                .contains("not an OpenSSH public key")
        );
        assert!(
            with_key("ssh-ed25519")
                .unwrap_err()
                .to_string()
                .contains("key after")
        );
        assert!(
            with_key("# only a comment")
                .unwrap_err()
                .to_string()
                .contains("contains no key")
        );
    }

    #[test]
    fn image_flavor_and_shared_claim_names() {
        let spec = ds("image: 'ubuntu 22.04'\nflavor: GPU_Large\nsharedVolumeClaimName: 'x y'");
        assert_eq!(
            fields(devserver(&spec)),
            ["spec.flavor", "spec.image", "spec.sharedVolumeClaimName"]
        );
    }

    fn flavor_spec(yaml: &str) -> DevServerFlavorSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_document_flavor_is_valid() {
        let spec = flavor_spec(
            r#"
default: true
resources:
  requests: {cpu: "500m", memory: "1Gi"}
  limits: {cpu: "2", memory: "4Gi"}
nodeSelector:
  kubernetes.io/arch: amd64
tolerations:
  - key: "nvidia.com/gpu"
    operator: "Exists"
    effect: "NoSchedule"
"#,
        );
        assert_eq!(flavor(&spec), Ok(()));
    }

    #[test]
    fn flavor_requests_must_fit_limits() {
        let spec = flavor_spec(
            r#"
resources:
  requests: {cpu: "4", memory: "1Gi", nvidia.com/gpu: "1"}
  limits: {cpu: "2", memory: "1024Mi", nvidia.com/gpu: "2"}
"#,
        );
        let err = flavor(&spec).unwrap_err();
        assert_eq!(
            err.problems
                .iter()
                .map(|p| p.field.as_str())
                .collect::<Vec<_>>(),
            [
                "spec.resources.requests.cpu",
                "spec.resources.requests.nvidia.com/gpu"
            ]
        );
        assert!(err.to_string().contains("(4 > 2)"), "{err}");
    }

    #[test]
    fn flavor_quantities_selectors_and_tolerations() {
        let mut spec = DevServerFlavorSpec {
            display_name: None,
            description: None,
            default: false,
            default_image: None,
            resources: Some(FlavorResources {
                requests: Some([("cpu".to_string(), Quantity("lots".into()))].into()),
                limits: Some([("memory".to_string(), Quantity("-1".into()))].into()),
            }),
            node_selector: Some(
                [
                    ("bad key!".to_string(), "ok".to_string()),
                    ("zone".to_string(), "bad value!".to_string()),
                ]
                .into(),
            ),
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                value: Some("x".into()),
                effect: Some("Sometimes".into()),
                ..Default::default()
            }]),
            volumes: Some(vec![vol("a", "/data"), vol("b", "/data")]),
        };
        assert_eq!(
            fields(flavor(&spec)),
            [
                "spec.resources.requests.cpu",
                "spec.resources.limits.memory",
                "spec.nodeSelector",
                "spec.nodeSelector.zone",
                "spec.tolerations[0].value",
                "spec.tolerations[0].effect",
                "spec.volumes[1].mountPath",
            ]
        );
        spec.resources = None;
        spec.node_selector = None;
        spec.tolerations = None;
        spec.volumes = None;
        assert_eq!(flavor(&spec), Ok(()));
    }

    fn user_spec(name: &str) -> DevServerUserSpec {
        serde_yaml::from_str(&format!("username: {name}")).unwrap()
    }

    #[test]
    fn usernames_must_fit_the_namespace() {
        assert_eq!(user(&user_spec("test-user")), Ok(()));
        assert_eq!(user_namespace("test-user"), "dev-test-user");
        let longest = "a".repeat(MAX_USERNAME_LEN);
        assert_eq!(user(&user_spec(&longest)), Ok(()));
        assert!(is_dns_label(&user_namespace(&longest)));
        for bad in [
            "a".repeat(MAX_USERNAME_LEN + 1),
            "Alice".into(),
            "-bob".into(),
            "bob-".into(),
            "bo_b".into(),
        ] {
            let err = user(&user_spec(&bad)).unwrap_err();
            assert!(
                err.to_string().contains("DNS label of at most 59"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn user_keys_and_role_refs() {
        let mut spec = user_spec("alice");
        spec.ssh_public_keys = Some(vec![
            "ssh-ed25519 AAAAC3 alice@laptop".into(),
            "password".into(),
        ]);
        spec.rbac = Some(UserRbac {
            additional_role_refs: Some(vec![
                RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: RoleKind::ClusterRole,
                    name: "view".into(),
                },
                RoleRef {
                    api_group: "apps".into(),
                    kind: RoleKind::Role,
                    name: "Not A Name".into(),
                },
            ]),
        });
        assert_eq!(
            fields(user(&spec)),
            [
                "spec.sshPublicKeys[1]",
                "spec.rbac.additionalRoleRefs[1].apiGroup",
                "spec.rbac.additionalRoleRefs[1].name"
            ]
        );
    }

    #[test]
    fn extended_resources() {
        assert!(is_extended_resource("nvidia.com/gpu"));
        assert!(!is_extended_resource("cpu"));
        assert!(!is_extended_resource("hugepages.kubernetes.io/x"));
    }
}
