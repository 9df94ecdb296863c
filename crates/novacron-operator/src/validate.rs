//! Pure validation of the specs, beyond what the CRD schema and its CEL rules
//! check at admission (and repeating the essential ones, so a spec that got in
//! through an older CRD is still caught): quantities, image sources, address
//! plans, MAC addresses, cron schedules with time zones, bandwidth values,
//! label syntax, tolerations and hooks.
//!
//! Every error names the field and says what is expected; the controller puts
//! the messages in the `Accepted` condition and a Warning event.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Toleration;
use operator_core::cron::CronSchedule;
use operator_core::duration::parse_duration_bounded;
use operator_core::quantity;

use crate::bandwidth;
use crate::crd::{
    IpConfig, IpMethod, LifecycleHandler, Network, NetworkType, PullPolicy, UpdateStrategyType,
    VirtualMachineMigrationSpec, VirtualMachineSpec, VmImage, VmResources, VmSpec,
};
pub use operator_core::names::{is_dns_label, is_dns_subdomain};

/// `512Mi`, the least memory a VM may have.
pub const MIN_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
/// The most inline cloud-init user data accepted, in bytes.
pub const MAX_INLINE_USER_DATA: usize = 16 * 1024;
/// Volume names the operator uses for its own disks.
pub const RESERVED_VOLUME_NAMES: [&str; 2] = ["rootdisk", "cloudinit"];
/// The network name that means the pod network (without `networkAttachment`).
pub const POD_NETWORK: &str = "default";
/// The longest `migrationPolicy.completionTimeout` accepted.
pub const MAX_COMPLETION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The VM has no template.
    #[error(
        "spec.template is required: it defines the VM's resources, image and networks (manifests that only set policies must be merged into an existing VM)"
    )]
    MissingTemplate,
    /// Both `running` and `runStrategy` are set.
    #[error("set either spec.running or spec.runStrategy, not both")]
    RunStateConflict,
    /// The object's name cannot be used.
    #[error("metadata.name: {message}")]
    Name { message: String },
    /// CPU, memory or disk.
    #[error("{path}: {message}")]
    Resources { path: String, message: String },
    /// The image source or checksum.
    #[error("{path}: {message}")]
    Image { path: String, message: String },
    /// A network interface.
    #[error("{path}: {message}")]
    Network { path: String, message: String },
    /// A data disk.
    #[error("{path}: {message}")]
    Volume { path: String, message: String },
    /// A passthrough device.
    #[error("{path}: {message}")]
    Device { path: String, message: String },
    /// cloud-init data.
    #[error("{path}: {message}")]
    CloudInit { path: String, message: String },
    /// Node selector, tolerations or target node selector.
    #[error("{path}: {message}")]
    Placement { path: String, message: String },
    /// A lifecycle hook.
    #[error("{path}: {message}")]
    Hook { path: String, message: String },
    /// The migration policy.
    #[error("{path}: {message}")]
    MigrationPolicy { path: String, message: String },
    /// The snapshot policy.
    #[error("{path}: {message}")]
    SnapshotPolicy { path: String, message: String },
    /// The update strategy.
    #[error("{path}: {message}")]
    UpdateStrategy { path: String, message: String },
}

impl SpecError {
    /// A stable CamelCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::MissingTemplate => "MissingTemplate",
            SpecError::RunStateConflict => "RunStateConflict",
            SpecError::Name { .. } => "InvalidName",
            SpecError::Resources { .. } => "InvalidResources",
            SpecError::Image { .. } => "InvalidImage",
            SpecError::Network { .. } => "InvalidNetwork",
            SpecError::Volume { .. } => "InvalidVolume",
            SpecError::Device { .. } => "InvalidDevice",
            SpecError::CloudInit { .. } => "InvalidCloudInit",
            SpecError::Placement { .. } => "InvalidPlacement",
            SpecError::Hook { .. } => "InvalidHook",
            SpecError::MigrationPolicy { .. } => "InvalidMigrationPolicy",
            SpecError::SnapshotPolicy { .. } => "InvalidSnapshotPolicy",
            SpecError::UpdateStrategy { .. } => "InvalidUpdateStrategy",
        }
    }
}

