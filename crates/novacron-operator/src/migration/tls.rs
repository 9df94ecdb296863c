//! Operator-managed certificates of encrypted migrations: per VM, a CA, a
//! server certificate (the target's QEMU) and a client certificate (the
//! source's QEMU), in QEMU's file layout, in the Secret `<vm>-migration-tls`
//! that the VM owns. Every launcher pod of a VM whose policy migrates
//! encrypted mounts it at [`MIGRATION_TLS_DIR`]: the source pod runs long
//! before any migration and a running pod cannot gain a volume, so the
//! Secret is per VM, not per migration. It is renewed (new CA, new pair)
//! [`RENEW_BEFORE_DAYS`] days before it expires; the kubelet refreshes the
//! mounted files of running pods.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use novacron_launcher::config::LaunchConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

use crate::build::{Names, labels};
use crate::crd::{MigrationPolicy, VirtualMachine};

/// Where launcher pods mount the VM's migration certificates (outside the
/// launch ConfigMap's mount: a read-only volume cannot hold a mount point).
pub const MIGRATION_TLS_DIR: &str = "/etc/novacron-migration-tls";
/// Annotation on the Secret: when its certificates expire (RFC 3339).
pub const NOT_AFTER_ANNOTATION: &str = "novacron.io/not-after";
/// Validity of a certificate set.
pub const VALIDITY_DAYS: i64 = 365;
/// Renewal margin.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Field manager of the Secret.
pub const MANAGER: &str = "novacron-operator/migration-tls";

/// Whether the VM's launchers need the certificates.
pub fn encrypted(policy: &MigrationPolicy) -> bool {
    policy.allow_live_migration && policy.encrypted
}

/// `config` with the certificate directory set when the policy migrates
/// encrypted (the pod builder mounts the Secret where it is set).
pub fn with_migration_tls(mut config: LaunchConfig, policy: &MigrationPolicy) -> LaunchConfig {
    if encrypted(policy) {
        config.migration_tls_dir = Some(MIGRATION_TLS_DIR.into());
    }
    config
}

/// A fresh CA, server and client certificate for VM `vm` in `namespace`,
/// valid from the day before `now` for [`VALIDITY_DAYS`]: QEMU's file names
/// to PEM text.
pub fn certificates(
    vm: &str,
    namespace: &str,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, String>, rcgen::Error> {
    // Whole days (rcgen's date helper; chrono dates are always in range).
    let ymd = |t: DateTime<Utc>| date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    let not_before = ymd(now - chrono::Duration::days(1));
    let not_after = ymd(now + chrono::Duration::days(VALIDITY_DAYS));
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("novacron migration CA {namespace}/{vm}"),
    );
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut files = BTreeMap::from([("ca-cert.pem".to_owned(), ca.pem())]);
    let server_name = super::plan::tls_hostname(vm, namespace);
    for (side, sans, usage) in [
        (
            "server",
            vec![server_name],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            "client",
            vec![format!("{vm}.{namespace}.client.migration.novacron.io")],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ] {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("novacron migration {side} {namespace}/{vm}"),
        );
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &ca)?;
        files.insert(format!("{side}-cert.pem"), cert.pem());
        files.insert(format!("{side}-key.pem"), key.serialize_pem());
    }
    Ok(files)
}

/// Whether the Secret holds a complete set that is not about to expire.
pub fn current(secret: &Secret, now: DateTime<Utc>) -> bool {
    let complete = [
        "ca-cert.pem",
        "server-cert.pem",
        "server-key.pem",
        "client-cert.pem",
        "client-key.pem",
    ]
    .iter()
    .all(|k| secret.data.as_ref().is_some_and(|d| d.contains_key(*k)));
    let fresh = secret
        .annotations()
        .get(NOT_AFTER_ANNOTATION)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.with_timezone(&Utc) - now > chrono::Duration::days(RENEW_BEFORE_DAYS));
    complete && fresh
}

