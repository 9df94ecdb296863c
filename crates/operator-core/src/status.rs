//! Writing status: one server-side apply at the end of a reconcile, and only
//! when the status really changed (no write in steady state).

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Applies `desired` as the status of `obj` unless it equals the current
/// status. Returns whether a write happened.
pub async fn apply_status<K>(
    api: &Api<K>,
    obj: &K,
    field_manager: &str,
    desired: &K::Status,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + HasStatus + DeserializeOwned + Clone + Debug,
    K::Status: Serialize + PartialEq,
{
    if obj.status() == Some(desired) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}