/// Every problem found in a spec (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec {
    /// The problems, in field order.
    pub errors: Vec<SpecError>,
}

impl InvalidSpec {
    /// The reason of the only problem, or `InvalidSpec` when there are several.
    pub fn reason(&self) -> &'static str {
        match self.errors.as_slice() {
            [one] => one.reason(),
            _ => "InvalidSpec",
        }
    }
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidSpec {}

fn finish(errors: Vec<SpecError>) -> Result<(), InvalidSpec> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidSpec { errors })
    }
}

/// Validates a VirtualMachine named `name`.
pub fn validate_vm(name: &str, spec: &VirtualMachineSpec) -> Result<(), InvalidSpec> {
    let mut errors = Vec::new();
    if !is_dns_label(name) {
        errors.push(SpecError::Name {
            message: format!(
                "{name:?} is not a DNS label (at most 63 lowercase letters, digits and '-'); it becomes the guest host name and a label value"
            ),
        });
    }
    if spec.running.is_some() && spec.run_strategy.is_some() {
        errors.push(SpecError::RunStateConflict);
    }
    match &spec.template {
        Some(template) => validate_vm_spec(&template.spec, &mut errors),
        None => errors.push(SpecError::MissingTemplate),
    }
    validate_migration_policy(spec, &mut errors);
    validate_snapshot_policy(spec, &mut errors);
    validate_update_strategy(spec, &mut errors);
    finish(errors)
}

/// Validates a VirtualMachineMigration.
pub fn validate_migration(spec: &VirtualMachineMigrationSpec) -> Result<(), InvalidSpec> {
    let mut errors = Vec::new();
    if !is_dns_label(&spec.vm_name) {
        errors.push(SpecError::Name {
            message: format!(
                "spec.vmName {:?} is not a valid VirtualMachine name",
                spec.vm_name
            ),
        });
    }
    validate_selector(
        "spec.targetNodeSelector",
        spec.target_node_selector.iter(),
        &mut errors,
    );
    finish(errors)
}

const T: &str = "spec.template.spec";

fn validate_vm_spec(spec: &VmSpec, errors: &mut Vec<SpecError>) {
    validate_resources(&spec.resources, errors);
    validate_image(&spec.image, errors);
    validate_networks(&spec.networks, errors);
    validate_volumes(spec, errors);
    validate_devices(spec, errors);
    validate_cloud_init(spec, errors);
    validate_selector(
        &format!("{T}.nodeSelector"),
        spec.node_selector.iter(),
        errors,
    );
    for (i, t) in spec.tolerations.iter().enumerate() {
        if let Err(message) = check_toleration(t) {
            errors.push(SpecError::Placement {
                path: format!("{T}.tolerations[{i}]"),
                message,
            });
        }
    }
    if let Some(lifecycle) = &spec.lifecycle {
        if let Some(h) = &lifecycle.pre_start {
            validate_hook(&format!("{T}.lifecycle.preStart"), h, true, errors);
        }
        if let Some(h) = &lifecycle.pre_stop {
            validate_hook(&format!("{T}.lifecycle.preStop"), h, false, errors);
        }
    }
    if !(0..=3600).contains(&spec.termination_grace_period_seconds) {
        errors.push(SpecError::Resources {
            path: format!("{T}.terminationGracePeriodSeconds"),
            message: format!(
                "{} is out of range: expected 0 to 3600 seconds",
                spec.termination_grace_period_seconds
            ),
        });
    }
}

