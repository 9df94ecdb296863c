//! `devctl config init|show|set`.

use std::io::Write;

use anyhow::bail;

use super::Ctx;
use crate::cli::ConfigCommand;
use crate::config::{initial, load, save};

pub fn run(ctx: &Ctx, command: ConfigCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let paths = ctx.paths()?;
    match command {
        ConfigCommand::Init { force } => {
            if paths.config.exists() && !force {
                bail!(
                    "{} already exists; change it with `devctl config set`, or pass --force to start again",
                    paths.config.display()
                );
            }
            let ssh_dir = std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".ssh"))
                .unwrap_or_default();
            let config = initial(&ssh_dir);
            save(&paths.config, &config)?;
            writeln!(out, "Wrote {}", paths.config.display())?;
            if config.ssh_key.is_none() {
                eprintln!(
                    "No SSH key found in {}: create one with `ssh-keygen -t ed25519`, then `devctl config set sshKey ~/.ssh/id_ed25519`.",
                    ssh_dir.display()
                );
            }
        }
        ConfigCommand::Show => {
            let config = load(&paths.config)?;
            writeln!(out, "# {}", paths.config.display())?;
            write!(out, "{}", serde_yaml::to_string(&config)?)?;
        }
        ConfigCommand::Set { key, value } => {
            let mut config = load(&paths.config)?;
            let value = if key == "sshKey" {
                expand_home(&value)
            } else {
                value
            };
            config.set(&key, &value)?;
            save(&paths.config, &config)?;
            writeln!(out, "Set {key} in {}", paths.config.display())?;
        }
    }
    Ok(())
}

/// `~/x` with the home directory spelled out (paths are used by ssh later,
/// from other directories).
fn expand_home(value: &str) -> String {
    match (value.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => value.to_string(),
    }
}
