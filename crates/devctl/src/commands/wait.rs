//! `create --wait`: polls the DevServer and its pod and shows what the
//! server waits for (the operator, scheduling, the image, readiness), as one
//! live line on a terminal or one line per change otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use devserver_operator::build::devserver::Names;
use devserver_operator::crd::{DevServer, DevServerPhase};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;

/// Where a starting server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Still waiting, for what.
    Waiting(String),
    /// Running.
    Ready,
    /// It will not become ready without a change; why.
    Failed(String),
}

/// The name of the (first) pod of DevServer `name`.
pub fn pod_name(name: &str) -> String {
    format!("{}-0", Names::of(name).stateful_set)
}

/// What the server waits for, from its status and its first pod.
pub fn stage(ds: &DevServer, pod: Option<&Pod>) -> Stage {
    let status = ds.status.as_ref();
    let phase = status.and_then(|s| s.phase);
    let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    match phase {
        None => return Stage::Waiting("waiting for the operator to accept it".into()),
        Some(DevServerPhase::Running) => return Stage::Ready,
        Some(DevServerPhase::Failed) => return Stage::Failed(format!("failed: {message}")),
        Some(p @ (DevServerPhase::Stopped | DevServerPhase::Expired)) => {
            return Stage::Failed(format!("{p}: {message}"));
        }
        _ => {}
    }
    let flavor = status
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "FlavorResolved" && c.status == "False");
    if let Some(c) = flavor {
        return Stage::Waiting(format!("waiting for a flavor: {}", c.message));
    }
    let Some(pod) = pod else {
        return Stage::Waiting("waiting for the pod to be created".into());
    };
    let pstatus = pod.status.as_ref();
    let conds = pstatus
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let cond = |t: &str| conds.iter().find(|c| c.type_ == t);
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
        || cond("PodScheduled").is_some_and(|c| c.status == "True");
    if !scheduled {
        let why = cond("PodScheduled")
            .and_then(|c| c.message.clone())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Stage::Waiting(format!("waiting for scheduling{why}"));
    }
    let containers = pstatus.into_iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
    });
    let mut any_running = false;
    for c in containers {
        let state = c.state.as_ref();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            let detail = w
                .message
                .clone()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Stage::Waiting(match reason.as_str() {
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                    format!("the image {} cannot be pulled ({reason}{detail})", c.image)
                }
                "CrashLoopBackOff" => format!("container {} keeps crashing{detail}", c.name),
                _ => format!("pulling the image and starting ({reason})"),
            });
        }
        any_running |= state.and_then(|s| s.running.as_ref()).is_some();
    }
    if !any_running && cond("Ready").is_none_or(|c| c.status != "True") {
        return Stage::Waiting("pulling the image and starting".into());
    }
    if cond("Ready").is_none_or(|c| c.status != "True") {
        return Stage::Waiting("waiting for readiness (the SSH server to listen)".into());
    }
    Stage::Waiting(if message.is_empty() {
        "waiting for the operator to see the pod ready".into()
    } else {
        message
    })
}

/// Waits until DevServer `name` is Running, showing progress on stderr.
pub async fn wait_running(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let servers: Api<DevServer> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = String::new();
    let pod_name = pod_name(name);
    loop {
        let ds = crate::commands::servers::get_server(&servers, name, ns).await?;
        // Pods may be unreadable with a restricted role; progress then comes
        // from the DevServer status alone.
        let pod = pods.get_opt(&pod_name).await.ok().flatten();
        let stage = stage(&ds, pod.as_ref());
        let text = match &stage {
            Stage::Ready => "running".to_string(),
            Stage::Waiting(t) | Stage::Failed(t) => t.clone(),
        };
        let mut err = std::io::stderr().lock();
        if tty {
            write!(
                err,
                "\r\x1b[2K[{:>3}s] {name}: {text}",
                start.elapsed().as_secs()
            )?;
            err.flush()?;
        } else if text != last {
            writeln!(err, "{name}: {text}")?;
        }
        last = text;
        match stage {
            Stage::Ready => {
                if tty {
                    writeln!(err)?;
                }
                return Ok(());
            }
            Stage::Failed(why) => {
                if tty {
                    writeln!(err)?;
                }
                bail!("DevServer {name} will not start: {why}; see `devctl describe {name}`");
            }
            Stage::Waiting(_) => {}
        }
        drop(err);
        if start.elapsed() >= timeout {
            if tty {
                eprintln!();
            }
            bail!(
                "DevServer {name} is not running after {}: still {last}; it was created and keeps starting: see `devctl describe {name}`, or wait longer with --timeout",
                operator_core::duration::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(status: serde_json::Value) -> DevServer {
        serde_json::from_value(json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServer",
            "metadata": {"name": "mydev"}, "spec": {}, "status": status
        }))
        .unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn stages_follow_the_status_and_the_pod() {
        let starting = ds(json!({"phase": "Starting", "message": "0/1 pods ready."}));
        assert_eq!(
            stage(&ds(json!({})), None),
            Stage::Waiting("waiting for the operator to accept it".into())
        );
        assert_eq!(stage(&ds(json!({"phase": "Running"})), None), Stage::Ready);
        assert!(
            matches!(stage(&ds(json!({"phase": "Failed", "message": "bad"})), None), Stage::Failed(m) if m.contains("bad"))
        );
        let nf = ds(
            json!({"phase": "Pending", "conditions": [{"type": "FlavorResolved", "status": "False", "reason": "FlavorNotFound", "message": "no flavor x", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
        );
        assert_eq!(
            stage(&nf, None),
            Stage::Waiting("waiting for a flavor: no flavor x".into())
        );
        assert_eq!(
            stage(&starting, None),
            Stage::Waiting("waiting for the pod to be created".into())
        );
        let unscheduled = pod(
            json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}]}}),
        );
        assert_eq!(
            stage(&starting, Some(&unscheduled)),
            Stage::Waiting("waiting for scheduling: 0/3 nodes are available".into())
        );
        let pulling = pod(
            json!({"spec": {"nodeName": "n", "containers": []}, "status": {"containerStatuses": [
            {"name": "devserver", "image": "python:3.12", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
        );
        assert_eq!(
            stage(&starting, Some(&pulling)),
            Stage::Waiting("pulling the image and starting (ContainerCreating)".into())
        );
        let bad_image = pod(
            json!({"spec": {"nodeName": "n", "containers": []}, "status": {"containerStatuses": [
            {"name": "devserver", "image": "nope:1", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}}),
        );
        assert!(
            matches!(stage(&starting, Some(&bad_image)), Stage::Waiting(m) if m.contains("nope:1 cannot be pulled"))
        );
        let unready = pod(
            json!({"spec": {"nodeName": "n", "containers": []}, "status": {"containerStatuses": [
            {"name": "devserver", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"running": {}}}]}}),
        );
        assert_eq!(
            stage(&starting, Some(&unready)),
            Stage::Waiting("waiting for readiness (the SSH server to listen)".into())
        );
    }

    #[test]
    fn the_pod_is_the_first_of_the_stateful_set() {
        assert_eq!(pod_name("mydev"), "mydev-0");
    }
}
