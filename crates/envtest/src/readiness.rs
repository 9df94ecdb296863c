//! For `envtest up`: how far each applied object got, so the demo can wait
//! until the operators have brought their samples up and print what it got.

use std::time::Duration;

use kube::api::{Api, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;

/// Where one object stands, read from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// `status.phase`, or `-` when the kind has none.
    pub phase: String,
    pub ready: bool,
    /// Why it is not ready (a condition's message), when it says.
    pub detail: String,
}

/// Phases that mean "up" across the operators (Workshop Ready/Running,
/// DevServer Running, VirtualMachine Running, Workspace Ready, ...).
const UP_PHASES: &[&str] = &["Ready", "Running", "Active", "Succeeded", "Completed"];

/// Reads `status` of an object: ready when its phase is one of the up
/// phases, or (no phase) when a `Ready` condition, else an `Accepted` one,
/// is True.
pub fn standing(obj: &DynamicObject) -> Standing {
    let kind = obj
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_default();
    let status = &obj.data["status"];
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |t: &str| conditions.iter().find(|c| c["type"] == t);
    let phase = status["phase"].as_str().map(str::to_string);
    let ready = match &phase {
        Some(p) => UP_PHASES.contains(&p.as_str()),
        None => condition("Ready")
            .or_else(|| condition("Accepted"))
            .is_some_and(|c| c["status"] == "True"),
    };
    // Why not: what the Ready (else Accepted) condition says. Other
    // conditions can be False for good reasons ("Expired=False").
    let detail = match condition("Ready").or_else(|| condition("Accepted")) {
        Some(c) if !ready && c["status"] != "True" => c["message"]
            .as_str()
            .or(c["reason"].as_str())
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    };
    Standing {
        kind,
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        phase: phase.unwrap_or_else(|| "-".into()),
        ready,
        detail,
    }
}

/// Re-reads `objects` until all are ready or `timeout` passes; returns the
/// last reading of each.
pub async fn wait_until_up(
    client: &kube::Client,
    objects: &[DynamicObject],
    timeout: Duration,
) -> anyhow::Result<Vec<Standing>> {
    // Several sample files may complete one object: read each once.
    let mut seen = std::collections::BTreeSet::new();
    let objects: Vec<&DynamicObject> = objects
        .iter()
        .filter(|o| {
            seen.insert((
                o.types.as_ref().map(|t| t.kind.clone()),
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut standings = Vec::with_capacity(objects.len());
        for obj in &objects {
            standings.push(standing(&current(client, obj).await?));
        }
        if standings.iter().all(|s| s.ready) || tokio::time::Instant::now() >= deadline {
            return Ok(standings);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn current(client: &kube::Client, obj: &DynamicObject) -> anyhow::Result<DynamicObject> {
    let types = obj
        .types
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("object without apiVersion/kind"))?;
    let gvk = GroupVersionKind::try_from(types)?;
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match (caps.scope, &obj.metadata.namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    };
    let mut got = api
        .get(obj.metadata.name.as_deref().unwrap_or_default())
        .await?;
    got.types = obj.types.clone();
    Ok(got)
}

/// The table the demo prints.
pub fn table(standings: &[Standing]) -> String {
    let mut out = format!(
        "{:<22} {:<26} {:<12} {:<6} {}\n",
        "KIND", "NAME", "PHASE", "READY", "WHY NOT"
    );
    for s in standings {
        let name = match &s.namespace {
            Some(ns) => format!("{ns}/{}", s.name),
            None => s.name.clone(),
        };
        out.push_str(&format!(
            "{:<22} {:<26} {:<12} {:<6} {}\n",
            s.kind,
            name,
            s.phase,
            if s.ready { "yes" } else { "no" },
            s.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn obj(kind: &str, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "example.io/v1", "kind": kind,
            "metadata": {"name": "x", "namespace": "default"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn phases_and_conditions_decide_readiness() {
        assert!(standing(&obj("Workshop", json!({"phase": "Ready"}))).ready);
        assert!(standing(&obj("DevServer", json!({"phase": "Running"}))).ready);
        let pending = standing(&obj(
            "Workspace",
            json!({"phase": "Pending", "conditions": [
                {"type": "Ready", "status": "False", "reason": "Waiting", "message": "no runner image"}
            ]}),
        ));
        assert!(!pending.ready);
        assert_eq!(pending.detail, "no runner image");
        assert!(
            standing(&obj(
                "DevServerFlavor",
                json!({"conditions": [{"type": "Accepted", "status": "True"}]})
            ))
            .ready
        );
        let bare = standing(&obj("Thing", Value::Null));
        assert!(!bare.ready);
        assert_eq!(bare.phase, "-");
    }

    #[test]
    fn table_lists_every_object() {
        let t = table(&[standing(&obj("Workshop", json!({"phase": "Ready"})))]);
        assert!(t.starts_with("KIND"));
        assert!(t.contains("Workshop") && t.contains("default/x") && t.contains("yes"));
    }
}
