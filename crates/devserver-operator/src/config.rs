//! Operator configuration: the default image, the SSH server image and the
//! injected SSH server's layout, from a YAML file named by
//! `DEVSERVER_OPERATOR_CONFIG` and then the `DEVSERVER_DEFAULT_IMAGE` and
//! `DEVSERVER_SSH_IMAGE` variables (which win). The namespace scope is the
//! shared `--watch-namespace` flag of `devserver-operator run`.
//!
//! ```yaml
//! defaultImage: ubuntu:24.04
//! sshImage: ghcr.io/orchestra-operators/devserver-sshd:0.1.0
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::build::devserver::Images;
use crate::build::sshd::SshLayout;

/// Variable naming the configuration file.
pub const CONFIG_ENV: &str = "DEVSERVER_OPERATOR_CONFIG";

/// What the operator is configured with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub images: Images,
    /// Where the SSH server's files are in pods, and its port. Only tests
    /// change it (to run the same server in a directory of their own).
    pub ssh: SshLayout,
}

/// The file's format.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    default_image: Option<String>,
    ssh_image: Option<String>,
    /// Prefix of the SSH server's paths (default `/`).
    ssh_root: Option<PathBuf>,
    /// Port sshd listens on in the pod (default 2222).
    ssh_port: Option<u16>,
}

impl Config {
    /// Parses a configuration file's text.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let file: File = serde_yaml::from_str(text)
            .map_err(|e| anyhow::anyhow!("invalid devserver-operator configuration: {e}"))?;
        let mut c = Config::default();
        if let Some(i) = file.default_image.filter(|s| !s.is_empty()) {
            c.images.default_image = i;
        }
        if let Some(i) = file.ssh_image.filter(|s| !s.is_empty()) {
            c.images.ssh_image = i;
        }
        if let Some(root) = file.ssh_root {
            anyhow::ensure!(root.is_absolute(), "sshRoot must be an absolute path");
            c.ssh.root = root;
        }
        if let Some(port) = file.ssh_port {
            anyhow::ensure!(
                port >= 1024,
                "sshPort must be at least 1024 (sshd runs unprivileged)"
            );
            c.ssh.port = port;
        }
        Ok(c)
    }

    /// The file named by [`CONFIG_ENV`] (if any), then the image variables.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut c = match std::env::var_os(CONFIG_ENV) {
            Some(path) if !path.is_empty() => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    anyhow::anyhow!("reading {CONFIG_ENV}={}: {e}", path.to_string_lossy())
                })?;
                Self::from_yaml(&text)?
            }
            _ => Config::default(),
        };
        if let Ok(v) = std::env::var("DEVSERVER_DEFAULT_IMAGE")
            && !v.is_empty()
        {
            c.images.default_image = v;
        }
        if let Ok(v) = std::env::var("DEVSERVER_SSH_IMAGE")
            && !v.is_empty()
        {
            c.images.ssh_image = v;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_sets_images_and_layout() {
        let c =
            Config::from_yaml("defaultImage: python:3.12\nsshImage: reg/sshd:v2\nsshPort: 4022\n")
                .unwrap();
        assert_eq!(c.images.default_image, "python:3.12");
        assert_eq!(c.images.ssh_image, "reg/sshd:v2");
        assert_eq!(c.ssh.port, 4022);
        assert_eq!(c.ssh.root, PathBuf::from("/"));
        assert_eq!(Config::from_yaml("{}").unwrap(), Config::default());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = Config::from_yaml("sshImag: x\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `sshImag`"), "{e}");
        let e = Config::from_yaml("sshPort: 22\n").unwrap_err().to_string();
        assert!(e.contains("at least 1024"), "{e}");
    }
}