fn validate_resources(r: &VmResources, errors: &mut Vec<SpecError>) {
    let path = |f: &str| format!("{T}.resources.{f}");
    if !(1..=512).contains(&r.cpu) {
        errors.push(SpecError::Resources {
            path: path("cpu"),
            message: format!("{} virtual CPUs: expected 1 to 512", r.cpu),
        });
    }
    match quantity::parse_bytes(&r.memory.0) {
        Ok(bytes) if bytes < MIN_MEMORY_BYTES => errors.push(SpecError::Resources {
            path: path("memory"),
            message: format!("{} is less than the minimum of 512Mi", r.memory.0),
        }),
        Ok(_) => {}
        Err(e) => errors.push(SpecError::Resources {
            path: path("memory"),
            message: e.to_string(),
        }),
    }
    match quantity::parse_bytes(&r.disk.0) {
        Ok(0) => errors.push(SpecError::Resources {
            path: path("disk"),
            message: "must be larger than zero, e.g. 50Gi".into(),
        }),
        Ok(_) => {}
        Err(e) => errors.push(SpecError::Resources {
            path: path("disk"),
            message: e.to_string(),
        }),
    }
}

/// The kinds of image sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource<'a> {
    /// `http://` or `https://` URL.
    Http(&'a str),
    /// `marketplace://NAME`.
    Marketplace(&'a str),
    /// `pvc://[NAMESPACE/]NAME`.
    Pvc {
        namespace: Option<&'a str>,
        name: &'a str,
    },
    /// `snapshot://NAME`.
    Snapshot(&'a str),
}

const SOURCE_FORMS: &str =
    "expected an http(s):// URL, marketplace://NAME, pvc://[NAMESPACE/]NAME or snapshot://NAME";

/// Parses `image.source`.
pub fn parse_image_source(source: &str) -> Result<ImageSource<'_>, String> {
    if source.chars().any(char::is_whitespace) {
        return Err(format!("{source:?} contains whitespace; {SOURCE_FORMS}"));
    }
    if let Some(rest) = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
    {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("{source:?} has no host; {SOURCE_FORMS}"));
        }
        return Ok(ImageSource::Http(source));
    }
    if let Some(name) = source.strip_prefix("marketplace://") {
        let ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        return if ok {
            Ok(ImageSource::Marketplace(name))
        } else {
            Err(format!(
                "{source:?}: marketplace image names are letters, digits, '.', '_' and '-'"
            ))
        };
    }
    if let Some(rest) = source.strip_prefix("pvc://") {
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, rest),
        };
        if namespace.is_some_and(|ns| !is_dns_label(ns)) || !is_dns_subdomain(name) {
            return Err(format!(
                "{source:?}: expected pvc://NAME or pvc://NAMESPACE/NAME with Kubernetes object names"
            ));
        }
        return Ok(ImageSource::Pvc { namespace, name });
    }
    if let Some(name) = source.strip_prefix("snapshot://") {
        return if is_dns_subdomain(name) {
            Ok(ImageSource::Snapshot(name))
        } else {
            Err(format!(
                "{source:?}: expected snapshot://NAME with a VolumeSnapshot name"
            ))
        };
    }
    Err(format!(
        "{source:?} is not a supported source; {SOURCE_FORMS}"
    ))
}

fn validate_image(image: &VmImage, errors: &mut Vec<SpecError>) {
    let source = parse_image_source(&image.source);
    if let Err(message) = &source {
        errors.push(SpecError::Image {
            path: format!("{T}.image.source"),
            message: message.clone(),
        });
    }
    if let Some(checksum) = &image.checksum {
        let path = format!("{T}.image.checksum");
        let well_formed = match checksum.split_once(':') {
            Some(("sha256", hex)) => hex.len() == 64 && is_lower_hex(hex),
            Some(("sha512", hex)) => hex.len() == 128 && is_lower_hex(hex),
            _ => false,
        };
        if !well_formed {
            errors.push(SpecError::Image {
                path: path.clone(),
                message:
                    "expected sha256:<64 lowercase hex digits> or sha512:<128 lowercase hex digits>"
                        .into(),
            });
        }
        if source
            .as_ref()
            .is_ok_and(|s| !matches!(s, ImageSource::Http(_)))
        {
            errors.push(SpecError::Image {
                path,
                message: "a checksum applies only to http:// and https:// sources".into(),
            });
        }
    }
    if image.pull_policy == PullPolicy::Always
        && source.is_ok_and(|s| matches!(s, ImageSource::Snapshot(_)))
    {
        errors.push(SpecError::Image {
            path: format!("{T}.image.pullPolicy"),
            message: "Always would restore the snapshot over the disk on every source change; use IfNotPresent for snapshot:// sources".into(),
        });
    }
}

