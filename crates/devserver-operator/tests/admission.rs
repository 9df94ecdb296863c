//! Admission against a real API server: the committed CRDs accept the
//! documents' examples unchanged (with defaults filled in), reject invalid
//! manifests with clear messages, and the controllers report the validation
//! verdict in status and events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use devserver_operator::controllers::{ACCEPTED, REASON_INVALID};
use devserver_operator::crd::{
    DevServer, DevServerFlavor, DevServerMode, DevServerPhase, DevServerUser, DevServerUserPhase,
    NamespaceDeletionPolicy,
};
use envtest::manifest::{apply_yaml, parse_documents};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};

const MANAGER: &str = "devserver-operator-tests";
const WAIT: Duration = Duration::from_secs(30);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/devserver-operator")
}

fn sample(name: &str) -> String {
    let path = deploy_dir().join("samples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Installs the committed CRD files, as `kubectl apply -f deploy/.../crds` would.
async fn install_crds(client: &Client) {
    let names = envtest::manifest::install_crd_dir(client, &deploy_dir().join("crds"))
        .await
        .unwrap();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// Server-side applies with `dryRun=All`: the API server validates and
/// defaults the objects without storing them (for samples that would change
/// the shared cluster, such as a default StorageClass).
async fn dry_run_apply(client: &Client, yaml: &str, namespace: &str) {
    for mut obj in parse_documents(yaml).unwrap() {
        let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
        let (resource, caps) = discovery::pinned_kind(client, &gvk).await.unwrap();
        let api: Api<kube::api::DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = obj
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.into());
                obj.metadata.namespace = Some(ns.clone());
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force().dry_run(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("dry-run apply of {} {}: {e}", gvk.kind, obj.name_any()));
    }
}

#[tokio::test]
async fn the_documents_examples_apply_unchanged_and_get_defaults() {
    let ns = envtest::test_namespace("ds-samples").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;

    for file in [
        "flavor-cpu-small.yaml",
        "flavor-gpu-small.yaml",
        "flavor-gpu-large.yaml",
        "devserveruser.yaml",
        "pvc-mydev-home.yaml",
        "devserver-persistent-home-and-shared.yaml",
        "devserver-volumes.yaml",
        "devserver-distributed.yaml",
    ] {
        apply_yaml(&client, &sample(file), &ns.name, MANAGER)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // These change cluster-wide storage (a default StorageClass, a PV and a
    // PVC in `default`): validated by the API server without being stored.
    dry_run_apply(&client, &sample("storageclass-ebs.yaml"), &ns.name).await;
    dry_run_apply(&client, &sample("efs-pvc.yaml"), &ns.name).await;

    let servers: Api<DevServer> = ns.api();
    let doc = servers.get("my-dev-server").await.unwrap();
    assert_eq!(doc.spec.owner.as_deref(), Some("user@example.com"));
    assert_eq!(doc.spec.flavor.as_deref(), Some("gpu-large"));
    assert_eq!(
        doc.spec.ssh.as_ref().unwrap().public_key.as_deref(),
        Some("ssh-rsa AAAA...")
    );
    assert_eq!(doc.spec.persistent_home_size.as_ref().unwrap().0, "100Gi");
    assert_eq!(
        doc.spec.shared_volume_claim_name.as_deref(),
        Some("efs-shared-claim")
    );
    // Defaults filled in by the API server.
    assert_eq!(doc.spec.mode, DevServerMode::Standalone);
    assert!(doc.spec.running);
    let raw: serde_json::Value = serde_json::to_value(&doc).unwrap();
    assert_eq!(raw["spec"]["mode"], "standalone");
    assert_eq!(raw["spec"]["running"], true);

    let ml = servers.get("ml-dev").await.unwrap();
    let vols = ml.spec.volumes.unwrap();
    assert_eq!(vols.len(), 3);
    assert!(!vols[0].read_only, "readOnly defaults to false");
    assert!(vols[1].read_only);

    let ddp = servers.get("ddp-dev").await.unwrap();
    assert_eq!(ddp.spec.mode, DevServerMode::Distributed);
    assert_eq!(ddp.spec.distributed.unwrap().world_size, 2);

    let flavors: Api<DevServerFlavor> = Api::all(client.clone());
    assert!(flavors.get("cpu-small").await.unwrap().spec.default);
    assert!(
        !flavors.get("gpu-small").await.unwrap().spec.default,
        "default defaults to false"
    );

    let users: Api<DevServerUser> = Api::all(client.clone());
    let alice = users.get("alice").await.unwrap();
    assert_eq!(
        alice.spec.namespace_deletion_policy,
        NamespaceDeletionPolicy::Retain
    );
    let refs = alice.spec.rbac.unwrap().additional_role_refs.unwrap();
    assert_eq!(
        refs[0].api_group, "rbac.authorization.k8s.io",
        "apiGroup defaulted"
    );

    // The same objects pass the operator's own validation.
    devserver_operator::validate::devserver(&doc.spec).unwrap();
    devserver_operator::validate::flavor(&flavors.get("gpu-large").await.unwrap().spec).unwrap();
}

/// Applies `yaml` and returns the API server's error message.
async fn rejected(client: &Client, ns: &str, yaml: &str) -> String {
    match apply_yaml(client, yaml, ns, MANAGER).await {
        Ok(_) => panic!("accepted, but should be rejected:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn devserver_yaml(name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: devserver.io/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

#[tokio::test]
async fn invalid_devservers_are_rejected_with_clear_messages() {
    let ns = envtest::test_namespace("ds-invalid").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;

    let cases: &[(&str, &str)] = &[
        (
            "volumes:\n- {claimName: a, mountPath: /data}\n- {claimName: b, mountPath: /data}",
            "volumes must not repeat a mountPath",
        ),
        (
            "mode: distributed",
            "spec.distributed (with worldSize) is required when mode is distributed",
        ),
        (
            "distributed: {worldSize: 2}",
            "spec.distributed is only allowed when mode is distributed",
        ),
        ("mode: cluster", "Unsupported value: \"cluster\""),
        (
            "mode: distributed\ndistributed: {worldSize: 0}",
            "should be greater than or equal to 1",
        ),
        (
            "mode: distributed\ndistributed: {worldSize: 2, ncclSettings: {'nccl debug': INFO}}",
            "ncclSettings keys must be environment variable names",
        ),
        (
            "lifecycle: {timeToLive: 8d}",
            "timeToLive must be at most 7 days",
        ),
        (
            "lifecycle: {timeToLive: 169h}",
            "timeToLive must be at most 7 days",
        ),
        (
            "lifecycle: {timeToLive: 7d1s}",
            "timeToLive must be at most 7 days",
        ),
        (
            "lifecycle: {timeToLive: 0h}",
            "timeToLive must be greater than zero",
        ),
        (
            "lifecycle: {timeToLive: 1h 30m}",
            "spec.lifecycle.timeToLive",
        ),
        ("lifecycle: {timeToLive: 30m2h}", "should match"),
        (
            "lifecycle: {idleTimeout: 0m}",
            "idleTimeout must be greater than zero",
        ),
        (
            "persistentHomeSize: lots",
            "persistentHomeSize must be a positive quantity",
        ),
        (
            "persistentHomeSize: '0'",
            "persistentHomeSize must be a positive quantity",
        ),
        (
            "persistentHomeSize: 0",
            "persistentHomeSize must be a positive quantity",
        ),
        (
            "volumes:\n- {claimName: a, mountPath: data}",
            "mountPath must be an absolute path",
        ),
        (
            "volumes:\n- {claimName: a, mountPath: /data/}",
            "mountPath must be an absolute path",
        ),
        (
            "volumes:\n- {claimName: a, mountPath: /a/../b}",
            "mountPath must not contain '.' or '..' segments",
        ),
        (
            "volumes:\n- {claimName: Not_A_Claim, mountPath: /data}",
            "claimName must be a valid PersistentVolumeClaim name",
        ),
        ("volumes:\n- {claimName: a}", "Required value"),
        (
            "persistentHomeSize: 10Gi\nvolumes:\n- {claimName: a, mountPath: /home/dev}",
            "a volume cannot be mounted at /home/dev when persistentHomeSize is set",
        ),
        (
            "sharedVolumeClaimName: efs\nvolumes:\n- {claimName: a, mountPath: /shared}",
            "a volume cannot be mounted at /shared when sharedVolumeClaimName is set",
        ),
        ("flavor: GPU_Large", "flavor must be a DevServerFlavor name"),
        ("image: 'ubuntu 22.04'", "image must not contain whitespace"),
        (
            "ssh: {serviceType: LoadBalancer}",
            "Unsupported value: \"LoadBalancer\"",
        ),
        ("running: maybe", "spec.running"),
    ];
    for (i, (spec, expected)) in cases.iter().enumerate() {
        let msg = rejected(
            &client,
            &ns.name,
            &devserver_yaml(&format!("bad-{i}"), spec),
        )
        .await;
        assert!(
            msg.contains(expected),
            "case {i} ({spec:?}): expected {expected:?} in:\n{msg}"
        );
    }

    // The boundaries are accepted.
    for (i, spec) in [
        "lifecycle: {timeToLive: 7d}",
        "lifecycle: {timeToLive: 168h}",
        "lifecycle: {timeToLive: 6d23h59m59s, idleTimeout: 30m}",
        "persistentHomeSize: 1",
        "volumes:\n- {claimName: home, mountPath: /home/dev}\n- {claimName: data, mountPath: /data, readOnly: true}",
    ]
    .iter()
    .enumerate()
    {
        apply_yaml(&client, &devserver_yaml(&format!("ok-{i}"), spec), &ns.name, MANAGER)
            .await
            .unwrap_or_else(|e| panic!("{spec:?} rejected: {e}"));
    }
}

#[tokio::test]
async fn invalid_flavors_and_users_are_rejected() {
    let client = envtest::client().await.unwrap();
    install_crds(&client).await;

    let flavor = |name: &str, spec: &str| {
        let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        format!(
            "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: {name}\nspec:\n{spec}"
        )
    };
    let user = |name: &str, username: &str| {
        format!(
            "apiVersion: devserver.io/v1\nkind: DevServerUser\nmetadata:\n  name: {name}\nspec:\n  username: {username}\n"
        )
    };
    for (spec, expected) in [
        (
            "resources: {requests: {cpu: lots}}",
            "spec.resources.requests[cpu]: Invalid value: \"lots\": must be a non-negative quantity",
        ),
        (
            "resources: {limits: {memory: '-1Gi'}}",
            "must be a non-negative quantity",
        ),
        (
            "volumes:\n- {claimName: a, mountPath: /data}\n- {claimName: b, mountPath: /data}",
            "volumes must not repeat a mountPath",
        ),
        ("default: sometimes", "spec.default"),
    ] {
        let msg = rejected(&client, "default", &flavor("bad-flavor", spec)).await;
        assert!(
            msg.contains(expected),
            "{spec:?}: expected {expected:?} in:\n{msg}"
        );
    }

    let too_long = "a".repeat(60);
    for (username, expected) in [
        ("Alice", "username must be a DNS label"),
        ("-bob", "username must be a DNS label"),
        (too_long.as_str(), "may not be more than 59"),
    ] {
        let msg = rejected(&client, "default", &user("bad-user", username)).await;
        assert!(
            msg.contains(expected),
            "{username:?}: expected {expected:?} in:\n{msg}"
        );
    }
    let longest = "a".repeat(59);
    apply_yaml(&client, &user("longest-user", &longest), "default", MANAGER)
        .await
        .unwrap();

    let msg = rejected(
        &client,
        "default",
        "apiVersion: devserver.io/v1\nkind: DevServerUser\nmetadata:\n  name: bad-ref\nspec:\n  username: bad-ref\n  rbac:\n    additionalRoleRefs:\n    - {kind: Group, name: x}\n",
    )
    .await;
    assert!(msg.contains("Unsupported value: \"Group\""), "{msg}");

    // username is immutable.
    apply_yaml(&client, &user("renamed", "carol"), "default", MANAGER)
        .await
        .unwrap();
    let msg = rejected(&client, "default", &user("renamed", "dave")).await;
    assert!(msg.contains("username is immutable"), "{msg}");
    Api::<DevServerUser>::all(client.clone())
        .delete("renamed", &DeleteParams::default())
        .await
        .unwrap();
}

/// A phase of an accepted server on its way up.
fn provisioning(phase: Option<DevServerPhase>) -> bool {
    matches!(
        phase,
        Some(DevServerPhase::Pending | DevServerPhase::Starting | DevServerPhase::Running)
    )
}

fn accepted(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == ACCEPTED)
}

#[tokio::test]
async fn the_controllers_report_the_validation_verdict() {
    let ns = envtest::test_namespace("ds-verdict").await.unwrap();
    let client = ns.client();
    install_crds(&client).await;

    let args = operator_core::cli::RunArgs {
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let operator = devserver_operator::operator();
    let run_client = client.clone();
    let task = tokio::spawn(async move {
        operator_core::runtime::run_with_client(
            &operator,
            args,
            run_client,
            operator_core::metrics::Metrics::new(),
            devserver_operator::controllers::run,
        )
        .await
    });

    let suffix = ns.name.rsplit('-').next().unwrap().to_string();
    let servers: Api<DevServer> = ns.api();
    apply_yaml(
        &client,
        &sample("devserver-persistent-home-and-shared.yaml"),
        &ns.name,
        MANAGER,
    )
    .await
    .unwrap();
    // Passes the schema, but the SSH key is not a key.
    apply_yaml(
        &client,
        &devserver_yaml("bad-key", "owner: bob\nssh:\n  publicKey: hunter2"),
        &ns.name,
        MANAGER,
    )
    .await
    .unwrap();
    // Requests above limits: only the operator can compare quantities.
    let flavor_name = format!("too-big-{suffix}");
    apply_yaml(
        &client,
        &format!(
            "apiVersion: devserver.io/v1\nkind: DevServerFlavor\nmetadata:\n  name: {flavor_name}\nspec:\n  resources:\n    requests: {{cpu: '4'}}\n    limits: {{cpu: '2'}}\n"
        ),
        "default",
        MANAGER,
    )
    .await
    .unwrap();
    let user_name = format!("user-{suffix}");
    apply_yaml(
        &client,
        &format!("apiVersion: devserver.io/v1\nkind: DevServerUser\nmetadata:\n  name: {user_name}\nspec:\n  username: {user_name}\n"),
        "default",
        MANAGER,
    )
    .await
    .unwrap();

    // The document's example: accepted, waiting to be provisioned.
    let good = envtest::eventually("my-dev-server accepted", WAIT, || async {
        let s = servers.get("my-dev-server").await.ok()?;
        let status = s.status.clone()?;
        (accepted(&status.conditions)?.status == "True").then_some(s)
    })
    .await;
    let status = good.status.unwrap();
    assert_eq!(status.observed_generation, good.metadata.generation);
    // Accepted and being provisioned (the phase then follows the pods, see
    // tests/reconcile.rs).
    assert!(provisioning(status.phase), "{:?}", status.phase);
    assert_eq!(
        accepted(&status.conditions).unwrap().observed_generation,
        good.metadata.generation
    );

    // The invalid one: Accepted=False with the reason, a Warning event.
    let bad = envtest::eventually("bad-key rejected", WAIT, || async {
        let s = servers.get("bad-key").await.ok()?;
        let status = s.status.clone()?;
        (accepted(&status.conditions)?.status == "False").then_some(s)
    })
    .await;
    let status = bad.status.clone().unwrap();
    let cond = accepted(&status.conditions).unwrap();
    assert_eq!(cond.reason, REASON_INVALID);
    assert!(
        cond.message.contains("spec.ssh.publicKey"),
        "{}",
        cond.message
    );
    assert!(
        cond.message.contains("not an OpenSSH public key"),
        "{}",
        cond.message
    );
    assert_eq!(status.phase, Some(DevServerPhase::Failed));
    assert_eq!(status.observed_generation, Some(1));
    let events: Api<Event> = ns.api();
    let event = envtest::eventually("InvalidSpec event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bad-key")
                && e.reason.as_deref() == Some(REASON_INVALID)
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("spec.ssh.publicKey")
    );

    // Fixing the spec flips the condition at the new generation.
    servers
        .patch(
            "bad-key",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "devserver.io/v1", "kind": "DevServer",
                "spec": { "owner": "bob", "ssh": { "publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 bob@host" } }
            })),
        )
        .await
        .unwrap();
    let fixed = envtest::eventually("bad-key accepted after the fix", WAIT, || async {
        let s = servers.get("bad-key").await.ok()?;
        let status = s.status.clone()?;
        (status.observed_generation == Some(2) && accepted(&status.conditions)?.status == "True")
            .then_some(status)
    })
    .await;
    assert!(provisioning(fixed.phase), "{:?}", fixed.phase);
    assert!(
        !fixed
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("invalid"),
        "{:?}",
        fixed.message
    );

    // Flavor and user: Accepted + observedGeneration.
    let flavors: Api<DevServerFlavor> = Api::all(client.clone());
    let fstatus = envtest::eventually("flavor verdict", WAIT, || async {
        let status = flavors.get(&flavor_name).await.ok()?.status?;
        accepted(&status.conditions).is_some().then_some(status)
    })
    .await;
    let cond = accepted(&fstatus.conditions).unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", REASON_INVALID)
    );
    assert!(
        cond.message.contains("must not exceed the limit (4 > 2)"),
        "{}",
        cond.message
    );
    assert_eq!(fstatus.observed_generation, Some(1));

    let users: Api<DevServerUser> = Api::all(client.clone());
    let ustatus = envtest::eventually("user verdict", WAIT, || async {
        let status = users.get(&user_name).await.ok()?.status?;
        accepted(&status.conditions).is_some().then_some(status)
    })
    .await;
    assert_eq!(accepted(&ustatus.conditions).unwrap().status, "True");
    assert!(
        matches!(
            ustatus.phase,
            Some(DevServerUserPhase::Pending | DevServerUserPhase::Ready)
        ),
        "{:?}",
        ustatus.phase
    );
    assert_eq!(ustatus.observed_generation, Some(1));

    task.abort();
    let _ = flavors.delete(&flavor_name, &DeleteParams::default()).await;
    let _ = users.delete(&user_name, &DeleteParams::default()).await;
}
