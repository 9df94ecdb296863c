//! What the VM reconciler sees of migrations: `status.migration` mirrored
//! from the migration object in flight (or the last one), whether one is
//! under way (then the VM reconciler touches neither launcher pod), and the
//! clean-up of markers a vanished migration left behind.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::{SOURCE_ANNOTATION, active, plan, tolerate};
use crate::crd::{MigrationPhase, VirtualMachineMigration, VmMigrationStatus};
use crate::observe::READY;

/// The VM's view of its current or last migration (`status.migration`),
/// read from the migration object; also says whether it is still under way.
pub async fn vm_view(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<VmMigrationStatus>, kube::Error> {
    let api: Api<VirtualMachineMigration> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.map(|m| view_of(&m)))
}

/// [`vm_view`]'s mapping (pure).
pub fn view_of(m: &VirtualMachineMigration) -> VmMigrationStatus {
    let s = m.status.clone().unwrap_or_default();
    let failure = (s.phase == Some(MigrationPhase::Failed))
        .then(|| {
            s.conditions
                .iter()
                .find(|c| c.type_ == READY)
                .map(|c| c.message.clone())
        })
        .flatten();
    VmMigrationStatus {
        migration_name: Some(m.name_any()),
        phase: s.phase,
        state: None,
        source_node: s.source_node,
        target_node: s.target_node,
        start_time: s.start_time,
        end_time: s.completion_time,
        progress: s.progress,
        data_total_bytes: s.data_total_bytes,
        data_remaining_bytes: s.data_remaining_bytes,
        speed_bytes_per_second: s.speed_bytes_per_second,
        message: failure,
    }
}

/// Whether a VM's recorded migration is still under way.
pub fn in_progress(view: Option<&VmMigrationStatus>) -> bool {
    view.is_some_and(|v| !plan::finished(v.phase))
}

/// Removes the markers of a migration whose object is gone (after a crash
/// between its deletion and its cleanup), so the VM is not held forever.
pub async fn clear_orphan(
    client: &Client,
    namespace: &str,
    launchers: &active::Launchers,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    if let Some(t) = &launchers.target {
        pods.delete(&t.name_any(), &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(tolerate(404))?;
    }
    if let Some(a) = &launchers.active
        && a.annotations().contains_key(SOURCE_ANNOTATION)
    {
        let patch = serde_json::json!({"metadata": {"annotations": {SOURCE_ANNOTATION: null}}});
        pods.patch(
            &a.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
        .or_else(tolerate(404))?;
    }
    Ok(())
}

/// For the VM reconciler: fills `status.migration` from the migration in
/// flight (or the last one, until it reports its end) and says whether one
/// is under way, in which case the VM reconciler touches neither pod.
pub async fn observe_vm(
    client: &Client,
    namespace: &str,
    launchers: &active::Launchers,
    status: &mut crate::crd::VirtualMachineStatus,
) -> Result<bool, kube::Error> {
    if let Some(name) = &launchers.migration {
        return match vm_view(client, namespace, name).await? {
            Some(view) => {
                status.migration = Some(view);
                Ok(true)
            }
            None => {
                clear_orphan(client, namespace, launchers).await?;
                Ok(false)
            }
        };
    }
    let last = status
        .migration
        .as_ref()
        .filter(|v| in_progress(Some(v)))
        .and_then(|v| v.migration_name.clone());
    if let Some(name) = last {
        status.migration = match vm_view(client, namespace, &name).await? {
            Some(v) => Some(v),
            None => status.migration.take().map(|mut v| {
                v.phase = Some(MigrationPhase::Failed);
                v.message = Some("the migration object was deleted before it finished".into());
                v
            }),
        };
    }
    Ok(false)
}
