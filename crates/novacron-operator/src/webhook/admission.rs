//! The admission decisions (pure): validation reuses [`crate::validate`],
//! so the webhook, the CRD's CEL rules and the controller's `Accepted`
//! condition say the same things; mutation fills the defaults of
//! `updateStrategy` and `migrationPolicy` so stored objects are explicit.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::{Value, json};

use crate::crd::{MigrationPolicy, UpdateStrategy, VirtualMachine, VirtualMachineMigration};
use crate::validate;

/// Which webhook answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Validate,
    Mutate,
}

/// Answers one AdmissionReview body; the result is the response review as
/// JSON (an unreadable request gets an `invalid` response, never a panic)
/// and whether the request was allowed.
pub fn review(body: &[u8], hook: Hook) -> (Vec<u8>, bool) {
    let response = match serde_json::from_slice::<AdmissionReview<DynamicObject>>(body) {
        Err(e) => AdmissionResponse::invalid(format!("unreadable AdmissionReview: {e}")),
        Ok(review) => match TryInto::<AdmissionRequest<DynamicObject>>::try_into(review) {
            Err(e) => AdmissionResponse::invalid(e.to_string()),
            Ok(req) => match hook {
                Hook::Validate => validate_request(&req),
                Hook::Mutate => mutate_request(&req),
            },
        },
    };
    let allowed = response.allowed;
    (
        serde_json::to_vec(&response.into_review()).expect("an AdmissionReview serializes"),
        allowed,
    )
}

fn object_name(obj: &DynamicObject) -> String {
    // generateName objects have no name yet; validate the rest.
    obj.metadata.name.clone().unwrap_or_else(|| {
        format!(
            "{}x",
            obj.metadata.generate_name.clone().unwrap_or_default()
        )
    })
}

fn validate_request(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    if matches!(req.operation, Operation::Delete | Operation::Connect) {
        return allow;
    }
    let Some(obj) = &req.object else {
        return allow;
    };
    let value = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => return allow.deny(format!("cannot read the object: {e}")),
    };
    let name = object_name(obj);
    let verdict = match req.kind.kind.as_str() {
        "VirtualMachine" => match serde_json::from_value::<VirtualMachine>(value) {
            Ok(vm) => validate::validate_vm(&name, &vm.spec),
            Err(e) => return allow.deny(format!("VirtualMachine {name}: {e}")),
        },
        "VirtualMachineMigration" => {
            match serde_json::from_value::<VirtualMachineMigration>(value) {
                Ok(m) => validate::validate_migration(&m.spec),
                Err(e) => return allow.deny(format!("VirtualMachineMigration {name}: {e}")),
            }
        }
        _ => return allow,
    };
    match verdict {
        Ok(()) => allow,
        Err(e) => allow.deny(format!("{} {name} is invalid: {e}", req.kind.kind)),
    }
}

/// The JSON patch adding what a VirtualMachine leaves out.
pub fn default_patch(obj: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    let Some(spec) = obj.get("spec").and_then(Value::as_object) else {
        return ops;
    };
    if !spec.contains_key("updateStrategy") {
        ops.push(json!({"op": "add", "path": "/spec/updateStrategy",
            "value": serde_json::to_value(UpdateStrategy::default()).expect("serializes")}));
    }
    if !spec.contains_key("migrationPolicy") {
        ops.push(json!({"op": "add", "path": "/spec/migrationPolicy",
            "value": serde_json::to_value(MigrationPolicy::default()).expect("serializes")}));
    }
    ops
}

