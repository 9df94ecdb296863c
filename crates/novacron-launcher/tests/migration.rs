//! The migration building blocks against real QEMU: a source VM migrates
//! live to a `-incoming defer` target on this machine (shared disk, zstd
//! multifd compression, bandwidth cap, auto-converge; and again over TLS
//! with x509 certificates made by rcgen), and the target runs.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, require, vm_config};
use novacron_launcher::migration::{self, MigrationOptions, Side};
use novacron_launcher::qemu::{self, HostFacts, ResolvedAccel};
use novacron_launcher::qmp::Qmp;

#[tokio::test]
async fn a_vm_migrates_live_to_a_deferred_incoming_target() {
    let dir = tempfile::tempdir().unwrap();
    let opts = MigrationOptions {
        max_bandwidth_bytes: Some(512 << 20),
        compression: true,
        multifd_channels: Some(2),
        auto_converge: true,
        post_copy: false,
        downtime_limit_ms: Some(500),
        tls_dir: None,
    };
    migrate_locally(dir.path(), &opts).await;
}

#[tokio::test]
async fn a_vm_migrates_live_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    write_tls_files(&tls);
    let opts = MigrationOptions {
        tls_dir: Some(tls),
        ..Default::default()
    };
    migrate_locally(dir.path(), &opts).await;
}

/// CA, server (127.0.0.1) and client certificates in QEMU's file layout.
fn write_tls_files(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "novacron migration CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    std::fs::write(dir.join("ca-cert.pem"), ca_cert.pem()).unwrap();
    let server_sans = vec!["127.0.0.1".to_string(), "localhost".into()];
    let client_sans = vec!["novacron-launcher".to_string()];
    for (name, sans, usage) in [
        ("server", server_sans, ExtendedKeyUsagePurpose::ServerAuth),
        ("client", client_sans, ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}-cert.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

async fn migrate_locally(dir: &Path, opts: &MigrationOptions) {
    require(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
    ]);
    let mut source = vm_config(dir, "mig");
    source.run_dir = dir.join("source");
    let mut target = source.clone();
    target.run_dir = dir.join("target");

    let spawn = |config: &novacron_launcher::config::LaunchConfig, extra: Vec<String>| {
        std::fs::create_dir_all(&config.run_dir).unwrap();
        let mut args = qemu::command_line(
            config,
            &HostFacts {
                accel: ResolvedAccel::Tcg,
                seed_iso: None,
                pci: &[],
            },
        );
        args.extend(extra);
        tokio::process::Command::new("qemu-system-x86_64")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut src_proc = spawn(&source, migration::tls_object_args(opts, Side::Source));
    let mut target_extra = migration::tls_object_args(opts, Side::Target);
    target_extra.extend(migration::incoming_args());
    let mut dst_proc = spawn(&target, target_extra);
    let src = Qmp::connect_with_retry(&source.qmp_socket_path(), Duration::from_secs(30))
        .await
        .unwrap();
    let dst = Qmp::connect_with_retry(&target.qmp_socket_path(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(src.query_status().await.unwrap(), "running");
    assert_eq!(dst.query_status().await.unwrap(), "inmigrate");

    // QEMU accepts the built capabilities and parameters on both sides.
    for q in [&src, &dst] {
        q.execute(
            "migrate-set-capabilities",
            Some(migration::capabilities(opts)),
        )
        .await
        .unwrap();
        q.execute("migrate-set-parameters", Some(migration::parameters(opts)))
            .await
            .unwrap();
    }
    let params = src.execute("query-migrate-parameters", None).await.unwrap();
    if let Some(bw) = opts.max_bandwidth_bytes {
        assert_eq!(params["max-bandwidth"], bw);
    }
    if opts.compression {
        assert_eq!(params["multifd-compression"], "zstd");
    }
    if opts.tls_dir.is_some() {
        assert_eq!(params["tls-creds"], migration::TLS_CREDS_ID);
    }

    let port = free_port();
    dst.execute("migrate-incoming", Some(migration::migrate_incoming(port)))
        .await
        .unwrap();
    src.execute("migrate", Some(migration::migrate("127.0.0.1", port)))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let p = migration::progress(&src.execute("query-migrate", None).await.unwrap());
        if p.is_done() {
            break p;
        }
        assert!(Instant::now() < deadline, "migration did not finish: {p:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.status, "completed", "{done:?}");
    assert_eq!(done.percent, 100.0);
    assert!(done.transferred_bytes > 0);

    let deadline = Instant::now() + Duration::from_secs(30);
    while dst.query_status().await.unwrap() != "running" {
        assert!(Instant::now() < deadline, "target did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(src.query_status().await.unwrap(), "postmigrate");

    for q in [&src, &dst] {
        let _ = q.execute("quit", None).await;
    }
    let _ = src_proc.wait().await;
    let _ = dst_proc.wait().await;
}
