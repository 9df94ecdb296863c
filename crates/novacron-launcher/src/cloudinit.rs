//! cloud-init NoCloud seed: pure rendering of `user-data`, `meta-data` and
//! `network-config` (version 2), and building the `cidata` ISO with
//! genisoimage. The operator calls [`render`] and puts the result into the
//! [`LaunchConfig`](crate::config::LaunchConfig); the launcher calls
//! [`build_iso`] at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::CloudInitConfig;

/// What the seed is rendered from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudInitInput {
    /// Instance id (the VM UID: a new id makes cloud-init run again).
    pub instance_id: String,
    /// Guest hostname.
    pub hostname: String,
    /// Inline user-data (None: a minimal `#cloud-config`).
    pub user_data: Option<String>,
    /// Interfaces in NIC order.
    pub interfaces: Vec<InterfaceInput>,
}

/// One guest interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceInput {
    /// Network name (becomes the netplan id, e.g. `default`).
    pub name: String,
    /// MAC the interface is matched by.
    pub mac: String,
    /// IPv4 settings (None: no IPv4 configuration).
    pub ipv4: Option<IpInput>,
    /// IPv6 settings.
    pub ipv6: Option<IpInput>,
}

/// Address configuration of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpInput {
    /// DHCP (or SLAAC/DHCPv6 for IPv6).
    Dhcp,
    /// Static address.
    Static {
        /// CIDR, e.g. `192.168.1.10/24`.
        address: String,
        /// Default gateway.
        gateway: Option<String>,
        /// DNS servers.
        dns: Vec<String>,
    },
}

/// Renders the seed files. `network-config` is present whenever an
/// interface has settings; without it cloud-init's default (DHCP on the
/// first NIC) applies.
pub fn render(input: &CloudInitInput) -> CloudInitConfig {
    CloudInitConfig {
        user_data: Some(
            input
                .user_data
                .clone()
                .unwrap_or_else(|| "#cloud-config\n{}\n".into()),
        ),
        user_data_file: None,
        meta_data: render_meta_data(&input.instance_id, &input.hostname),
        network_config: render_network_config(&input.interfaces),
    }
}

/// `meta-data`: instance id and hostname (YAML-quoted).
pub fn render_meta_data(instance_id: &str, hostname: &str) -> String {
    #[derive(Serialize)]
    struct Meta<'a> {
        #[serde(rename = "instance-id")]
        instance_id: &'a str,
        #[serde(rename = "local-hostname")]
        local_hostname: &'a str,
    }
    serde_yaml::to_string(&Meta {
        instance_id,
        local_hostname: hostname,
    })
    .expect("plain strings serialize")
}

#[derive(Serialize)]
struct NetworkConfig {
    version: u8,
    ethernets: BTreeMap<String, Ethernet>,
}