/// Whether the network is the pod network.
pub fn is_pod_network(n: &Network) -> bool {
    n.name == POD_NETWORK && n.network_attachment.is_none()
}

fn validate_networks(networks: &[Network], errors: &mut Vec<SpecError>) {
    let mut names = BTreeSet::new();
    let mut macs = BTreeSet::new();
    for (i, n) in networks.iter().enumerate() {
        let path = format!("{T}.networks[{i}]");
        let mut err = |field: &str, message: String| {
            errors.push(SpecError::Network {
                path: format!("{path}{field}"),
                message,
            })
        };
        if !is_dns_label(&n.name) {
            err(".name", format!("{:?} is not a DNS label", n.name));
        }
        if !names.insert(n.name.as_str()) {
            err(
                ".name",
                format!("{:?} is used by more than one network", n.name),
            );
        }
        let pod = is_pod_network(n);
        match (pod, n.type_) {
            (true, NetworkType::Bridge | NetworkType::Masquerade) => {}
            (true, other) => err(
                ".type",
                format!(
                    "{} needs a NetworkAttachmentDefinition: the pod network (named {POD_NETWORK}) supports bridge and masquerade; set networkAttachment or use another name",
                    other.as_str()
                ),
            ),
            (false, NetworkType::Masquerade) => err(
                ".type",
                format!(
                    "masquerade is only possible on the pod network (the network named {POD_NETWORK} without networkAttachment)"
                ),
            ),
            (false, _) => {}
        }
        if let Some(nad) = &n.network_attachment {
            let ok = match nad.split_once('/') {
                Some((ns, name)) => is_dns_label(ns) && is_dns_subdomain(name),
                None => is_dns_subdomain(nad),
            };
            if !ok {
                err(
                    ".networkAttachment",
                    format!(
                        "{nad:?}: expected NAME or NAMESPACE/NAME of a NetworkAttachmentDefinition"
                    ),
                );
            }
        }
        if let Some(mac) = &n.mac_address {
            match parse_mac(mac) {
                Ok(bytes) => {
                    if !macs.insert(bytes) {
                        err(
                            ".macAddress",
                            format!("{mac} is used by more than one network"),
                        );
                    }
                }
                Err(message) => err(".macAddress", message),
            }
        }
        for (family, config) in [(4u8, &n.ipv4), (6u8, &n.ipv6)] {
            let Some(config) = config else { continue };
            let field = format!(".ipv{family}");
            if let Err((sub, message)) = check_ip_config(family, config, pod) {
                err(&format!("{field}{sub}"), message);
            }
        }
    }
}

