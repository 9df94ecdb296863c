//! The workshop's `networking.k8s.io/v1` Ingress, `<name>-ingress`.
//!
//! - Path routing (default): one rule for `spec.ingress.host` (any host when unset) with a path
//!   `/<id>` (`pathType: Prefix`) per participant to `<name>-<id>-service:80`, which leads to the
//!   participant's path proxy ([`super::proxy`]): it strips the prefix and sets
//!   `X-RStudio-Root-Path`, so no controller-specific rewrite is needed and any conformant
//!   controller works (Traefik as in the original example, ingress-nginx, HAProxy, ...). For
//!   ingress-nginx (class or `kubernetes.io/ingress.class` `nginx`) the builder also raises
//!   the proxy timeouts and body size that RStudio's long polls and uploads need.
//! - Host routing: one rule per participant for `<id>.<host>`, path `/`; no prefix involved.
//!
//! `spec.ingress.annotations` are copied unchanged (they win over the nginx defaults),
//! `ingressClassName` and the TLS Secret come from the spec; with TLS the hosts are listed in
//! `tls[0].hosts` and the reported URLs use https.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use operator_core::builders::object_meta;

use super::{Names, SERVICE_PORT};
use crate::crd::{IngressRouting, WorkshopSpec};
use crate::validate::ValidParticipant;

/// Annotations that make ingress-nginx keep RStudio's long-lived connections open and accept
/// uploads of any size.
pub fn nginx_annotations() -> BTreeMap<String, String> {
    [
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The Ingress, or `None` without `spec.ingress`.
pub fn ingress(
    ws: &Names,
    spec: &WorkshopSpec,
    participants: &[ValidParticipant],
) -> Option<Ingress> {
    let i = spec.ingress.as_ref()?;
    let host = i.host.clone().filter(|h| !h.is_empty());
    let class = i.ingress_class_name.clone().filter(|c| !c.is_empty());
    let nginx = [
        class.as_deref(),
        i.annotations
            .get("kubernetes.io/ingress.class")
            .map(String::as_str),
    ]
    .contains(&Some("nginx"));

    let backend = |id: &str| IngressBackend {
        service: Some(IngressServiceBackend {
            name: ws.participant_service(id),
            port: Some(ServiceBackendPort {
                number: Some(SERVICE_PORT),
                name: None,
            }),
        }),
        resource: None,
    };
    let path = |path: String, path_type: &str, id: &str| HTTPIngressPath {
        path: Some(path),
        path_type: path_type.into(),
        backend: backend(id),
    };
    let (rules, tls_hosts): (Vec<IngressRule>, Vec<String>) = match i.routing {
        IngressRouting::Path => {
            let paths = participants
                .iter()
                .map(|p| path(format!("/{}", p.id), "Prefix", &p.id))
                .collect();
            (
                vec![IngressRule {
                    host: host.clone(),
                    http: Some(HTTPIngressRuleValue { paths }),
                }],
                host.into_iter().collect(),
            )
        }
        IngressRouting::Host => {
            let host = host.unwrap_or_default();
            participants
                .iter()
                .map(|p| {
                    let h = format!("{}.{host}", p.id);
                    (
                        IngressRule {
                            host: Some(h.clone()),
                            http: Some(HTTPIngressRuleValue {
                                paths: vec![path("/".into(), "Prefix", &p.id)],
                            }),
                        },
                        h,
                    )
                })
                .unzip()
        }
    };
    let tls = i
        .tls_secret_name
        .clone()
        .filter(|s| !s.is_empty())
        .map(|secret| {
            vec![IngressTLS {
                hosts: (!tls_hosts.is_empty()).then_some(tls_hosts),
                secret_name: Some(secret),
            }]
        });

    let mut annotations = if nginx {
        nginx_annotations()
    } else {
        BTreeMap::new()
    };
    annotations.extend(i.annotations.clone());
    let mut metadata = object_meta(&ws.ingress(), &ws.namespace, &ws.labels("ingress", None));
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: class,
            rules: Some(rules),
            tls,
            ..IngressSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::build::test_util::{json, labels, names, workshop};
    use crate::validate::validate;

    fn build(spec: Value) -> Value {
        let ws = workshop(spec);
        let v = validate(&ws).unwrap();
        json(&ingress(&names(), &ws.spec, &v.participants).unwrap())
    }

    fn backend(id: &str) -> Value {
        json!({"service": {"name": format!("intro-{id}-service"), "port": {"number": 80}}})
    }

    #[test]
    fn none_without_spec_ingress() {
        let ws = workshop(json!({}));
        assert_eq!(ingress(&names(), &ws.spec, &[]), None);
    }

    #[test]
    fn path_per_participant_with_annotations_passed_through() {
        assert_eq!(
            build(json!({
                "participants": 2,
                "ingress": {"host": "workshop.example.com", "annotations": {"kubernetes.io/ingress.class": "traefik"}}
            })),
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": "intro-ingress",
                    "namespace": "class",
                    "labels": labels("ingress", None),
                    "annotations": {"kubernetes.io/ingress.class": "traefik"}
                },
                "spec": {
                    "rules": [{
                        "host": "workshop.example.com",
                        "http": {"paths": [
                            {"path": "/user1", "pathType": "Prefix", "backend": backend("user1")},
                            {"path": "/user2", "pathType": "Prefix", "backend": backend("user2")}
                        ]}
                    }]
                }
            })
        );
    }

    #[test]
    fn host_per_participant_with_class_and_tls() {
        assert_eq!(
            build(json!({
                "participantList": [{"id": "ada"}, {"id": "grace"}],
                "ingress": {"host": "ws.example.com", "routing": "Host", "ingressClassName": "traefik", "tlsSecretName": "wildcard"}
            }))["spec"],
            json!({
                "ingressClassName": "traefik",
                "rules": [
                    {"host": "ada.ws.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend("ada")}]}},
                    {"host": "grace.ws.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend("grace")}]}}
                ],
                "tls": [{"hosts": ["ada.ws.example.com", "grace.ws.example.com"], "secretName": "wildcard"}]
            })
        );
    }

    #[test]
    fn nginx_gets_long_timeouts_and_user_annotations_win() {
        let i = build(json!({
            "ingress": {
                "host": "ws.example.com",
                "ingressClassName": "nginx",
                "tlsSecretName": "ws-tls",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "86400"}
            }
        }));
        let mut expected = json(&nginx_annotations());
        expected["nginx.ingress.kubernetes.io/proxy-read-timeout"] = "86400".into();
        assert_eq!(i["metadata"]["annotations"], expected);
        assert_eq!(
            i["spec"]["rules"][0]["http"]["paths"][0],
            json!({"path": "/user1", "pathType": "Prefix", "backend": backend("user1")})
        );
        assert_eq!(
            i["spec"]["tls"],
            json!([{"hosts": ["ws.example.com"], "secretName": "ws-tls"}])
        );
    }

    #[test]
    fn any_host_without_a_host() {
        let i = build(json!({"ingress": {}}));
        assert_eq!(i["spec"]["rules"][0].get("host"), None);
        assert_eq!(i["metadata"].get("annotations"), None);
    }
}
