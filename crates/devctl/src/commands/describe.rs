//! `devctl describe NAME`: the server's settings, state, conditions, pods and
//! recent events in one page.

use std::io::Write;

use devserver_operator::build::APP_DEVSERVER;
use devserver_operator::build::devserver::Names;
use devserver_operator::crd::{DevServer, HOME_PATH, SHARED_PATH};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use super::Ctx;
use super::servers::get_server;
use crate::output::{age, expires, table};

pub async fn describe(ctx: &Ctx, name: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let (client, ns) = ctx.client_ns().await?;
    let servers: Api<DevServer> = Api::namespaced(client.clone(), &ns);
    let ds = get_server(&servers, name, &ns).await?;
    // Pods and events are extras: a role without them still describes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector =
        format!("app.kubernetes.io/name={APP_DEVSERVER},app.kubernetes.io/instance={name}");
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client, &ns);
    let events = events
        .list(&ListParams::default().fields(&format!(
            "involvedObject.name={name},involvedObject.kind=DevServer"
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    out.write_all(render(&ds, &pods, &events, Timestamp::now()).as_bytes())?;
    Ok(())
}

fn or_none(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

/// The page for `ds`.
pub fn render(ds: &DevServer, pods: &[Pod], events: &[Event], now: Timestamp) -> String {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let spec = &ds.spec;
    let status = ds.status.clone().unwrap_or_default();
    let lifecycle = spec.lifecycle.clone();
    let names = Names::of(&name);
    let home = match &spec.persistent_home_size {
        Some(q) => format!("{} persistent (claim {}) at {HOME_PATH}", q.0, names.home),
        None => format!("ephemeral (lost when the server stops) at {HOME_PATH}"),
    };
    let expiry = status.expires_at.as_ref().map(|t| {
        format!(
            "{} ({})",
            t.0.strftime("%Y-%m-%dT%H:%M:%SZ"),
            expires(Some(&t.0), now)
        )
    });
    let mut fields: Vec<(&str, String)> = vec![
        ("Name", name.clone()),
        ("Namespace", or_none(ds.metadata.namespace.clone())),
        ("Owner", or_none(spec.owner.clone())),
        (
            "Flavor",
            or_none(
                spec.flavor
                    .clone()
                    .or(status.flavor.clone().map(|f| format!("{f} (default)"))),
            ),
        ),
        (
            "Image",
            spec.image
                .clone()
                .unwrap_or_else(|| "(flavor or operator default)".into()),
        ),
        (
            "Mode",
            serde_json::to_value(spec.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
        ("Running", spec.running.to_string()),
        ("Phase", or_none(status.phase.map(|p| p.to_string()))),
        ("Message", or_none(status.message.clone())),
        ("Stop reason", or_none(status.stop_reason.clone())),
        (
            "Time to live",
            or_none(lifecycle.as_ref().and_then(|l| l.time_to_live.clone())),
        ),
        ("Expires", or_none(expiry)),
        (
            "Idle timeout",
            or_none(lifecycle.as_ref().and_then(|l| l.idle_timeout.clone())),
        ),
        (
            "Last activity",
            or_none(
                status
                    .last_activity
                    .as_ref()
                    .map(|t| age(Some(&t.0), now) + " ago"),
            ),
        ),
        ("Home", home),
        (
            "Shared",
            or_none(
                spec.shared_volume_claim_name
                    .as_ref()
                    .map(|c| format!("claim {c} at {SHARED_PATH}")),
            ),
        ),
        (
            "SSH",
            status
                .ssh
                .as_ref()
                .and_then(|s| s.command.clone())
                .unwrap_or_else(|| format!("devctl ssh {name}")),
        ),
        (
            "Age",
            age(ds.metadata.creation_timestamp.as_ref().map(|t| &t.0), now),
        ),
    ];
    if let Some(s) = status.ssh.as_ref().and_then(|s| s.service.clone()) {
        fields.push(("SSH service", s));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in &fields {
        out.push_str(&format!("{:<width$}{v}\n", format!("{k}:")));
    }
    let indent = |t: String| -> String { t.lines().map(|l| format!("  {l}\n")).collect() };
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    if !volumes.is_empty() {
        out.push_str("Volumes:\n");
        let rows: Vec<Vec<String>> = volumes
            .iter()
            .map(|v| {
                vec![
                    v.claim_name.clone(),
                    v.mount_path.clone(),
                    if v.read_only { "ro" } else { "rw" }.into(),
                ]
            })
            .collect();
        out.push_str(&indent(table(&["CLAIM", "PATH", "MODE"], &rows)));
    }
    out.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = status
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        out.push_str(&indent(table(
            &["TYPE", "STATUS", "REASON", "MESSAGE"],
            &rows,
        )));
    }
    out.push_str("Pods:\n");
    if pods.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = pods
            .iter()
            .map(|p| {
                let st = p.status.as_ref();
                let ready = st
                    .and_then(|s| s.conditions.as_deref())
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                vec![
                    p.metadata.name.clone().unwrap_or_default(),
                    st.and_then(|s| s.phase.clone()).unwrap_or_default(),
                    ready.to_string(),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_else(|| "-".into()),
                    age(p.metadata.creation_timestamp.as_ref().map(|t| &t.0), now),
                ]
            })
            .collect();
        out.push_str(&indent(table(
            &["NAME", "PHASE", "READY", "NODE", "AGE"],
            &rows,
        )));
    }
    out.push_str("Events:\n");
    if events.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut evs: Vec<&Event> = events.iter().collect();
        let when = |e: &Event| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        };
        evs.sort_by_key(|e| when(e));
        let rows: Vec<Vec<String>> = evs
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(|e| {
                vec![
                    age(when(e).as_ref(), now),
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&indent(table(&["AGE", "TYPE", "REASON", "MESSAGE"], &rows)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_has_settings_conditions_pods_and_events() {
        let ds: DevServer = serde_json::from_value(json!({
            "apiVersion": "devserver.io/v1", "kind": "DevServer",
            "metadata": {"name": "mydev", "namespace": "dev-alice", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"owner": "alice", "flavor": "cpu-small", "persistentHomeSize": "10Gi",
                     "volumes": [{"claimName": "data", "mountPath": "/data", "readOnly": true}],
                     "lifecycle": {"timeToLive": "8h"}},
            "status": {"phase": "Running", "message": "Ready for SSH.", "expiresAt": "2025-01-01T08:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "Ready for SSH.", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
        })).unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "mydev-0", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"nodeName": "kwok-node-0", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let page = render(&ds, &[pod], &[], "2025-01-01T02:00:00Z".parse().unwrap());
        for want in [
            "Name:          mydev\n",
            "Phase:         Running\n",
            "Expires:       2025-01-01T08:00:00Z (in 6h)\n",
            "Home:          10Gi persistent (claim mydev-home) at /home/dev\n",
            "  CLAIM   PATH    MODE\n  data    /data   ro\n",
            "  Ready   True     Running",
            "  mydev-0   Running   true    kwok-node-0   120m\n",
            "Events:\n  <none>\n",
            "SSH:           devctl ssh mydev\n",
        ] {
            assert!(page.contains(want), "missing {want:?} in:\n{page}");
        }
    }
}
