//! create, list, delete, start, stop, extend and flavors.

use std::io::Write;

use anyhow::{Context, anyhow, bail};
use devserver_operator::build::devserver::Names;
use devserver_operator::crd::{DevServer, DevServerFlavor, DevServerSpec};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use operator_core::duration::{format_duration, parse_duration};
use serde_json::json;

use super::{Ctx, confirm};
use crate::args::{check_name, extended_ttl};
use crate::cli::{CreateArgs, DeleteArgs, ExtendArgs, FlavorsArgs, ListArgs};
use crate::kube_client::explain;
use crate::output::{self, Format, human_duration};

/// The CRD serving DevServers (named in "not installed" errors).
pub const DEVSERVERS_CRD: &str = "devservers.devserver.io";
/// The CRD serving flavors.
pub const FLAVORS_CRD: &str = "devserverflavors.devserver.io";

/// The DevServer `name`, or an error saying how to find the right one.
pub async fn get_server(api: &Api<DevServer>, name: &str, ns: &str) -> anyhow::Result<DevServer> {
    api.get_opt(name)
        .await
        .map_err(|e| explain(e, &format!("reading DevServer {name}"), DEVSERVERS_CRD))?
        .ok_or_else(|| {
            anyhow!("DevServer {name} not found in namespace {ns}; see `devctl list -n {ns}`")
        })
}

/// Reads an OpenSSH public key file, checking it looks like one.
fn read_public_key(path: &std::path::Path, from: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "reading the SSH public key {} ({from}): {e}; create a key with `ssh-keygen -t ed25519` or pass --ssh-public-key-file",
            path.display()
        )
    })?;
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty()
        || !keys
            .iter()
            .all(|k| k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-"))
    {
        bail!(
            "{} ({from}) is not an OpenSSH public key (expected a line like `ssh-ed25519 AAAA... comment`; did you pass the private key?)",
            path.display()
        );
    }
    Ok(keys.join("\n") + "\n")
}

/// Checks the flavor exists, or that the cluster has exactly one default.
async fn check_flavor(client: &Client, flavor: Option<&str>) -> anyhow::Result<()> {
    let api: Api<DevServerFlavor> = Api::all(client.clone());
    match flavor {
        Some(f) => {
            check_name("flavor", f)?;
            if api
                .get_opt(f)
                .await
                .map_err(|e| explain(e, &format!("reading flavor {f}"), FLAVORS_CRD))?
                .is_none()
            {
                bail!("flavor {f:?} does not exist; `devctl flavors` lists the ones there are");
            }
        }
        None => {
            let defaults: Vec<String> = api
                .list(&ListParams::default())
                .await
                .map_err(|e| explain(e, "listing flavors", FLAVORS_CRD))?
                .items
                .into_iter()
                .filter(|f| f.spec.default)
                .filter_map(|f| f.metadata.name)
                .collect();
            match defaults.len() {
                1 => {}
                0 => bail!(
                    "no --flavor given and the cluster has no default flavor: pass --flavor NAME (see `devctl flavors`), or set one with `devctl config set defaultFlavor NAME`"
                ),
                _ => bail!(
                    "no --flavor given and several flavors are marked default ({}): pass --flavor NAME",
                    defaults.join(", ")
                ),
            }
        }
    }
    Ok(())
}

/// The spec `create` submits.
pub fn create_spec(
    a: &CreateArgs,
    flavor: Option<String>,
    public_key: Option<String>,
) -> anyhow::Result<DevServerSpec> {
    let mut spec = json!({});
    let s = spec.as_object_mut().expect("an object");
    if let Some(f) = flavor {
        s.insert("flavor".into(), f.into());
    }
    if let Some(i) = &a.image {
        s.insert("image".into(), i.clone().into());
    }
    if let Some(o) = &a.owner {
        s.insert("owner".into(), o.clone().into());
    }
    if let Some(k) = public_key {
        s.insert("ssh".into(), json!({ "publicKey": k }));
    }
    if !a.volumes.is_empty() {
        s.insert("volumes".into(), serde_json::to_value(&a.volumes)?);
    }
    if let Some(h) = &a.home_size {
        s.insert("persistentHomeSize".into(), h.clone().into());
    }
    if let Some(shared) = &a.shared {
        check_name("shared claim", shared)?;
        s.insert("sharedVolumeClaimName".into(), shared.clone().into());
    }
    let mut lifecycle = serde_json::Map::new();
    if let Some(t) = a.ttl {
        lifecycle.insert("timeToLive".into(), format_duration(t).into());
    }
    if let Some(t) = a.idle_timeout {
        lifecycle.insert("idleTimeout".into(), format_duration(t).into());
    }
    if !lifecycle.is_empty() {
        s.insert("lifecycle".into(), lifecycle.into());
    }
    serde_json::from_value(spec).context("building the DevServer")
}

