//! Services: one per participant, plus the original's `<name>-service`.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator_core::builders::{ServiceKind, ServiceParams, ServicePortParams, service as build};

use super::{Names, RSTUDIO_PORT, SERVICE_PORT, path_proxy, proxy};
use crate::crd::WorkshopSpec;

/// `<name>-<id>-service`: port 80 to the participant's RStudio (8787), or with path routing to
/// the path proxy in front of it (8080). The Ingress routes here.
pub fn participant(ws: &Names, spec: &WorkshopSpec, id: &str) -> Service {
    let target = if path_proxy(spec) {
        proxy::PROXY_PORT
    } else {
        RSTUDIO_PORT
    };
    session_service(
        ws,
        ws.participant_service(id),
        ws.labels("session", Some(id)),
        id,
        target,
    )
}

/// `<name>-service`: port 80 to the first participant's RStudio, so the original documents'
/// `kubectl port-forward service/<name>-service 8787:80` keeps working.
pub fn workshop(ws: &Names, first: &str) -> Service {
    session_service(
        ws,
        ws.workshop_service(),
        ws.labels("session", None),
        first,
        RSTUDIO_PORT,
    )
}

fn session_service(
    ws: &Names,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    id: &str,
    target: i32,
) -> Service {
    let p = ServiceParams {
        labels,
        ports: vec![ServicePortParams::tcp("http", SERVICE_PORT).target(IntOrString::Int(target))],
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

    fn expected(
        name: &str,
        participant: Option<&str>,
        selected: &str,
        target: i32,
    ) -> serde_json::Value {
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
                "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}]
            }
        })
    }

    #[test]
    fn participant_service_to_rstudio_or_the_path_proxy() {
        let spec = crate::build::test_util::workshop(json!({})).spec;
        assert_eq!(
            json(&participant(&names(), &spec, "ada")),
            expected("intro-ada-service", Some("ada"), "ada", 8787)
        );
        let spec =
            crate::build::test_util::workshop(json!({"ingress": {"host": "ws.example.com"}})).spec;
        assert_eq!(
            json(&participant(&names(), &spec, "ada")),
            expected("intro-ada-service", Some("ada"), "ada", 8080)
        );
    }

    #[test]
    fn the_originals_service_selects_the_first_participant() {
        assert_eq!(
            json(&workshop(&names(), "user1")),
            expected("intro-service", None, "user1", 8787)
        );
    }
}
