//! SSH access: `devctl ssh` and `devctl ssh-config` write the server's
//! `Host` entry and pin its host key (from the host-key Secret, read
//! through the Kubernetes API) into devctl's own files, then `ssh` runs
//! with strict host-key checking over `devctl ssh-proxy`, a tunnel through
//! the API server's port-forward.
//!
//! - [`files`]: the entry, known_hosts and Include texts (pure).
//! - [`proxy`]: the stdin/stdout tunnel.

pub mod files;
pub mod proxy;

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use devserver_operator::build::devserver::Names;
use devserver_operator::build::hostkey::PUBLIC_KEY;
use devserver_operator::crd::{DevServer, DevServerPhase};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::cli::{SshArgs, SshConfigArgs};
use crate::commands::Ctx;
use crate::commands::servers::get_server;
use crate::kube_client::explain;

/// What `prepare` wrote.
struct Prepared {
    alias: String,
    ssh_config: std::path::PathBuf,
}

/// The host key from the server's host-key Secret (readable by
/// administrators).
async fn host_key_from_secret(
    client: kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<String> {
    let secret_name = Names::of(name).host_keys;
    let secrets: Api<Secret> = Api::namespaced(client, ns);
    let secret = match secrets.get_opt(&secret_name).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 403 => bail!(
            "DevServer {name} does not publish its SSH host key yet and your role cannot read the Secret {secret_name} ({}); wait until it is Running, or ask an administrator",
            s.message
        ),
        Err(e) => {
            return Err(explain(
                e,
                &format!("reading the host key of {name} (Secret {secret_name})"),
                "",
            ));
        }
    }
    .ok_or_else(|| {
        anyhow!("DevServer {name} has no host key yet (Secret {secret_name}); is devserver-operator running? Try again in a moment")
    })?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(PUBLIC_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .ok_or_else(|| anyhow!("the Secret {secret_name} has no {PUBLIC_KEY}"))
}

/// Writes the server's entry and pins its host key; checks it can run.
async fn prepare(ctx: &Ctx, name: &str, forward_agent: bool) -> anyhow::Result<Prepared> {
    let config = ctx.config()?;
    let paths = ctx.paths()?;
    let (client, ns) = ctx.client_ns().await?;
    let servers: Api<DevServer> = Api::namespaced(client.clone(), &ns);
    let ds = get_server(&servers, name, &ns).await?;
    let phase = ds.status.as_ref().and_then(|s| s.phase);
    match phase {
        Some(DevServerPhase::Stopped | DevServerPhase::Stopping) => {
            bail!("DevServer {name} is stopped; start it with `devctl start {name}`")
        }
        Some(DevServerPhase::Expired) => {
            bail!("DevServer {name} expired; `devctl extend {name} --by 2h` gives it more time")
        }
        Some(DevServerPhase::Running) => {}
        other => eprintln!(
            "Note: DevServer {name} is {} ({}); connecting may fail until it is Running.",
            other.map(|p| p.to_string()).unwrap_or_else(|| "new".into()),
            ds.status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default()
        ),
    }

    // The host key: the API server is the trust root. The operator
    // publishes the public half in the status (which only it may write);
    // older operators only had it in the host-key Secret.
    let published = ds
        .status
        .as_ref()
        .and_then(|s| s.ssh.as_ref())
        .and_then(|s| s.host_public_key.clone())
        .filter(|k| !k.trim().is_empty());
    let public = match published {
        Some(key) => key,
        None => host_key_from_secret(client, &ns, name).await?,
    };

    let alias = files::alias(name, &ns);
    let ssh_dir = paths
        .known_hosts
        .parent()
        .expect("known_hosts has a directory");
    create_private_dir(ssh_dir)?;
    let known = read_or_empty(&paths.known_hosts)?;
    write_file(
        &paths.known_hosts,
        &files::pin_host_key(&known, &alias, &public)?,
    )?;

    let exe = std::env::current_exe().context("finding the devctl executable")?;
    let mut proxy = vec![exe.display().to_string()];
    let kubeconfig = ctx.global.kubeconfig.clone().or_else(|| {
        // A single KUBECONFIG file is pinned so the alias works from any
        // shell (VS Code does not inherit it); a list is left to the
        // environment.
        std::env::var_os("KUBECONFIG")
            .filter(|k| !k.is_empty() && !k.to_string_lossy().contains(':'))
            .map(Into::into)
    });
    if let Some(k) = kubeconfig {
        proxy.push("--kubeconfig".into());
        proxy.push(std::path::absolute(&k)?.display().to_string());
    }
    if let Some(c) = &ctx.global.context {
        proxy.push("--context".into());
        proxy.push(c.clone());
    }
    proxy.extend([
        "-n".into(),
        ns.clone(),
        "ssh-proxy".into(),
        name.to_string(),
    ]);
    let proxy_command = proxy
        .iter()
        .map(|a| files::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let identity = config.ssh_key.clone();
    if let Some(id) = &identity
        && !id.exists()
    {
        bail!(
            "the SSH key {} (sshKey in {}) does not exist; fix it with `devctl config set sshKey PATH`",
            id.display(),
            paths.config.display()
        );
    }
    let entry = files::entry(&files::Entry {
        alias: &alias,
        proxy_command,
        known_hosts: &paths.known_hosts,
        identity_file: identity.as_deref(),
        forward_agent: forward_agent || config.forward_agent.unwrap_or(false),
    });
    let current = read_or_empty(&paths.ssh_config)?;
    write_file(
        &paths.ssh_config,
        &files::upsert_entry(&current, &alias, &entry),
    )?;
    Ok(Prepared {
        alias,
        ssh_config: paths.ssh_config,
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn read_or_empty(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces `path` atomically (ssh may read it at the same time).
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Removes the entry and pinned key of a deleted server from devctl's files
/// (best effort: they only matter for servers that exist).
pub fn forget(name: &str, ns: &str) -> anyhow::Result<()> {
    let paths = crate::config::Paths::from_env()?;
    let alias = files::alias(name, ns);
    let config = read_or_empty(&paths.ssh_config)?;
    if !config.is_empty() {
        write_file(&paths.ssh_config, &files::remove_entry(&config, &alias))?;
    }
    let known = read_or_empty(&paths.known_hosts)?;
    if !known.is_empty() {
        write_file(&paths.known_hosts, &files::unpin_host_key(&known, &alias))?;
    }
    Ok(())
}

/// `devctl ssh NAME [-- COMMAND...]`: replaces devctl with `ssh` using
/// devctl's config file.
pub async fn ssh(ctx: &Ctx, a: SshArgs) -> anyhow::Result<()> {
    let name = a.name.get()?;
    let p = prepare(ctx, &name, a.forward_agent).await?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-F").arg(&p.ssh_config);
    if a.forward_agent {
        cmd.arg("-A");
    }
    cmd.arg("-l").arg(&a.login);
    // `--` before the host: ssh then takes every later word as the command.
    cmd.arg("--").arg(&p.alias).args(&a.command);
    use std::os::unix::process::CommandExt;
    let e = cmd.exec();
    Err(anyhow!(
        "running ssh: {e} (install the OpenSSH client, e.g. `apt-get install openssh-client`)"
    ))
}

/// `devctl ssh-config NAME [--install]`.
pub async fn ssh_config(ctx: &Ctx, a: SshConfigArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let name = a.name.get()?;
    let p = prepare(ctx, &name, false).await?;
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set, so ~/.ssh/config cannot be found"))?;
    let user_config = home.join(".ssh").join("config");
    let current = read_or_empty(&user_config)?;
    let installed = files::add_include(&current, &p.ssh_config);
    if let Some(updated) = installed {
        let yes = a.install
            || (std::io::stdin().is_terminal()
                && crate::commands::confirm(
                    &format!(
                        "Add `{}` to {} so plain ssh, scp and VS Code reach DevServers?",
                        files::include_line(&p.ssh_config),
                        user_config.display()
                    ),
                    "--install",
                )?);
        if yes {
            create_private_dir(&home.join(".ssh"))?;
            write_file(&user_config, &updated)?;
            eprintln!("Added the Include to {}.", user_config.display());
        } else {
            eprintln!(
                "{} was not changed: use `ssh -F {} {}`, or run `devctl ssh-config {name} --install` to include devctl's hosts.",
                user_config.display(),
                p.ssh_config.display(),
                p.alias
            );
        }
    }
    writeln!(out, "{}", p.alias)?;
    Ok(())
}
