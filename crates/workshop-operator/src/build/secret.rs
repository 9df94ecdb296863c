//! The participant's credentials Secret.
//!
//! The password is generated once by the reconciler and read back from this Secret on every
//! later pass, so it never changes while the Secret exists (it also survives the participant
//! being removed and added again). It never appears in status, events or logs.

use k8s_openapi::api::core::v1::Secret;
use operator_core::builders::{SecretParams, secret};

use super::{Names, PASSWORD_KEY, RSTUDIO_USER, USERNAME_KEY};

/// `<name>-<id>-credentials`: `username` (the RStudio user) and `password`.
pub fn credentials(ws: &Names, id: &str, password: &[u8]) -> Secret {
    let p = SecretParams {
        labels: ws.labels("credentials", Some(id)),
        ..SecretParams::new(ws.secret(id), &ws.namespace)
    }
    .with(USERNAME_KEY, RSTUDIO_USER)
    .with(PASSWORD_KEY, password);
    secret(&p)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::build::test_util::{json, labels, names};

    #[test]
    fn whole_secret() {
        assert_eq!(
            json(&credentials(&names(), "ada", b"s3cret")),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "intro-ada-credentials",
                    "namespace": "class",
                    "labels": labels("credentials", Some("ada")),
                },
                "type": "Opaque",
                "data": {"password": "czNjcmV0", "username": "cnN0dWRpbw=="}
            })
        );
    }
}
