//! Services: one per participant, plus the original's `<name>-service`.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator_core::builders::{ServiceKind, ServiceParams, ServicePortParams, service as build};

use super::{Names, RSTUDIO_PORT, SERVICE_PORT};

/// `<name>-<id>-service`: port 80 to the participant's RStudio (8787). The Ingress routes here.
pub fn participant(ws: &Names, id: &str) -> Service {
    session_service(
        ws,
        ws.participant_service(id),
        ws.labels("session", Some(id)),
        id,
    )
}

/// `<name>-service`: port 80 to the first participant's RStudio, so the original documents'
/// `kubectl port-forward service/<name>-service 8787:80` keeps working.
pub fn workshop(ws: &Names, first: &str) -> Service {
    session_service(ws, ws.workshop_service(), ws.labels("session", None), first)
}

fn session_service(
    ws: &Names,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    id: &str,
) -> Service {
    let p = ServiceParams {
        labels,
        ports: vec![
            ServicePortParams::tcp("http", SERVICE_PORT).target(IntOrString::Int(RSTUDIO_PORT)),
        ],
        ..ServiceParams::new(
            name,
            &ws.namespace,
            ServiceKind::ClusterIp,
            ws.session_selector(id),
        )
    };
    build(&p)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::build::test_util::{json, labels, names};

    fn expected(name: &str, participant: Option<&str>, selected: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": "class",
                "labels": labels("session", participant),
            },
            "spec": {
                "type": "ClusterIP",
                "selector": {
                    "app.kubernetes.io/name": "rstudio",
                    "app.kubernetes.io/instance": "intro",
                    "app.kubernetes.io/component": "session",
                    "orchestra.io/participant": selected,
                },
                "ports": [{"name": "http", "port": 80, "targetPort": 8787, "protocol": "TCP"}]
            }
        })
    }

    #[test]
    fn participant_service() {
        assert_eq!(
            json(&participant(&names(), "ada")),
            expected("intro-ada-service", Some("ada"), "ada")
        );
    }

    #[test]
    fn the_originals_service_selects_the_first_participant() {
        assert_eq!(
            json(&workshop(&names(), "user1")),
            expected("intro-service", None, "user1")
        );
    }
}