#[derive(Serialize, Default)]
struct Ethernet {
    #[serde(rename = "match")]
    matcher: BTreeMap<&'static str, String>,
    #[serde(rename = "set-name")]
    set_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dhcp4: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dhcp6: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
struct Route {
    to: &'static str,
    via: String,
}

#[derive(Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

/// `network-config` version 2: interfaces matched by MAC, renamed to
/// `eth<N>` in NIC order, static addresses with a default route per family
/// and DNS servers.
pub fn render_network_config(interfaces: &[InterfaceInput]) -> Option<String> {
    if interfaces
        .iter()
        .all(|i| i.ipv4.is_none() && i.ipv6.is_none())
    {
        return None;
    }
    let mut ethernets = BTreeMap::new();
    for (index, iface) in interfaces.iter().enumerate() {
        let mut eth = Ethernet {
            matcher: BTreeMap::from([("macaddress", iface.mac.to_ascii_lowercase())]),
            set_name: format!("eth{index}"),
            ..Default::default()
        };
        let mut dns = Vec::new();
        for (family, ip) in [(4, &iface.ipv4), (6, &iface.ipv6)] {
            match ip {
                None => {}
                Some(IpInput::Dhcp) => {
                    if family == 4 {
                        eth.dhcp4 = Some(true)
                    } else {
                        eth.dhcp6 = Some(true)
                    }
                }
                Some(IpInput::Static {
                    address,
                    gateway,
                    dns: servers,
                }) => {
                    eth.addresses.push(address.clone());
                    if let Some(gw) = gateway {
                        eth.routes.push(Route {
                            to: if family == 4 { "0.0.0.0/0" } else { "::/0" },
                            via: gw.clone(),
                        });
                    }
                    dns.extend(servers.iter().cloned());
                }
            }
        }
        dns.dedup();
        if !dns.is_empty() {
            eth.nameservers = Some(Nameservers { addresses: dns });
        }
        ethernets.insert(iface.name.clone(), eth);
    }
    Some(
        serde_yaml::to_string(&NetworkConfig {
            version: 2,
            ethernets,
        })
        .expect("plain data serializes"),
    )
}

/// Errors building the seed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read user-data file {0}: {1}")]
    UserDataFile(PathBuf, #[source] std::io::Error),
    #[error("cannot write seed files in {0}: {1}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("genisoimage is not installed or cannot run: {0} (Debian package genisoimage)")]
    Missing(#[source] std::io::Error),
    #[error("genisoimage failed: {0}")]
    Failed(String),
}

/// Writes the seed files next to `iso` and builds the NoCloud ISO (volume
/// label `cidata`, Joliet + Rock Ridge so names keep their dashes).
pub async fn build_iso(config: &CloudInitConfig, iso: &Path) -> Result<(), SeedError> {
    let user_data = match &config.user_data_file {
        Some(file) => tokio::fs::read_to_string(file)
            .await
            .map_err(|e| SeedError::UserDataFile(file.clone(), e))?,
        None => config
            .user_data
            .clone()
            .unwrap_or_else(|| "#cloud-config\n{}\n".into()),
    };
    let dir = iso.with_extension("d");
    let write_err = |e| SeedError::Write(dir.clone(), e);
    tokio::fs::create_dir_all(&dir).await.map_err(write_err)?;
    let mut files = vec![
        ("user-data", user_data),
        ("meta-data", config.meta_data.clone()),
    ];
    if let Some(net) = &config.network_config {
        files.push(("network-config", net.clone()));
    }
    let mut args: Vec<std::ffi::OsString> = ["-quiet", "-output"]
        .iter()
        .map(Into::into)
        .collect::<Vec<_>>();
    args.push(iso.into());
    args.extend(
        ["-volid", "cidata", "-joliet", "-rock"]
            .iter()
            .map(Into::into),
    );
    for (name, text) in &files {
        let path = dir.join(name);
        tokio::fs::write(&path, text).await.map_err(write_err)?;
        args.push(path.into());
    }
    let out = tokio::process::Command::new("genisoimage")
        .args(&args)
        .output()
        .await
        .map_err(SeedError::Missing)?;
    if !out.status.success() {
        return Err(SeedError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CloudInitInput {
        CloudInitInput {
            instance_id: "3f1c-uid".into(),
            hostname: "web-1".into(),
            user_data: Some("#cloud-config\npackages: [nginx]\n".into()),
            interfaces: vec![
                InterfaceInput {
                    name: "default".into(),
                    mac: "52:54:00:AA:00:01".into(),
                    ipv4: Some(IpInput::Dhcp),
                    ipv6: None,
                },
                InterfaceInput {
                    name: "storage".into(),
                    mac: "52:54:00:aa:00:02".into(),
                    ipv4: Some(IpInput::Static {
                        address: "192.168.10.5/24".into(),
                        gateway: Some("192.168.10.1".into()),
                        dns: vec!["8.8.8.8".into(), "1.1.1.1".into()],
                    }),
                    ipv6: Some(IpInput::Static {
                        address: "fd00::5/64".into(),
                        gateway: Some("fd00::1".into()),
                        dns: vec![],
                    }),
                },
            ],
        }
    }

    #[test]
    fn meta_data_has_instance_id_and_hostname() {
        let seed = render(&input());
        assert_eq!(
            seed.meta_data,
            "instance-id: 3f1c-uid\nlocal-hostname: web-1\n"
        );
        assert_eq!(
            seed.user_data.as_deref(),
            Some("#cloud-config\npackages: [nginx]\n")
        );
    }

    #[test]
    fn network_config_renders_static_addresses_gateways_and_dns() {
        let net = render(&input()).network_config.unwrap();
        let expected = "\
version: 2
ethernets:
  default:
    match:
      macaddress: 52:54:00:aa:00:01
    set-name: eth0
    dhcp4: true
  storage:
    match:
      macaddress: 52:54:00:aa:00:02
    set-name: eth1
    addresses:
    - 192.168.10.5/24
    - fd00::5/64
    routes:
    - to: 0.0.0.0/0
      via: 192.168.10.1
    - to: ::/0
      via: fd00::1
    nameservers:
      addresses:
      - 8.8.8.8
      - 1.1.1.1
";
        assert_eq!(net, expected);
        // Round-trips as YAML with the MAC as a string.
        let v: serde_yaml::Value = serde_yaml::from_str(&net).unwrap();
        assert_eq!(
            v["ethernets"]["storage"]["match"]["macaddress"].as_str(),
            Some("52:54:00:aa:00:02")
        );
    }

    #[test]
    fn no_network_config_without_settings_and_default_user_data() {
        let mut i = input();
        i.user_data = None;
        for iface in &mut i.interfaces {
            iface.ipv4 = None;
            iface.ipv6 = None;
        }
        let seed = render(&i);
        assert_eq!(seed.network_config, None);
        assert!(seed.user_data.unwrap().starts_with("#cloud-config"));
    }

    #[test]
    fn meta_data_quotes_odd_hostnames() {
        let m = render_meta_data("id", "yes");
        let v: serde_yaml::Value = serde_yaml::from_str(&m).unwrap();
        assert_eq!(v["local-hostname"].as_str(), Some("yes"));
    }
}