/// Checks one family's address configuration; the error names the sub-field.
fn check_ip_config(
    family: u8,
    c: &IpConfig,
    pod_network: bool,
) -> Result<(), (&'static str, String)> {
    let example = if family == 4 {
        "10.0.1.10/24"
    } else {
        "fd00::10/64"
    };
    for (i, dns) in c.dns.iter().enumerate() {
        if dns.parse::<IpAddr>().is_err() {
            return Err((".dns", format!("entry {i} ({dns:?}) is not an IP address")));
        }
    }
    if c.dns.len() > 8 {
        return Err((".dns", format!("{} servers: at most 8", c.dns.len())));
    }
    match c.method {
        IpMethod::Dhcp => {
            if c.address.is_some() || c.gateway.is_some() {
                return Err((
                    "",
                    "address and gateway can only be set with method static".into(),
                ));
            }
            Ok(())
        }
        IpMethod::Static => {
            if pod_network {
                return Err((
                    ".method",
                    "static addressing is not possible on the pod network, which assigns the address; use a network with a NetworkAttachmentDefinition".into(),
                ));
            }
            let Some(address) = &c.address else {
                return Err((
                    ".address",
                    format!(
                        "method static requires address (an address with prefix length, e.g. {example})"
                    ),
                ));
            };
            let (ip, prefix) = parse_cidr(address).map_err(|m| {
                (
                    ".address",
                    format!("{address:?}: {m}; expected e.g. {example}"),
                )
            })?;
            if family_of(&ip) != family {
                return Err((
                    ".address",
                    format!("{address} is not an IPv{family} address; expected e.g. {example}"),
                ));
            }
            if let Some(gw) = &c.gateway {
                let gw_ip: IpAddr = gw
                    .parse()
                    .map_err(|_| (".gateway", format!("{gw:?} is not an IP address")))?;
                if family_of(&gw_ip) != family {
                    return Err((".gateway", format!("{gw} is not an IPv{family} address")));
                }
                if !same_subnet(&ip, &gw_ip, prefix) {
                    return Err((
                        ".gateway",
                        format!("{gw} is not in the subnet of {address}"),
                    ));
                }
                if gw_ip == ip {
                    return Err((".gateway", format!("{gw} is the interface's own address")));
                }
            }
            Ok(())
        }
    }
}

fn family_of(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 4 } else { 6 }
}

/// Parses `ADDRESS/PREFIX`.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| "missing the prefix length (/NN)".to_string())?;
    let ip: IpAddr = ip.parse().map_err(|_| "not an IP address".to_string())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("the prefix length must be 0 to {max}"))?;
    Ok((ip, prefix))
}

fn same_subnet(a: &IpAddr, b: &IpAddr, prefix: u8) -> bool {
    let (a, b, bits) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(*a) as u128, u32::from(*b) as u128, 32u32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(*a), u128::from(*b), 128u32),
        _ => return false,
    };
    let shift = bits - prefix as u32;
    if shift >= 128 {
        return true;
    }
    (a >> shift) == (b >> shift)
}

/// Parses a unicast, non-zero MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut bytes = [0u8; 6];
    let well_formed = parts.len() == 6
        && parts
            .iter()
            .zip(bytes.iter_mut())
            .all(|(p, b)| p.len() == 2 && u8::from_str_radix(p, 16).map(|v| *b = v).is_ok());
    if !well_formed {
        return Err(format!("{s:?} is not a MAC address like 02:00:00:aa:bb:cc"));
    }
    if bytes[0] & 1 == 1 {
        return Err(format!(
            "{s} is a multicast address; the lowest bit of the first byte must be 0"
        ));
    }
    if bytes == [0; 6] {
        return Err("00:00:00:00:00:00 is not a usable MAC address".into());
    }
    Ok(bytes)
}

fn validate_volumes(spec: &VmSpec, errors: &mut Vec<SpecError>) {
    let mut names = BTreeSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let path = format!("{T}.volumes[{i}]");
        let mut err = |field: &str, message: String| {
            errors.push(SpecError::Volume {
                path: format!("{path}{field}"),
                message,
            })
        };
        if !is_dns_label(&v.name) {
            err(".name", format!("{:?} is not a DNS label", v.name));
        } else if RESERVED_VOLUME_NAMES.contains(&v.name.as_str()) {
            err(
                ".name",
                format!("{:?} is reserved for the operator's own disks", v.name),
            );
        }
        if !names.insert(v.name.as_str()) {
            err(
                ".name",
                format!("{:?} is used by more than one volume", v.name),
            );
        }
        match quantity::parse_bytes(&v.size.0) {
            Ok(0) => err(".size", "must be larger than zero, e.g. 100Gi".into()),
            Ok(_) => {}
            Err(e) => err(".size", e.to_string()),
        }
        if let Some(sc) = &v.storage_class
            && !is_dns_subdomain(sc)
        {
            err(
                ".storageClass",
                format!("{sc:?} is not a valid StorageClass name"),
            );
        }
    }
}

