//! `devctl admin user create|delete|list|kubeconfig|token`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use devserver_operator::build::user::USER_SA;
use devserver_operator::crd::{DevServerUser, MAX_USERNAME_LEN, NAMESPACE_PREFIX};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::UserCommand;
use crate::kube_client::{explain, is_not_found};
use crate::output::{self, Format, table};

const USERS_CRD: &str = "devserverusers.devserver.io";

fn check_username(u: &str) -> anyhow::Result<()> {
    if !operator_core::names::is_dns_label(u) || u.len() > MAX_USERNAME_LEN {
        bail!(
            "invalid username {u:?}: use lower-case letters, digits and '-' (at most {MAX_USERNAME_LEN}), starting and ending with a letter or digit"
        );
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, command: UserCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            username,
            ssh_public_key_file,
        } => {
            check_username(&username)?;
            let mut keys = Vec::new();
            for f in &ssh_public_key_file {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| anyhow!("reading {}: {e}", f.display()))?;
                keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_string),
                );
            }
            let mut spec = json!({ "username": username });
            if !keys.is_empty() {
                spec["sshPublicKeys"] = json!(keys);
            }
            let user = DevServerUser::new(&username, serde_json::from_value(spec)?);
            let api: Api<DevServerUser> = Api::all(ctx.client().await?);
            match api.create(&PostParams::default(), &user).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    bail!(
                        "user {username} already exists; `devctl admin user list` shows the users"
                    )
                }
                Err(e) => return Err(explain(e, &format!("creating user {username}"), USERS_CRD)),
            }
            writeln!(
                out,
                "devserveruser/{username} created (namespace {NAMESPACE_PREFIX}{username}); give them `devctl admin user kubeconfig {username}`"
            )?;
        }
        UserCommand::Delete { username } => {
            check_username(&username)?;
            let api: Api<DevServerUser> = Api::all(ctx.client().await?);
            match api.delete(&username, &DeleteParams::default()).await {
                Ok(_) => writeln!(out, "devserveruser/{username} deleted")?,
                Err(e) if is_not_found(&e) => {
                    bail!("user {username} not found; `devctl admin user list` shows the users")
                }
                Err(e) => return Err(explain(e, &format!("deleting user {username}"), USERS_CRD)),
            }
        }
        UserCommand::List { output } => {
            let api: Api<DevServerUser> = Api::all(ctx.client().await?);
            let mut items = api
                .list(&ListParams::default())
                .await
                .map_err(|e| explain(e, "listing users", USERS_CRD))?
                .items;
            items.sort_by(|a, b| a.spec.username.cmp(&b.spec.username));
            if items.is_empty() && matches!(output, Format::Table | Format::Wide) {
                eprintln!("No users; create one with `devctl admin user create USERNAME`.");
                return Ok(());
            }
            let now = Timestamp::now();
            let text = output::render(&items, output, |items, _| user_table(items, now))?;
            out.write_all(text.as_bytes())?;
        }
        UserCommand::Kubeconfig {
            username,
            duration,
            exec,
            output_file,
        } => {
            check_username(&username)?;
            let config = crate::kube_client::config(&ctx.target()).await?;
            let client = Client::try_from(config.clone())?;
            let ns = user_namespace(&client, &username).await?;
            let credential = if exec {
                exec_credential(ctx, &username)?
            } else {
                let (token, _) = token(&client, &ns, duration).await?;
                json!({ "token": token })
            };
            let server = config.cluster_url.to_string();
            let ca = config.root_cert.as_deref().unwrap_or_default();
            if ca.is_empty() {
                bail!(
                    "your kubeconfig has no certificate authority for the cluster, so none can be inlined; use a kubeconfig with certificate-authority(-data)"
                );
            }
            let text = kubeconfig(&username, &ns, server.trim_end_matches('/'), ca, credential);
            match output_file {
                Some(path) => {
                    write_private(&path, &text)?;
                    writeln!(out, "Wrote {} (namespace {ns})", path.display())?;
                }
                None => out.write_all(text.as_bytes())?,
            }
        }
        UserCommand::Token { username, duration } => {
            check_username(&username)?;
            let client = ctx.client().await?;
            let ns = user_namespace(&client, &username).await?;
            let (token, expires) = token(&client, &ns, duration).await?;
            let cred = json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": { "token": token, "expirationTimestamp": expires },
            });
            writeln!(out, "{}", serde_json::to_string(&cred)?)?;
        }
    }
    Ok(())
}

