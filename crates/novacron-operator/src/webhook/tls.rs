//! Self-managed webhook certificates (a CA and a serving certificate it
//! signs), when they must be renewed, and CA injection into the webhook
//! configurations.
//!
//! The certificates are kept in a Secret (see [`super::secret`]) so that
//! restarts and replicas share one CA; this module is pure apart from
//! [`inject_ca`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Secret keys of the CA certificate and key, and of the serving pair (the
/// usual `kubernetes.io/tls` names).
pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const CERT_KEY: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";

/// How long a new CA is valid.
const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// How long a new serving certificate is valid.
const SERVING_VALIDITY_DAYS: i64 = 365;
/// Certificates expiring within this many days are replaced.
pub const RENEW_BEFORE_DAYS: i64 = 30;
const CA_NAME: &str = "novacron-webhook-ca";

/// The webhook's certificates, PEM encoded (what the Secret holds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Certificates {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a stored set of certificates needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Good as it is.
    Keep,
    /// A new serving certificate from the same CA (why).
    Serving(String),
    /// A new CA and serving certificate (why).
    All(String),
}

/// Valid from yesterday (clock skew) for `days` (whole days: rcgen's
/// dates).
fn set_validity(params: &mut CertificateParams, now: DateTime<Utc>, days: i64) {
    let ymd = |t: DateTime<Utc>| {
        let d = t.date_naive();
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = ymd(now - chrono::Duration::days(1));
    params.not_after = ymd(now + chrono::Duration::days(days));
}

impl Certificates {
    /// A fresh CA and a serving certificate for `hosts` (DNS names or IPs).
    pub fn generate(hosts: &[String], now: DateTime<Utc>) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, CA_NAME);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now, CA_VALIDITY_DAYS);
        let ca = CertifiedIssuer::self_signed(params, ca_key)?;
        let mut certs = Certificates {
            ca_pem: ca.pem(),
            ca_key_pem: ca.key().serialize_pem(),
            ..Certificates::default()
        };
        certs.sign_serving(&ca, hosts, now)?;
        Ok(certs)
    }

    /// The same CA with a new serving certificate for `hosts`.
    pub fn with_new_serving(&self, hosts: &[String], now: DateTime<Utc>) -> anyhow::Result<Self> {
        let ca = Issuer::from_ca_cert_pem(&self.ca_pem, KeyPair::from_pem(&self.ca_key_pem)?)?;
        let mut certs = self.clone();
        certs.sign_serving(&ca, hosts, now)?;
        Ok(certs)
    }

    fn sign_serving(
        &mut self,
        ca: &Issuer<'_, KeyPair>,
        hosts: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "novacron-webhook");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, now, SERVING_VALIDITY_DAYS);
        let cert = params.signed_by(&key, ca)?;
        self.cert_pem = cert.pem();
        self.key_pem = key.serialize_pem();
        Ok(())
    }

    /// From a Secret's data (missing keys read as empty, which
    /// [`Certificates::renewal`] replaces).
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Self {
        let text = |k: &str| {
            data.get(k)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default()
        };
        Certificates {
            ca_pem: text(CA_CERT_KEY),
            ca_key_pem: text(CA_KEY_KEY),
            cert_pem: text(CERT_KEY),
            key_pem: text(KEY_KEY),
        }
    }

    /// As a Secret's data.
    pub fn to_secret_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT_KEY, &self.ca_pem),
            (CA_KEY_KEY, &self.ca_key_pem),
            (CERT_KEY, &self.cert_pem),
            (KEY_KEY, &self.key_pem),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }

    /// Whether these (stored) certificates serve `hosts` past the renewal
    /// margin: a CA that is unreadable, does not match its key or expires
    /// soon is replaced with everything; a serving certificate that is
    /// unreadable, not signed by the CA, not for its key, for other names or
    /// expiring soon is re-issued.
    pub fn renewal(&self, hosts: &[String], now: DateTime<Utc>) -> Renewal {
        let horizon = (now + chrono::Duration::days(RENEW_BEFORE_DAYS)).timestamp();
        let Some(ca_der) = der(&self.ca_pem) else {
            return Renewal::All("no readable CA certificate".into());
        };
        let Ok((_, ca)) = X509Certificate::from_der(&ca_der) else {
            return Renewal::All("the CA certificate does not parse".into());
        };
        if !ca.is_ca() || !key_matches(&self.ca_key_pem, &ca) {
            return Renewal::All("the CA certificate and key do not belong together".into());
        }
        if ca.validity().not_after.timestamp() < horizon {
            return Renewal::All(format!("the CA expires within {RENEW_BEFORE_DAYS} days"));
        }
        let Some(cert_der) = der(&self.cert_pem) else {
            return Renewal::Serving("no readable serving certificate".into());
        };
        let Ok((_, cert)) = X509Certificate::from_der(&cert_der) else {
            return Renewal::Serving("the serving certificate does not parse".into());
        };
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return Renewal::Serving("the serving certificate is not signed by the CA".into());
        }
        if !key_matches(&self.key_pem, &cert) {
            return Renewal::Serving("the serving key does not match its certificate".into());
        }
        if cert.validity().not_after.timestamp() < horizon {
            return Renewal::Serving(format!(
                "the serving certificate expires within {RENEW_BEFORE_DAYS} days"
            ));
        }
        let want: BTreeSet<String> = hosts.iter().map(|h| normalize(h)).collect();
        let have = names(&cert);
        if have != want {
            return Renewal::Serving(format!(
                "the serving certificate is for {have:?}, the webhook is reached as {want:?}"
            ));
        }
        Renewal::Keep
    }

    /// A rustls server configuration serving the certificate.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(config)
    }
}