fn validate_devices(spec: &VmSpec, errors: &mut Vec<SpecError>) {
    for (i, d) in spec.devices.iter().enumerate() {
        let path = format!("{T}.devices[{i}]");
        let mut err = |field: &str, message: String| {
            errors.push(SpecError::Device {
                path: format!("{path}{field}"),
                message,
            })
        };
        if !(1..=16).contains(&d.count) {
            err(".count", format!("{}: expected 1 to 16", d.count));
        }
        if let Some(vendor) = &d.vendor
            && !is_dns_label(vendor)
        {
            err(
                ".vendor",
                format!(
                    "{vendor:?}: expected a lowercase name like nvidia (it selects the extended resource)"
                ),
            );
        }
        if let Some(model) = &d.model
            && (model.is_empty() || !operator_core::labels::is_valid_label_value(model))
        {
            err(
                ".model",
                format!(
                    "{model:?}: expected a label value like tesla-t4 (it becomes a node selector)"
                ),
            );
        }
    }
}

fn validate_cloud_init(spec: &VmSpec, errors: &mut Vec<SpecError>) {
    if spec.user_data.is_some() && spec.user_data_secret_ref.is_some() {
        errors.push(SpecError::CloudInit {
            path: T.into(),
            message: "set either userData or userDataSecretRef, not both".into(),
        });
    }
    if let Some(data) = &spec.user_data
        && data.len() > MAX_INLINE_USER_DATA
    {
        errors.push(SpecError::CloudInit {
            path: format!("{T}.userData"),
            message: format!(
                "{} bytes is more than the inline limit of {MAX_INLINE_USER_DATA}; put the data in a Secret and use userDataSecretRef",
                data.len()
            ),
        });
    }
    if let Some(r) = &spec.user_data_secret_ref {
        if !is_dns_subdomain(&r.name) {
            errors.push(SpecError::CloudInit {
                path: format!("{T}.userDataSecretRef.name"),
                message: format!("{:?} is not a valid Secret name", r.name),
            });
        }
        if r.key.is_empty()
            || r.key.len() > 253
            || !r
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            errors.push(SpecError::CloudInit {
                path: format!("{T}.userDataSecretRef.key"),
                message: format!("{:?} is not a valid Secret key", r.key),
            });
        }
    }
}

fn validate_selector<'a>(
    path: &str,
    selector: impl Iterator<Item = (&'a String, &'a String)>,
    errors: &mut Vec<SpecError>,
) {
    for (k, v) in selector {
        if !is_qualified_name(k) {
            errors.push(SpecError::Placement {
                path: path.into(),
                message: format!("{k:?} is not a valid label key"),
            });
        }
        if !operator_core::labels::is_valid_label_value(v) {
            errors.push(SpecError::Placement {
                path: format!("{path}[{k}]"),
                message: format!("{v:?} is not a valid label value"),
            });
        }
    }
}

