//! `image.source: snapshot://NAME`: which VolumeSnapshot a new VM's root
//! disk is restored from. NAME is either a VolumeSnapshot of the VM's
//! namespace, or a VM snapshot as `status.snapshots` lists it
//! (`<vm>-<tick>`), whose root disk's VolumeSnapshot is then used.

use kube::Client;
use kube::api::{Api, DynamicObject};

use super::volume_snapshot::{SNAPSHOT_LABEL, api_resource};
use crate::build::{Names, VM_LABEL};

/// A VM snapshot name split into the VM and the tick (`YYYYMMDDHHMM`).
pub fn parse_vm_snapshot(name: &str) -> Option<(&str, &str)> {
    let (vm, tick) = name.rsplit_once('-')?;
    (!vm.is_empty() && tick.len() == 12 && tick.bytes().all(|b| b.is_ascii_digit()))
        .then_some((vm, tick))
}

/// The VolumeSnapshot of the root disk in the VM snapshot `<vm>-<tick>`.
pub fn root_disk_snapshot(vm: &str, tick: &str) -> String {
    format!("{}-{tick}", Names::of(vm).root_disk())
}

/// Why a restore source cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RestoreError {
    #[error("snapshot://{0}: no VolumeSnapshot and no VM snapshot of that name in this namespace")]
    NotFound(String),
    #[error(
        "snapshot://{name}: the VM snapshot has no root disk VolumeSnapshot (expected {expected})"
    )]
    NoRootDisk { name: String, expected: String },
}

/// The VolumeSnapshot `snapshot://name` restores from: `name` itself when
/// such a VolumeSnapshot exists, else the root disk's of the VM snapshot
/// `name`. `Err(kube)` for API errors worth a retry.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Result<String, RestoreError>, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource());
    // A missing VolumeSnapshot API reads as not found too.
    if api.get_opt(name).await?.is_some() {
        return Ok(Ok(name.to_owned()));
    }
    let Some((vm, tick)) = parse_vm_snapshot(name) else {
        return Ok(Err(RestoreError::NotFound(name.to_owned())));
    };
    let expected = root_disk_snapshot(vm, tick);
    Ok(match api.get_opt(&expected).await? {
        Some(obj) if is_of(&obj, vm, tick) => Ok(expected),
        Some(_) | None => {
            // Is there such a VM snapshot at all?
            let group = api
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("{VM_LABEL}={vm},{SNAPSHOT_LABEL}={tick}")),
                )
                .await?;
            if group.items.is_empty() {
                Err(RestoreError::NotFound(name.to_owned()))
            } else {
                Err(RestoreError::NoRootDisk {
                    name: name.to_owned(),
                    expected,
                })
            }
        }
    })
}

/// Whether a VolumeSnapshot belongs to the VM snapshot of `vm` at `tick`.
fn is_of(obj: &DynamicObject, vm: &str, tick: &str) -> bool {
    let labels = obj.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(VM_LABEL) == Some(vm) && label(SNAPSHOT_LABEL) == Some(tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_snapshot_names() {
        assert_eq!(
            parse_vm_snapshot("web-1-202611231200"),
            Some(("web-1", "202611231200"))
        );
        assert_eq!(parse_vm_snapshot("web-2026112312"), None);
        assert_eq!(parse_vm_snapshot("web-20261123120a"), None);
        assert_eq!(parse_vm_snapshot("-202611231200"), None);
        assert_eq!(parse_vm_snapshot("backup"), None);
        assert_eq!(
            root_disk_snapshot("web-1", "202611231200"),
            "web-1-rootdisk-202611231200"
        );
    }
}