/// The DER of the first certificate in `pem`.
fn der(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

/// Whether `key_pem` is the private key of `cert`.
fn key_matches(key_pem: &str, cert: &X509Certificate<'_>) -> bool {
    KeyPair::from_pem(key_pem)
        .is_ok_and(|k| k.public_key_raw() == cert.public_key().subject_public_key.data.as_ref())
}

/// A host as a certificate names it (IPs in canonical form).
fn normalize(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_owned(),
    }
}

/// The DNS names and IPs a certificate is for.
fn names(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Writes `ca_pem` into every webhook of the configurations named `name`,
/// only where it differs (replicas starting together converge on one CA,
/// so the second finds nothing to change). A concurrent write is retried
/// on the fresh object.
pub async fn inject_ca(client: &kube::Client, name: &str, ca_pem: &str) -> anyhow::Result<()> {
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let injected = inject_into(&validating, name, ca_pem, |c| {
        c.webhooks
            .iter_mut()
            .flatten()
            .map(|w| &mut w.client_config.ca_bundle)
            .collect()
    })
    .await?;
    if injected.is_none() {
        tracing::warn!(
            name,
            "no ValidatingWebhookConfiguration to inject the CA into; admission relies on the CRD's rules"
        );
    }
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let injected = inject_into(&mutating, name, ca_pem, |c| {
        c.webhooks
            .iter_mut()
            .flatten()
            .map(|w| &mut w.client_config.ca_bundle)
            .collect()
    })
    .await?;
    if injected.is_none() {
        tracing::warn!(
            name,
            "no MutatingWebhookConfiguration to inject the CA into; defaults come from the CRD schema"
        );
    }
    Ok(())
}

/// Sets the bundles `bundles` finds in the configuration `name`; `None`
/// when it does not exist, `Some(changed)` otherwise.
async fn inject_into<K>(
    api: &Api<K>,
    name: &str,
    ca_pem: &str,
    bundles: impl Fn(&mut K) -> Vec<&mut Option<ByteString>>,
) -> anyhow::Result<Option<bool>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    for _ in 0..5 {
        let Some(mut config) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let mut changed = false;
        for b in bundles(&mut config) {
            if b.as_ref() != Some(&bundle) {
                *b = Some(bundle.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(Some(false));
        }
        match api.replace(name, &PostParams::default(), &config).await {
            Ok(_) => return Ok(Some(true)),
            // Written by someone else since the read: look again.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the webhook configuration {name} kept changing while the CA was injected")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hosts() -> Vec<String> {
        vec!["novacron-webhook.ns.svc".into(), "127.0.0.1".into()]
    }

    fn at(days: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap() + chrono::Duration::days(days)
    }

    #[test]
    fn generated_certificates_serve_and_are_kept() {
        let c = Certificates::generate(&hosts(), at(0)).unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        c.server_config().unwrap();
        assert_eq!(c.renewal(&hosts(), at(0)), Renewal::Keep);
        // The order of the names does not matter.
        let mut reversed = hosts();
        reversed.reverse();
        assert_eq!(c.renewal(&reversed, at(0)), Renewal::Keep);
        // Through the Secret's data and back.
        let back = Certificates::from_secret_data(&c.to_secret_data());
        assert_eq!(back, c);
    }

    #[test]
    fn the_serving_certificate_is_renewed_30_days_before_it_expires() {
        let c = Certificates::generate(&hosts(), at(0)).unwrap();
        assert_eq!(
            c.renewal(&hosts(), at(SERVING_VALIDITY_DAYS - 31)),
            Renewal::Keep
        );
        let later = at(SERVING_VALIDITY_DAYS - 29);
        assert!(
            matches!(c.renewal(&hosts(), later), Renewal::Serving(ref m) if m.contains("expires")),
            "{:?}",
            c.renewal(&hosts(), later)
        );
        let renewed = c.with_new_serving(&hosts(), later).unwrap();
        assert_eq!(renewed.ca_pem, c.ca_pem);
        assert_eq!(renewed.ca_key_pem, c.ca_key_pem);
        assert_ne!(renewed.cert_pem, c.cert_pem);
        assert_eq!(renewed.renewal(&hosts(), later), Renewal::Keep);
        renewed.server_config().unwrap();
    }

    #[test]
    fn other_names_need_a_new_serving_certificate() {
        let c = Certificates::generate(&hosts(), at(0)).unwrap();
        let mut more = hosts();
        more.push("novacron-webhook.other.svc".into());
        assert!(matches!(c.renewal(&more, at(0)), Renewal::Serving(_)));
        assert!(matches!(
            c.renewal(&hosts()[..1], at(0)),
            Renewal::Serving(_)
        ));
        let renewed = c.with_new_serving(&more, at(0)).unwrap();
        assert_eq!(renewed.renewal(&more, at(0)), Renewal::Keep);
    }

    #[test]
    fn a_broken_or_expiring_ca_is_replaced() {
        let c = Certificates::generate(&hosts(), at(0)).unwrap();
        assert!(matches!(
            c.renewal(&hosts(), at(CA_VALIDITY_DAYS - 10)),
            Renewal::All(_)
        ));
        let empty = Certificates::default();
        assert!(matches!(empty.renewal(&hosts(), at(0)), Renewal::All(_)));
        let other = Certificates::generate(&hosts(), at(0)).unwrap();
        // A CA with another CA's key.
        let mixed = Certificates {
            ca_key_pem: other.ca_key_pem.clone(),
            ..c.clone()
        };
        assert!(matches!(mixed.renewal(&hosts(), at(0)), Renewal::All(_)));
        // A serving certificate of another CA, or with another key.
        let foreign = Certificates {
            cert_pem: other.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
            ..c.clone()
        };
        assert!(
            matches!(foreign.renewal(&hosts(), at(0)), Renewal::Serving(ref m) if m.contains("signed"))
        );
        let wrong_key = Certificates {
            key_pem: other.key_pem.clone(),
            ..c.clone()
        };
        assert!(
            matches!(wrong_key.renewal(&hosts(), at(0)), Renewal::Serving(ref m) if m.contains("key"))
        );
        let no_serving = Certificates {
            cert_pem: String::new(),
            ..c
        };
        assert!(matches!(
            no_serving.renewal(&hosts(), at(0)),
            Renewal::Serving(_)
        ));
    }
}
