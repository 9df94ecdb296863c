//! devctl's own configuration, `~/.config/devctl/config.yaml` (`.yml` is
//! read too): the SSH key pair, agent forwarding, the default flavor and
//! namespace. `$DEVCTL_CONFIG` names another file (tests use it so they never
//! touch the real home); `$XDG_CONFIG_HOME` moves the directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "DEVCTL_CONFIG";

/// The settings. Every key is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Private SSH key used to log in; its public half is `<sshKey>.pub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
    /// Forward the SSH agent by default (`devctl ssh -A`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_agent: Option<bool>,
    /// Flavor of new DevServers when `--flavor` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_flavor: Option<String>,
    /// Namespace when `-n` is not given (before the kubeconfig's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_namespace: Option<String>,
}

/// The keys `devctl config set` accepts.
pub const KEYS: [&str; 4] = [
    "sshKey",
    "forwardAgent",
    "defaultFlavor",
    "defaultNamespace",
];

impl Config {
    /// Sets `key` to `value`; an empty value removes the key.
    pub fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key {
            "sshKey" => self.ssh_key = opt(value).map(PathBuf::from),
            "forwardAgent" => {
                self.forward_agent = match value {
                    "" => None,
                    "true" | "yes" => Some(true),
                    "false" | "no" => Some(false),
                    _ => bail!("forwardAgent must be true or false, not {value:?}"),
                }
            }
            "defaultFlavor" => {
                if !value.is_empty() {
                    crate::args::check_name("flavor", value)?;
                }
                self.default_flavor = opt(value)
            }
            "defaultNamespace" => {
                if !value.is_empty() && !operator_core::names::is_dns_label(value) {
                    bail!(
                        "invalid namespace {value:?}: use lower-case letters, digits and '-' (at most 63)"
                    );
                }
                self.default_namespace = opt(value)
            }
            _ => bail!("unknown key {key:?}; the keys are {}", KEYS.join(", ")),
        }
        Ok(())
    }

    /// The public key file of [`Config::ssh_key`].
    pub fn ssh_public_key(&self) -> Option<PathBuf> {
        self.ssh_key.as_ref().map(|k| {
            let mut s = k.clone().into_os_string();
            s.push(".pub");
            PathBuf::from(s)
        })
    }
}

/// Where devctl keeps its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// The configuration file (may not exist yet).
    pub config: PathBuf,
    /// devctl's SSH configuration (one `Host` entry per DevServer).
    pub ssh_config: PathBuf,
    /// The pinned host keys of DevServers.
    pub known_hosts: PathBuf,
}

impl Paths {
    /// The paths from the environment: `$DEVCTL_CONFIG`, else
    /// `$XDG_CONFIG_HOME/devctl/config.yaml`, else
    /// `$HOME/.config/devctl/config.yaml` (an existing `config.yml` is used
    /// when there is no `config.yaml`).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Self::resolve(
            var(CONFIG_ENV).map(PathBuf::from),
            var("XDG_CONFIG_HOME").map(PathBuf::from),
            var("HOME").map(PathBuf::from),
        )
    }

    /// [`Paths::from_env`] with the variables given.
    pub fn resolve(
        explicit: Option<PathBuf>,
        xdg: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let config = match explicit {
            Some(p) => p,
            None => {
                let dir = match (xdg, home) {
                    (Some(x), _) => x.join("devctl"),
                    (None, Some(h)) => h.join(".config").join("devctl"),
                    (None, None) => bail!(
                        "cannot find the configuration directory: set HOME, XDG_CONFIG_HOME or {CONFIG_ENV}"
                    ),
                };
                let yaml = dir.join("config.yaml");
                let yml = dir.join("config.yml");
                if !yaml.exists() && yml.exists() {
                    yml
                } else {
                    yaml
                }
            }
        };
        let dir = config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Paths {
            ssh_config: dir.join("ssh").join("config"),
            known_hosts: dir.join("ssh").join("known_hosts"),
            config,
        })
    }
}