fn mutate_request(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let allow = AdmissionResponse::from(req);
    if req.kind.kind != "VirtualMachine"
        || !matches!(req.operation, Operation::Create | Operation::Update)
    {
        return allow;
    }
    let Some(obj) = &req.object else {
        return allow;
    };
    let Ok(value) = serde_json::to_value(obj) else {
        return allow;
    };
    let ops = default_patch(&value);
    if ops.is_empty() {
        return allow;
    }
    match serde_json::from_value::<json_patch::Patch>(Value::Array(ops)) {
        Ok(patch) => allow
            .clone()
            .with_patch(patch)
            .unwrap_or_else(|e| allow.deny(format!("cannot encode the defaults: {e}"))),
        Err(e) => allow.deny(format!("cannot build the defaults: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn request(kind: &str, op: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "novacron.io", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "novacron.io", "version": "v1alpha1", "resource": "virtualmachines"},
                "operation": op,
                "userInfo": {"username": "alice"},
                "object": object,
            }
        }))
        .unwrap()
    }

    fn vm(spec: Value) -> Value {
        json!({"apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachine",
               "metadata": {"name": "web", "namespace": "ns"}, "spec": spec})
    }

    fn good_spec() -> Value {
        json!({"running": true, "template": {"spec": {
            "resources": {"cpu": 2, "memory": "4Gi", "disk": "50Gi"},
            "image": {"source": "marketplace://ubuntu-22.04-lts"}
        }}})
    }

    fn response(out: &(Vec<u8>, bool)) -> Value {
        let v: Value = serde_json::from_slice(&out.0).unwrap();
        assert_eq!(v["response"]["allowed"], out.1);
        v["response"].clone()
    }

    #[test]
    fn valid_vms_are_allowed_and_invalid_ones_explained() {
        let r = response(&review(
            &request("VirtualMachine", "CREATE", vm(good_spec())),
            Hook::Validate,
        ));
        assert_eq!(r["uid"], "u-1");
        assert_eq!(r["allowed"], true);

        let mut bad = good_spec();
        bad["template"]["spec"]["resources"]["memory"] = json!("256Mi");
        bad["template"]["spec"]["resources"]["cpu"] = json!(0);
        let r = response(&review(
            &request("VirtualMachine", "CREATE", vm(bad)),
            Hook::Validate,
        ));
        assert_eq!(r["allowed"], false);
        let msg = r["status"]["message"].as_str().unwrap();
        assert!(msg.starts_with("VirtualMachine web is invalid: "), "{msg}");
        assert!(msg.contains("memory"), "{msg}");
        assert!(msg.contains("cpu"), "{msg}");
    }

    #[test]
    fn undecodable_objects_and_requests_are_denied_not_panicked_on() {
        let mut bad = good_spec();
        bad["template"]["spec"]["resources"]["cpu"] = json!("two");
        let r = response(&review(
            &request("VirtualMachine", "CREATE", vm(bad)),
            Hook::Validate,
        ));
        assert_eq!(r["allowed"], false);
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .contains("VirtualMachine web")
        );
        let r = response(&review(b"{not json", Hook::Validate));
        assert_eq!(r["allowed"], false);
    }

    #[test]
    fn mutation_adds_the_missing_policies_only() {
        let r = response(&review(
            &request("VirtualMachine", "CREATE", vm(good_spec())),
            Hook::Mutate,
        ));
        assert_eq!(r["allowed"], true);
        assert_eq!(r["patchType"], "JSONPatch");
        // kube serializes the bytes as a JSON array (Go decodes both forms).
        let patch: Vec<u8> = match &r["patch"] {
            Value::String(s) => base64::engine::general_purpose::STANDARD.decode(s).unwrap(),
            other => serde_json::from_value(other.clone()).unwrap(),
        };
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "add", "path": "/spec/updateStrategy", "value": {"type": "Recreate"}},
                {"op": "add", "path": "/spec/migrationPolicy", "value": {
                    "allowLiveMigration": false, "compression": false, "encrypted": true,
                    "autoConverge": false, "postCopy": false}}
            ])
        );
        let mut explicit = good_spec();
        explicit["updateStrategy"] = json!({"type": "RollingUpdate"});
        explicit["migrationPolicy"] = json!({"allowLiveMigration": true});
        let r = response(&review(
            &request("VirtualMachine", "UPDATE", vm(explicit)),
            Hook::Mutate,
        ));
        assert_eq!(r["allowed"], true);
        assert!(r.get("patch").is_none());
    }
}
