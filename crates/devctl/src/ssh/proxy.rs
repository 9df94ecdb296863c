//! `devctl ssh-proxy NAME`: the ProxyCommand. Pipes stdin/stdout to the
//! server pod's SSH port through the API server's port-forward (so no
//! Service, NodePort or network route is needed). Each ssh session runs its
//! own proxy process, so any number of sessions work at once.

use anyhow::{anyhow, bail};
use devserver_operator::build::sshd::SSH_PORT;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::io::AsyncWriteExt;

use crate::commands::Ctx;
use crate::commands::wait::pod_name;
use crate::kube_client::explain;

/// The pod's SSH port: its container port named `ssh`, else the operator's
/// default.
pub fn ssh_port(pod: &Pod) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("ssh"))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(SSH_PORT)
}

pub async fn run(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let (client, ns) = ctx.client_ns().await?;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod = pod_name(name);
    let found = pods
        .get_opt(&pod)
        .await
        .map_err(|e| explain(e, &format!("reading pod {pod}"), ""))?;
    match found
        .as_ref()
        .and_then(|p| p.status.as_ref()?.phase.clone())
    {
        None => bail!(
            "DevServer {name} has no pod {pod} in namespace {ns}: is it stopped? (`devctl describe {name}`)"
        ),
        Some(p) if p != "Running" => bail!(
            "the pod {pod} of DevServer {name} is {p}, not Running yet (`devctl describe {name}`)"
        ),
        Some(_) => {}
    }
    let port = found.as_ref().map_or(SSH_PORT, ssh_port);
    let mut forwarder = pods
        .portforward(&pod, &[port])
        .await
        .map_err(|e| explain(e, &format!("opening a port-forward to {pod}:{port}"), ""))?;
    let stream = forwarder
        .take_stream(port)
        .ok_or_else(|| anyhow!("the port-forward to {pod} has no stream for port {port}"))?;
    let (mut from_pod, mut to_pod) = tokio::io::split(stream);
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let up = async {
        let r = tokio::io::copy(&mut stdin, &mut to_pod).await;
        let _ = to_pod.shutdown().await;
        r
    };
    let down = async {
        let r = tokio::io::copy(&mut from_pod, &mut stdout).await;
        let _ = stdout.flush().await;
        r
    };
    // The session ends when the server closes its side; stdin closing only
    // half-closes ours.
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut down => { r.map_err(|e| anyhow!("reading from the tunnel: {e}"))?; }
        r = &mut up => {
            r.map_err(|e| anyhow!("writing to the tunnel: {e}"))?;
            down.await.map_err(|e| anyhow!("reading from the tunnel: {e}"))?;
        }
    }
    forwarder.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_comes_from_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "devserver", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "ssh", "containerPort": 2022}]}]}
        }))
        .unwrap();
        assert_eq!(ssh_port(&pod), 2022);
        assert_eq!(ssh_port(&Pod::default()), SSH_PORT);
    }
}