pub async fn create(ctx: &Ctx, a: CreateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let name = a.name.get()?;
    let config = ctx.config()?;
    let flavor = a.flavor.clone().or(config.default_flavor.clone());
    let public_key = match (&a.ssh_public_key_file, config.ssh_public_key()) {
        (Some(p), _) => Some(read_public_key(p, "--ssh-public-key-file")?),
        (None, Some(p)) => Some(read_public_key(&p, "sshKey in the devctl config")?),
        (None, None) => None,
    };
    let spec = create_spec(&a, flavor.clone(), public_key)?;
    let (client, ns) = ctx.client_ns().await?;
    check_flavor(&client, flavor.as_deref()).await?;
    let api: Api<DevServer> = Api::namespaced(client.clone(), &ns);
    match api
        .create(&PostParams::default(), &DevServer::new(&name, spec))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => bail!(
            "DevServer {name} already exists in namespace {ns}; pick another name, or `devctl delete {name}` first"
        ),
        Err(e) => {
            return Err(explain(
                e,
                &format!("creating DevServer {name} in namespace {ns}"),
                DEVSERVERS_CRD,
            ));
        }
    }
    writeln!(out, "devserver/{name} created in namespace {ns}")?;
    if a.wait {
        out.flush()?;
        super::wait::wait_running(&client, &ns, &name, a.timeout).await?;
        writeln!(
            out,
            "devserver/{name} is running: connect with `devctl ssh {name}`"
        )?;
    }
    Ok(())
}

pub async fn list(ctx: &Ctx, args: ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if args.all_namespaces && ctx.global.namespace.is_some() {
        bail!("-A/--all-namespaces and -n/--namespace cannot be used together");
    }
    let (client, namespace) = ctx.client_ns().await?;
    let (api, what): (Api<DevServer>, String) = if args.all_namespaces {
        (Api::all(client), "DevServers in all namespaces".into())
    } else {
        (
            Api::namespaced(client, &namespace),
            format!("DevServers in namespace {namespace}"),
        )
    };
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| explain(e, &format!("listing {what}"), DEVSERVERS_CRD))?
        .items;
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    if items.is_empty() && matches!(args.output, Format::Table | Format::Wide) {
        eprintln!("No {what}.");
        return Ok(());
    }
    let now = Timestamp::now();
    let text = output::render(&items, args.output, |items, wide| {
        output::devserver_table(items, now, args.all_namespaces, wide)
    })?;
    out.write_all(text.as_bytes())
        .context("writing the output")?;
    Ok(())
}

pub async fn delete(ctx: &Ctx, a: DeleteArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let name = a.name.get()?;
    let (client, ns) = ctx.client_ns().await?;
    let api: Api<DevServer> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, &ns);
    let home = Names::of(&name).home;
    let server = api
        .get_opt(&name)
        .await
        .map_err(|e| explain(e, &format!("reading DevServer {name}"), DEVSERVERS_CRD))?;
    let home_exists = pvcs
        .get_opt(&home)
        .await
        .map_err(|e| explain(e, &format!("reading the persistent home {home}"), ""))?
        .is_some();
    if server.is_none() && !(a.purge && home_exists) {
        bail!("DevServer {name} not found in namespace {ns}; see `devctl list -n {ns}`");
    }
    if a.purge
        && home_exists
        && !a.yes
        && !confirm(
            &format!(
                "Delete DevServer {name} and its persistent home {home}? All data in the home is lost"
            ),
            "--yes",
        )?
    {
        bail!("nothing deleted");
    }
    if server.is_some() {
        api.delete(&name, &DeleteParams::default())
            .await
            .map_err(|e| explain(e, &format!("deleting DevServer {name}"), DEVSERVERS_CRD))?;
        writeln!(out, "devserver/{name} deleted")?;
        if let Err(e) = crate::ssh::forget(&name, &ns) {
            eprintln!("Note: could not remove {name}'s SSH entry from devctl's files: {e:#}");
        }
    }
    match (a.purge, home_exists) {
        (true, true) => {
            pvcs.delete(&home, &DeleteParams::default())
                .await
                .map_err(|e| explain(e, &format!("deleting the persistent home {home}"), ""))?;
            writeln!(out, "persistentvolumeclaim/{home} deleted")?;
        }
        (true, false) => eprintln!("{name} had no persistent home ({home}) to delete."),
        (false, true) => eprintln!(
            "The persistent home {home} is kept (a new DevServer named {name} mounts it again); `devctl delete {name} --purge` deletes it."
        ),
        (false, false) => {}
    }
    Ok(())
}

pub async fn set_running(
    ctx: &Ctx,
    name: &str,
    running: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (client, ns) = ctx.client_ns().await?;
    let api: Api<DevServer> = Api::namespaced(client, &ns);
    let server = get_server(&api, name, &ns).await?;
    let verb = if running { "started" } else { "stopped" };
    if server.spec.running == running {
        writeln!(out, "devserver/{name} is already {verb}")?;
        return Ok(());
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "running": running } })),
    )
    .await
    .map_err(|e| explain(e, &format!("updating DevServer {name}"), DEVSERVERS_CRD))?;
    writeln!(out, "devserver/{name} {verb}")?;
    if !running {
        eprintln!(
            "Its persistent home and volumes are kept; `devctl start {name}` starts it again."
        );
    }
    Ok(())
}

