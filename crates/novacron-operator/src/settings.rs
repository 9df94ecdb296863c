//! Operator settings from the environment (the shared command line has only
//! the flags every operator needs):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `NOVACRON_LAUNCHER_IMAGE` | image of launcher pods and importer Jobs | `ghcr.io/orchestra-operators/novacron-launcher:<version>` |
//! | `NOVACRON_KVM_RESOURCE` | extended resource exposing `/dev/kvm` (e.g. `devices.kubevirt.io/kvm`) | none: software emulation where `/dev/kvm` is absent |
//! | `NOVACRON_DEVICE_MAPPING` | extra GPU/FPGA mapping rules, YAML (see [`crate::build::devices`]) | built-in vendors |
//! | `NOVACRON_IMAGE_CATALOG` | `NAMESPACE/NAME` of the image catalog ConfigMap | `$POD_NAMESPACE/novacron-image-catalog` |
//! | `NOVACRON_STATUS_INTERVAL` | how often a running VM's launcher is polled (usage, guest state) | `60s` |
//! | `NOVACRON_MAX_PARALLEL_MIGRATIONS` | live migrations running at once in the cluster; more wait `Pending` | `2` |
//! | `NOVACRON_WEBHOOK_ADDR` | serve the admission webhook (TLS) on this address | off |
//! | `NOVACRON_WEBHOOK_SERVICE` | Service name the API server calls the webhook through | `novacron-webhook` |
//! | `NOVACRON_WEBHOOK_HOSTS` | extra certificate names/IPs, comma separated | none |
//! | `NOVACRON_WEBHOOK_CONFIGURATION` | name of the webhook configurations whose CA bundle the operator sets | `novacron-operator` |
//! | `NOVACRON_WEBHOOK_SECRET` | Secret keeping the webhook's CA and serving certificate, `NAME` (in `$POD_NAMESPACE`) or `NAMESPACE/NAME` | `$POD_NAMESPACE/novacron-operator-webhook-tls`; without a namespace a new CA at every start |

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use crate::build::devices::DeviceMapping;
use crate::build::pod::PodSettings;

/// Settings of the admission webhook server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// DNS names and IPs the serving certificate is valid for.
    pub hosts: Vec<String>,
    /// Name of the Validating- and MutatingWebhookConfiguration to inject
    /// the CA into.
    pub configuration: String,
    /// Namespace and name of the Secret keeping the CA and the serving
    /// certificate across restarts and replicas (`None`: a new CA at every
    /// start).
    pub secret: Option<(String, String)>,
}

/// Default name of the webhook's certificate Secret (the webhook
/// component's RBAC names it).
pub const WEBHOOK_SECRET: &str = "novacron-operator-webhook-tls";

/// Everything the operator reads from its environment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub pod: PodSettings,
    pub devices: DeviceMapping,
    /// Namespace and name of the image catalog ConfigMap.
    pub catalog: Option<(String, String)>,
    pub status_interval: Duration,
    pub webhook: Option<WebhookSettings>,
    /// Cluster-wide limit of live migrations past `Pending`.
    pub max_parallel_migrations: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pod: PodSettings::default(),
            devices: DeviceMapping::default(),
            catalog: None,
            status_interval: Duration::from_secs(60),
            webhook: None,
            max_parallel_migrations: 2,
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Reads the settings; a malformed value is an error naming the
    /// variable.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut s = Settings::default();
        if let Some(image) = var("NOVACRON_LAUNCHER_IMAGE") {
            s.pod.image = image;
        }
        s.pod.kvm_resource = var("NOVACRON_KVM_RESOURCE");
        if let Some(text) = var("NOVACRON_DEVICE_MAPPING") {
            s.devices = DeviceMapping::with_rules_yaml(&text)
                .map_err(anyhow::Error::msg)
                .context("NOVACRON_DEVICE_MAPPING")?;
        }
        let namespace = var("POD_NAMESPACE");
        s.catalog = match var("NOVACRON_IMAGE_CATALOG") {
            Some(v) => Some(parse_ref(&v).context("NOVACRON_IMAGE_CATALOG")?),
            None => namespace
                .clone()
                .map(|ns| (ns, "novacron-image-catalog".to_owned())),
        };
        if let Some(v) = var("NOVACRON_STATUS_INTERVAL") {
            s.status_interval = operator_core::duration::parse_duration(&v)
                .map_err(|e| anyhow::anyhow!("NOVACRON_STATUS_INTERVAL: {e}"))?
                .max(Duration::from_secs(5));
        }
        if let Some(v) = var("NOVACRON_MAX_PARALLEL_MIGRATIONS") {
            s.max_parallel_migrations = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "NOVACRON_MAX_PARALLEL_MIGRATIONS: {v:?} is not a count of at least 1"
                    )
                })?;
        }
        if let Some(addr) = var("NOVACRON_WEBHOOK_ADDR") {
            let addr: SocketAddr = addr.parse().context("NOVACRON_WEBHOOK_ADDR")?;
            let service = var("NOVACRON_WEBHOOK_SERVICE").unwrap_or("novacron-webhook".into());
            let mut hosts = vec![service.clone()];
            if let Some(ns) = &namespace {
                hosts.push(format!("{service}.{ns}.svc"));
                hosts.push(format!("{service}.{ns}.svc.cluster.local"));
            }
            hosts.extend(
                var("NOVACRON_WEBHOOK_HOSTS")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned),
            );
            s.webhook = Some(WebhookSettings {
                addr,
                hosts,
                configuration: var("NOVACRON_WEBHOOK_CONFIGURATION")
                    .unwrap_or("novacron-operator".into()),
                secret: match var("NOVACRON_WEBHOOK_SECRET") {
                    Some(v) if v.contains('/') => {
                        Some(parse_ref(&v).context("NOVACRON_WEBHOOK_SECRET")?)
                    }
                    Some(v) if operator_core::names::is_dns_subdomain(&v) => {
                        namespace.clone().map(|ns| (ns, v))
                    }
                    Some(v) => anyhow::bail!(
                        "NOVACRON_WEBHOOK_SECRET: {v:?}: expected NAME or NAMESPACE/NAME"
                    ),
                    None => namespace.clone().map(|ns| (ns, WEBHOOK_SECRET.to_owned())),
                },
            });
        }
        Ok(s)
    }
}

/// `NAMESPACE/NAME`.
pub fn parse_ref(v: &str) -> anyhow::Result<(String, String)> {
    match v.split_once('/') {
        Some((ns, name))
            if operator_core::names::is_dns_label(ns)
                && operator_core::names::is_dns_subdomain(name) =>
        {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => anyhow::bail!("{v:?}: expected NAMESPACE/NAME"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            parse_ref("novacron-system/catalog").unwrap(),
            ("novacron-system".into(), "catalog".into())
        );
        assert!(parse_ref("catalog").is_err());
        assert!(parse_ref("Bad/x").is_err());
    }
}
