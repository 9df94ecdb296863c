//! The Secret that keeps the webhook's CA and serving certificate, so that
//! restarts and replicas share one CA and the webhook configurations'
//! `caBundle` does not flap.
//!
//! Created on first start; two replicas starting together both try, one
//! wins and the other reads the winner's (create answers AlreadyExists).
//! Reused after, with a new serving certificate when it nears expiry or the
//! webhook's names changed (an update with the read resourceVersion: on a
//! conflict the other replica's result is read and used).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::tls::{Certificates, Renewal};

/// Attempts before giving up on a Secret that keeps changing.
const ATTEMPTS: usize = 5;

/// The certificates from the Secret `name`, created or renewed as needed.
pub async fn load_or_create(
    api: &Api<Secret>,
    name: &str,
    hosts: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<Certificates> {
    for _ in 0..ATTEMPTS {
        let Some(stored) = api.get_opt(name).await? else {
            let certs = Certificates::generate(hosts, now)?;
            match api
                .create(&PostParams::default(), &new_secret(name, &certs))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = name, "created the webhook CA and certificate");
                    return Ok(certs);
                }
                // Another replica was first: use its CA.
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let current = Certificates::from_secret_data(&stored.data.clone().unwrap_or_default());
        let (renewed, why) = match current.renewal(hosts, now) {
            Renewal::Keep => return Ok(current),
            Renewal::Serving(why) => (current.with_new_serving(hosts, now)?, why),
            Renewal::All(why) => (Certificates::generate(hosts, now)?, why),
        };
        let mut updated = stored;
        updated.data = Some(renewed.to_secret_data());
        // The read resourceVersion stays: a concurrent renewal conflicts.
        match api.replace(name, &PostParams::default(), &updated).await {
            Ok(_) => {
                tracing::info!(secret = name, reason = %why, "renewed the webhook certificates");
                return Ok(renewed);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the webhook Secret {name} kept changing while it was read; try again")
}

fn new_secret(name: &str, certs: &Certificates) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [
                    ("app.kubernetes.io/name", "novacron-operator"),
                    ("app.kubernetes.io/component", "webhook"),
                    ("app.kubernetes.io/managed-by", "novacron-operator"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(certs.to_secret_data()),
        ..Secret::default()
    }
}