fn user_table(items: &[DevServerUser], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|u| {
            let st = u.status.as_ref();
            vec![
                u.spec.username.clone(),
                st.and_then(|s| s.namespace.clone())
                    .unwrap_or_else(|| "-".into()),
                st.and_then(|s| s.phase.as_ref())
                    .and_then(|p| serde_json::to_value(p).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "-".into()),
                output::age(u.metadata.creation_timestamp.as_ref().map(|t| &t.0), now),
            ]
        })
        .collect();
    table(&["USERNAME", "NAMESPACE", "PHASE", "AGE"], &rows)
}

/// The user's namespace, once the operator has created it and the
/// ServiceAccount (waits up to 30 s for a user just created).
async fn user_namespace(client: &Client, username: &str) -> anyhow::Result<String> {
    let users: Api<DevServerUser> = Api::all(client.clone());
    let start = std::time::Instant::now();
    loop {
        let user = users
            .get_opt(username)
            .await
            .map_err(|e| explain(e, &format!("reading user {username}"), USERS_CRD))?
            .ok_or_else(|| {
                anyhow!("user {username} not found; create it with `devctl admin user create {username}`")
            })?;
        let ns = user
            .status
            .and_then(|s| s.namespace)
            .unwrap_or_else(|| format!("{NAMESPACE_PREFIX}{username}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        if sas
            .get_opt(USER_SA)
            .await
            .map_err(|e| explain(e, &format!("reading the ServiceAccount of {username}"), ""))?
            .is_some()
        {
            return Ok(ns);
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "user {username} has no ServiceAccount {USER_SA} in namespace {ns} yet; is devserver-operator running? (`kubectl get devserveruser {username}`)"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A token for the user's ServiceAccount (TokenRequest API) and when it
/// expires (RFC 3339).
async fn token(client: &Client, ns: &str, duration: Duration) -> anyhow::Result<(String, String)> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(duration.as_secs() as i64),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let tr = sas
        .create_token_request(USER_SA, &PostParams::default(), &request)
        .await
        .map_err(|e| explain(e, &format!("requesting a token for {ns}/{USER_SA}"), ""))?;
    let status = tr
        .status
        .ok_or_else(|| anyhow!("the API server returned no token"))?;
    let token = status
        .token
        .ok_or_else(|| anyhow!("the API server returned no token"))?;
    let expires = status
        .expiration_timestamp
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    Ok((token, expires))
}

/// An exec credential plugin entry that runs `devctl admin user token`
/// with the same cluster options as now.
fn exec_credential(ctx: &Ctx, username: &str) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("finding the devctl executable")?;
    let mut args = vec![
        "admin".to_string(),
        "user".into(),
        "token".into(),
        username.into(),
    ];
    let kubeconfig = ctx
        .global
        .kubeconfig
        .clone()
        .or_else(|| std::env::var_os("KUBECONFIG").map(Into::into));
    if let Some(k) = kubeconfig {
        args.push("--kubeconfig".into());
        args.push(std::path::absolute(&k)?.display().to_string());
    }
    if let Some(c) = &ctx.global.context {
        args.push("--context".into());
        args.push(c.clone());
    }
    Ok(json!({ "exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": exe.display().to_string(),
        "args": args,
        "interactiveMode": "Never",
    }}))
}

/// DER certificates as one PEM bundle.
pub fn pem(certs: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// The user's kubeconfig: one cluster (CA inlined), one user, one context
/// in the user's namespace.
pub fn kubeconfig(username: &str, ns: &str, server: &str, ca: &[Vec<u8>], user: Value) -> String {
    let name = format!("devserver-{username}");
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "devserver", "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(pem(ca)),
        }}],
        "users": [{ "name": name, "user": user }],
        "contexts": [{ "name": name, "context": { "cluster": "devserver", "user": name, "namespace": ns } }],
        "current-context": name,
    });
    serde_yaml::to_string(&doc).expect("a JSON value serializes")
}

/// Writes a file only its owner can read (it holds a credential).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_is_self_contained() {
        let text = kubeconfig(
            "alice",
            "dev-alice",
            "https://10.0.0.1:6443",
            &[vec![1, 2, 3]],
            json!({ "token": "t0k" }),
        );
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("devserver-alice"));
        let ctx = kc.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.namespace.as_deref(), Some("dev-alice"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        let ca = STANDARD
            .decode(cluster.certificate_authority_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(ca).unwrap(),
            "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"
        );
        let v: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["users"][0]["user"]["token"], "t0k");
        assert!(check_username("alice").is_ok());
        assert!(check_username("Alice").is_err());
        assert!(check_username(&"a".repeat(60)).is_err());
    }
}