/// Reads the configuration; a missing file is the empty configuration.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Config::default()),
        Ok(text) => serde_yaml::from_str(&text).map_err(|e| {
            anyhow!(
                "reading {}: {e} (fix the file, or see `devctl config show`)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the configuration (creating its directory).
pub fn save(path: &Path, config: &Config) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = format!(
        "# devctl configuration; keys: {}\n{}",
        KEYS.join(", "),
        serde_yaml::to_string(config)?
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The configuration `devctl config init` proposes: the first usual SSH key
/// found in `ssh_dir`.
pub fn initial(ssh_dir: &Path) -> Config {
    let ssh_key = ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|k| ssh_dir.join(k))
        .find(|k| k.exists() && k.with_extension("pub").exists());
    Config {
        ssh_key,
        forward_agent: Some(false),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_environment() {
        let p = Paths::resolve(Some("/x/c.yaml".into()), None, Some("/home/a".into())).unwrap();
        assert_eq!(p.config, PathBuf::from("/x/c.yaml"));
        assert_eq!(p.known_hosts, PathBuf::from("/x/ssh/known_hosts"));
        let p = Paths::resolve(None, Some("/xdg".into()), Some("/home/a".into())).unwrap();
        assert_eq!(p.config, PathBuf::from("/xdg/devctl/config.yaml"));
        let p = Paths::resolve(None, None, Some("/home/a".into())).unwrap();
        assert_eq!(
            p.config,
            PathBuf::from("/home/a/.config/devctl/config.yaml")
        );
        assert_eq!(
            p.ssh_config,
            PathBuf::from("/home/a/.config/devctl/ssh/config")
        );
        assert!(Paths::resolve(None, None, None).is_err());
    }

    #[test]
    fn yml_is_read_when_there_is_no_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("devctl");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.yml"), "defaultFlavor: gpu-small\n").unwrap();
        let p = Paths::resolve(None, Some(dir.path().into()), None).unwrap();
        assert_eq!(p.config, d.join("config.yml"));
        assert_eq!(
            load(&p.config).unwrap().default_flavor.as_deref(),
            Some("gpu-small")
        );
        std::fs::write(d.join("config.yaml"), "").unwrap();
        let p = Paths::resolve(None, Some(dir.path().into()), None).unwrap();
        assert_eq!(p.config, d.join("config.yaml"));
    }

    #[test]
    fn set_save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.yaml");
        assert_eq!(load(&path).unwrap(), Config::default());
        let mut c = Config::default();
        c.set("sshKey", "/k/id_ed25519").unwrap();
        c.set("forwardAgent", "true").unwrap();
        c.set("defaultFlavor", "cpu-small").unwrap();
        c.set("defaultNamespace", "dev-alice").unwrap();
        assert_eq!(
            c.ssh_public_key().unwrap(),
            PathBuf::from("/k/id_ed25519.pub")
        );
        save(&path, &c).unwrap();
        assert_eq!(load(&path).unwrap(), c);
        c.set("defaultFlavor", "").unwrap();
        assert_eq!(c.default_flavor, None);
        for (k, v, says) in [
            ("color", "x", "unknown key \"color\""),
            ("forwardAgent", "maybe", "true or false"),
            ("defaultFlavor", "Big_One", "invalid flavor"),
            ("defaultNamespace", "a.b", "invalid namespace"),
        ] {
            let e = c.set(k, v).unwrap_err().to_string();
            assert!(e.contains(says), "{k}={v}: {e}");
        }
        std::fs::write(&path, "defaultFlavr: x\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn init_finds_a_key() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(initial(dir.path()).ssh_key, None);
        std::fs::write(dir.path().join("id_rsa"), "").unwrap();
        std::fs::write(dir.path().join("id_rsa.pub"), "").unwrap();
        assert_eq!(initial(dir.path()).ssh_key, Some(dir.path().join("id_rsa")));
    }
}
