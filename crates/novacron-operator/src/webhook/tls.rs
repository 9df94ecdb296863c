//! Self-managed webhook certificates and CA injection.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a serving certificate signed by it.
pub struct Certificates {
    pub ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl Certificates {
    /// A fresh CA and a certificate for `hosts` (DNS names or IPs).
    pub fn generate(hosts: &[String]) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "novacron-webhook-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "novacron-webhook");
        let cert = params.signed_by(&key, &ca)?;
        Ok(Certificates {
            ca_pem: ca.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    /// A rustls server configuration serving the certificate.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )?;
        Ok(config)
    }
}

/// Writes `ca_pem` into every webhook of the configurations named `name`.
pub async fn inject_ca(client: &kube::Client, name: &str, ca_pem: &str) -> anyhow::Result<()> {
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    match validating.get_opt(name).await? {
        Some(mut c) => {
            for w in c.webhooks.iter_mut().flatten() {
                w.client_config.ca_bundle = Some(bundle.clone());
            }
            validating.replace(name, &PostParams::default(), &c).await?;
        }
        None => tracing::warn!(
            name,
            "no ValidatingWebhookConfiguration to inject the CA into; admission relies on the CRD's rules"
        ),
    }
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    match mutating.get_opt(name).await? {
        Some(mut c) => {
            for w in c.webhooks.iter_mut().flatten() {
                w.client_config.ca_bundle = Some(bundle.clone());
            }
            mutating.replace(name, &PostParams::default(), &c).await?;
        }
        None => tracing::warn!(
            name,
            "no MutatingWebhookConfiguration to inject the CA into; defaults come from the CRD schema"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_make_a_server_config() {
        let c = Certificates::generate(&["novacron-webhook.ns.svc".into(), "127.0.0.1".into()])
            .unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        c.server_config().unwrap();
    }
}