/// The Secret for `vm` holding `files`.
pub fn secret(vm: &VirtualMachine, files: BTreeMap<String, String>, now: DateTime<Utc>) -> Secret {
    let name = vm.name_any();
    let not_after = now + chrono::Duration::days(VALIDITY_DAYS);
    let mut labels = labels(&name, "migration-tls");
    if let Some(uid) = vm.uid() {
        labels.insert(operator_core::apply::OWNER_UID_LABEL.into(), uid);
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(Names::of(&name).migration_tls()),
            namespace: vm.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                NOT_AFTER_ANNOTATION.to_owned(),
                not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )])),
            owner_references: vm.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            files
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Makes sure the VM's certificate Secret exists and is current.
pub async fn ensure(client: &kube::Client, vm: &VirtualMachine) -> anyhow::Result<()> {
    let now = Utc::now();
    let ns = vm.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = Names::of(&vm.name_any()).migration_tls();
    if let Some(s) = api.get_opt(&name).await?
        && current(&s, now)
    {
        return Ok(());
    }
    let files = certificates(&vm.name_any(), &ns, now)?;
    let mut secret = secret(vm, files, now);
    secret.metadata.managed_fields = None;
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    tracing::info!(vm = %vm.name_any(), secret = %name, "migration certificates issued");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_chain_to_their_ca_in_qemu_layout() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let files = certificates("web", "prod", now).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            [
                "ca-cert.pem",
                "client-cert.pem",
                "client-key.pem",
                "server-cert.pem",
                "server-key.pem"
            ]
        );
        for (k, v) in &files {
            assert!(v.starts_with("-----BEGIN "), "{k}");
        }
        // The server certificate names what the source checks.
        let pem = &files["server-cert.pem"];
        let der = rustls_pemfile_der(pem);
        let needle = plan_hostname();
        assert!(
            der.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the server certificate lacks {needle}"
        );
    }

    fn plan_hostname() -> String {
        super::super::plan::tls_hostname("web", "prod")
    }

    /// The DER bytes of one PEM block (base64 between the armor lines).
    fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }

    #[test]
    fn the_secret_is_renewed_before_it_expires() {
        let vm: VirtualMachine = serde_json::from_value(serde_json::json!({
            "apiVersion": "novacron.io/v1alpha1", "kind": "VirtualMachine",
            "metadata": {"name": "web", "namespace": "prod", "uid": "vm-uid"},
            "spec": {},
        }))
        .unwrap();
        let now = Utc::now();
        let s = secret(&vm, certificates("web", "prod", now).unwrap(), now);
        assert_eq!(s.metadata.name.as_deref(), Some("web-migration-tls"));
        assert_eq!(
            s.metadata.owner_references.as_ref().unwrap()[0].uid,
            "vm-uid"
        );
        assert!(current(&s, now));
        assert!(current(&s, now + chrono::Duration::days(300)));
        assert!(!current(&s, now + chrono::Duration::days(340)));
        let mut partial = s.clone();
        partial.data.as_mut().unwrap().remove("client-key.pem");
        assert!(!current(&partial, now));
    }

    #[test]
    fn launcher_pods_of_encrypted_migratable_vms_mount_the_certificates() {
        use crate::build::devices::ResolvedDevices;
        use crate::build::pod::{PodInput, PodSettings, launcher_pod};
        use crate::crd::VmSpec;
        let policy = MigrationPolicy {
            allow_live_migration: true,
            ..MigrationPolicy::default()
        };
        let spec = VmSpec::default();
        let build = |config: &LaunchConfig| {
            serde_json::to_value(launcher_pod(&PodInput {
                config,
                spec: &spec,
                metadata: None,
                interfaces: &[],
                devices: &ResolvedDevices::default(),
                settings: &PodSettings::default(),
            }))
            .unwrap()
        };
        let plain = LaunchConfig::new("web", "prod", "u", 1, 1 << 30);
        let v = build(&with_migration_tls(plain.clone(), &policy));
        let vols = v["spec"]["volumes"].as_array().unwrap();
        assert!(
            vols.iter()
                .any(|v| v["secret"]["secretName"] == "web-migration-tls"),
            "{vols:?}"
        );
        let mounts = v["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["mountPath"] == MIGRATION_TLS_DIR && m["readOnly"] == true)
        );
        // VMs that never migrate encrypted keep their pod (and spec hash).
        let v = build(&plain);
        let text = v.to_string();
        assert!(!text.contains("migration-tls"), "{text}");
    }

    #[test]
    fn only_encrypted_migratable_vms_get_a_directory() {
        let config = LaunchConfig::new("web", "prod", "u", 1, 1 << 30);
        let mut p = MigrationPolicy::default();
        assert_eq!(
            with_migration_tls(config.clone(), &p).migration_tls_dir,
            None
        );
        p.allow_live_migration = true;
        assert_eq!(
            with_migration_tls(config.clone(), &p).migration_tls_dir,
            Some(MIGRATION_TLS_DIR.into())
        );
        p.encrypted = false;
        assert_eq!(with_migration_tls(config, &p).migration_tls_dir, None);
    }
}