fn check_toleration(t: &Toleration) -> Result<(), String> {
    let op = t.operator.as_deref().unwrap_or("Equal");
    let key = t.key.as_deref().unwrap_or("");
    let value = t.value.as_deref().unwrap_or("");
    match op {
        "Equal" | "Exists" | "Lt" | "Gt" => {}
        other => {
            return Err(format!(
                "operator {other:?}: expected Equal, Exists, Lt or Gt"
            ));
        }
    }
    if op == "Exists" && !value.is_empty() {
        return Err("value must be empty when operator is Exists".into());
    }
    if key.is_empty() && op != "Exists" {
        return Err("an empty key (all taints) requires operator Exists".into());
    }
    if !key.is_empty() && !is_qualified_name(key) {
        return Err(format!("key {key:?} is not a valid taint key"));
    }
    if let Some(effect) = t.effect.as_deref()
        && !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
    {
        return Err(format!(
            "effect {effect:?}: expected NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
        return Err("tolerationSeconds only applies to effect NoExecute".into());
    }
    Ok(())
}

fn validate_hook(path: &str, h: &LifecycleHandler, pre_start: bool, errors: &mut Vec<SpecError>) {
    let mut err = |message: String| {
        errors.push(SpecError::Hook {
            path: path.into(),
            message,
        })
    };
    match (&h.exec, &h.http_get) {
        (Some(_), Some(_)) | (None, None) => {
            err("a hook needs exactly one of exec or httpGet".into())
        }
        (Some(exec), None) => {
            if exec.command.first().is_none_or(|c| c.is_empty()) {
                err("exec.command needs a program as its first element".into());
            }
        }
        (None, Some(http)) => {
            if !(1..=65535).contains(&http.port) {
                err(format!("httpGet.port {}: expected 1 to 65535", http.port));
            }
            if !http.path.starts_with('/') {
                err(format!("httpGet.path {:?} must start with /", http.path));
            }
            if pre_start && http.host.is_none() {
                err(
                    "httpGet.host is required for preStart: the VM has no address before it starts"
                        .into(),
                );
            }
        }
    }
    if !(1..=3600).contains(&h.timeout_seconds) {
        err(format!(
            "timeoutSeconds {}: expected 1 to 3600",
            h.timeout_seconds
        ));
    }
}

fn validate_migration_policy(spec: &VirtualMachineSpec, errors: &mut Vec<SpecError>) {
    let p = &spec.migration_policy;
    if let Some(bw) = &p.bandwidth
        && let Err(e) = bandwidth::parse(bw)
    {
        errors.push(SpecError::MigrationPolicy {
            path: "spec.migrationPolicy.bandwidth".into(),
            message: e.to_string(),
        });
    }
    if let Some(timeout) = &p.completion_timeout
        && let Err(e) = parse_duration_bounded(timeout, MAX_COMPLETION_TIMEOUT)
    {
        errors.push(SpecError::MigrationPolicy {
            path: "spec.migrationPolicy.completionTimeout".into(),
            message: e.to_string(),
        });
    }
    if p.post_copy && p.compression {
        errors.push(SpecError::MigrationPolicy {
            path: "spec.migrationPolicy.postCopy".into(),
            message: format!(
                "postCopy cannot be combined with compression: {} (set one of them to false)",
                novacron_launcher::api::POSTCOPY_MULTIFD
            ),
        });
    }
}

fn validate_snapshot_policy(spec: &VirtualMachineSpec, errors: &mut Vec<SpecError>) {
    let Some(p) = &spec.snapshot_policy else {
        return;
    };
    if let Err(e) = CronSchedule::parse(&p.schedule, p.time_zone.as_deref()) {
        let field = if matches!(e, operator_core::cron::CronError::UnknownTimeZone { .. }) {
            "timeZone"
        } else {
            "schedule"
        };
        errors.push(SpecError::SnapshotPolicy {
            path: format!("spec.snapshotPolicy.{field}"),
            message: e.to_string(),
        });
    }
    if !(1..=1000).contains(&p.retention) {
        errors.push(SpecError::SnapshotPolicy {
            path: "spec.snapshotPolicy.retention".into(),
            message: format!("{}: expected 1 to 1000 snapshots", p.retention),
        });
    }
}

fn validate_update_strategy(spec: &VirtualMachineSpec, errors: &mut Vec<SpecError>) {
    let s = &spec.update_strategy;
    if let Some(ru) = &s.rolling_update {
        if s.type_ != UpdateStrategyType::RollingUpdate {
            errors.push(SpecError::UpdateStrategy {
                path: "spec.updateStrategy.rollingUpdate".into(),
                message: "can only be set with type RollingUpdate".into(),
            });
        }
        if let Some(m) = ru.max_unavailable
            && !(0..=1).contains(&m)
        {
            errors.push(SpecError::UpdateStrategy {
                path: "spec.updateStrategy.rollingUpdate.maxUnavailable".into(),
                message: format!("{m}: expected 0 or 1 (a VM is one instance)"),
            });
        }
    }
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 alphanumerics, '-', '_' and '.', starting and ending alphanumeric.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if prefix.is_some_and(|p| !is_dns_subdomain(p)) {
        return false;
    }
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests;