/// The operator computes `expiresAt = creationTimestamp + timeToLive`, so
/// moving the expiry by `--by` means adding `--by` to `timeToLive`.
pub async fn extend(ctx: &Ctx, a: ExtendArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let name = a.name.get()?;
    let (client, ns) = ctx.client_ns().await?;
    let api: Api<DevServer> = Api::namespaced(client, &ns);
    let server = get_server(&api, &name, &ns).await?;
    let Some(ttl) = server
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.time_to_live.as_deref())
    else {
        bail!(
            "DevServer {name} has no time to live, so it never expires: there is nothing to extend"
        );
    };
    let current = parse_duration(ttl)
        .map_err(|e| anyhow!("DevServer {name} has an invalid timeToLive: {e}"))?;
    let new_ttl = extended_ttl(current, a.by)?;
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "lifecycle": { "timeToLive": new_ttl } } })),
    )
    .await
    .map_err(|e| explain(e, &format!("extending DevServer {name}"), DEVSERVERS_CRD))?;
    let created = server.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match created {
        Some(c) => {
            let expires = c + SignedDuration::from_secs((current + a.by).as_secs() as i64);
            let left = expires.duration_since(Timestamp::now()).as_secs();
            let when = expires.strftime("%Y-%m-%dT%H:%M:%SZ");
            if left > 0 {
                writeln!(
                    out,
                    "devserver/{name} extended by {}: expires at {when} (in {}); timeToLive is now {new_ttl}",
                    format_duration(a.by),
                    human_duration(left)
                )?;
            } else {
                writeln!(
                    out,
                    "devserver/{name} extended by {}, but it still expired at {when}; extend it by more",
                    format_duration(a.by)
                )?;
            }
        }
        None => writeln!(out, "devserver/{name} timeToLive is now {new_ttl}")?,
    }
    Ok(())
}

pub async fn flavors(ctx: &Ctx, args: FlavorsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let api: Api<DevServerFlavor> = Api::all(ctx.client().await?);
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| explain(e, "listing DevServerFlavors", FLAVORS_CRD))?
        .items;
    // The default flavor first, then by name.
    items.sort_by(|a, b| {
        (!a.spec.default, &a.metadata.name).cmp(&(!b.spec.default, &b.metadata.name))
    });
    if items.is_empty() && matches!(args.output, Format::Table | Format::Wide) {
        eprintln!(
            "No DevServerFlavors: ask an administrator to create some (see deploy/devserver-operator/samples)."
        );
        return Ok(());
    }
    let text = output::render(&items, args.output, |items, _| output::flavor_table(items))?;
    out.write_all(text.as_bytes())
        .context("writing the output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn create_args(args: &[&str]) -> CreateArgs {
        let cli = crate::cli::Cli::try_parse_from(
            ["devctl", "create", "mydev"].iter().chain(args.iter()),
        )
        .unwrap();
        match cli.command {
            crate::cli::Command::Create(c) => c,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_spec_carries_every_option() {
        let a = create_args(&[
            "--image",
            "python:3.12",
            "-v",
            "data:/data:ro",
            "--ttl",
            "90m",
            "--idle-timeout",
            "2h",
            "--home-size",
            "10Gi",
            "--shared",
            "team",
            "--owner",
            "alice",
        ]);
        let spec = create_spec(
            &a,
            Some("cpu-small".into()),
            Some("ssh-ed25519 AAAA k\n".into()),
        )
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["flavor"], "cpu-small");
        assert_eq!(v["image"], "python:3.12");
        assert_eq!(v["owner"], "alice");
        assert_eq!(v["ssh"]["publicKey"], "ssh-ed25519 AAAA k\n");
        assert_eq!(
            v["volumes"][0],
            json!({"claimName": "data", "mountPath": "/data", "readOnly": true})
        );
        assert_eq!(
            v["lifecycle"],
            json!({"timeToLive": "1h30m", "idleTimeout": "2h"})
        );
        assert_eq!(v["persistentHomeSize"], "10Gi");
        assert_eq!(v["sharedVolumeClaimName"], "team");
        assert_eq!(v["running"], true);

        let v = serde_json::to_value(create_spec(&create_args(&[]), None, None).unwrap()).unwrap();
        assert!(
            v.get("flavor").is_none() && v.get("lifecycle").is_none(),
            "{v}"
        );
        let bad = create_args(&["--shared", "Not_A_Claim"]);
        assert!(
            create_spec(&bad, None, None)
                .unwrap_err()
                .to_string()
                .contains("invalid shared claim")
        );
    }

    #[test]
    fn public_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("id.pub");
        std::fs::write(&good, "ssh-ed25519 AAAAC3 me@laptop\n\n").unwrap();
        assert_eq!(
            read_public_key(&good, "x").unwrap(),
            "ssh-ed25519 AAAAC3 me@laptop\n"
        );
        let private = dir.path().join("id");
        std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        let e = read_public_key(&private, "x").unwrap_err().to_string();
        assert!(e.contains("did you pass the private key"), "{e}");
        let e = read_public_key(&dir.path().join("missing"), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ssh-keygen"), "{e}");
    }
}
