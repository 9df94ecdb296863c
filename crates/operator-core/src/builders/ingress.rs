//! Ingress for one host with TLS.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::{non_empty, object_meta};

/// How an Ingress path matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PathType {
    /// Matches the path and everything below it, by path element.
    #[default]
    Prefix,
    /// Matches exactly this path.
    Exact,
    /// Up to the Ingress controller.
    ImplementationSpecific,
}

impl PathType {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Prefix => "Prefix",
            PathType::Exact => "Exact",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// A backend Service port, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendPort {
    /// Port number.
    Number(i32),
    /// Port name.
    Name(String),
}

/// One path routed to a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressPath {
    /// The path, e.g. `/` or `/api`.
    pub path: String,
    /// How it matches.
    pub path_type: PathType,
    /// Backend Service name (same namespace).
    pub service: String,
    /// Backend Service port.
    pub port: BackendPort,
}

impl IngressPath {
    /// A `Prefix` path.
    pub fn prefix(path: impl Into<String>, service: impl Into<String>, port: BackendPort) -> Self {
        IngressPath {
            path: path.into(),
            path_type: PathType::Prefix,
            service: service.into(),
            port,
        }
    }
}

/// Parameters for [`ingress`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations (Ingress controllers are configured through them).
    pub annotations: BTreeMap<String, String>,
    /// `ingressClassName`; `None` uses the cluster's default class.
    pub class_name: Option<String>,
    /// The host; `None` matches all hosts.
    pub host: Option<String>,
    /// Paths, in the order given.
    pub paths: Vec<IngressPath>,
    /// Name of a `kubernetes.io/tls` Secret for `host`; `None` serves plain HTTP.
    pub tls_secret: Option<String>,
}

impl IngressParams {
    /// An Ingress for `host` without paths, TLS, class or annotations.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        host: Option<String>,
    ) -> Self {
        IngressParams {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            class_name: None,
            host,
            paths: Vec::new(),
            tls_secret: None,
        }
    }
}

/// The Ingress described by `p`.
pub fn ingress(p: &IngressParams) -> Ingress {
    let mut metadata = object_meta(&p.name, &p.namespace, &p.labels);
    metadata.annotations = non_empty(p.annotations.clone());
    let paths = p
        .paths
        .iter()
        .map(|path| HTTPIngressPath {
            path: Some(path.path.clone()),
            path_type: path.path_type.as_str().to_owned(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: path.service.clone(),
                    port: Some(match &path.port {
                        BackendPort::Number(n) => ServiceBackendPort {
                            number: Some(*n),
                            name: None,
                        },
                        BackendPort::Name(name) => ServiceBackendPort {
                            number: None,
                            name: Some(name.clone()),
                        },
                    }),
                }),
                resource: None,
            },
        })
        .collect();
    let tls = p.tls_secret.as_ref().map(|secret| {
        vec![IngressTLS {
            hosts: p.host.clone().map(|h| vec![h]),
            secret_name: Some(secret.clone()),
        }]
    });
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: p.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: p.host.clone(),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            tls,
            default_backend: None,
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::builders::test_util::labels;

    #[test]
    fn builds_a_whole_ingress_with_tls() {
        let p = IngressParams {
            labels: labels(&[("app.kubernetes.io/instance", "intro")]),
            annotations: labels(&[("nginx.ingress.kubernetes.io/proxy-body-size", "0")]),
            class_name: Some("nginx".into()),
            paths: vec![
                IngressPath::prefix("/", "intro-rstudio", BackendPort::Name("http".into())),
                IngressPath {
                    path_type: PathType::Exact,
                    ..IngressPath::prefix("/healthz", "intro-health", BackendPort::Number(8080))
                },
            ],
            tls_secret: Some("intro-tls".into()),
            ..IngressParams::new("intro", "workshops", Some("intro.example.com".into()))
        };
        assert_eq!(
            serde_json::to_value(ingress(&p)).unwrap(),
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": "intro",
                    "namespace": "workshops",
                    "labels": {"app.kubernetes.io/instance": "intro"},
                    "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}
                },
                "spec": {
                    "ingressClassName": "nginx",
                    "rules": [{
                        "host": "intro.example.com",
                        "http": {"paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "intro-rstudio", "port": {"name": "http"}}}
                            },
                            {
                                "path": "/healthz",
                                "pathType": "Exact",
                                "backend": {"service": {"name": "intro-health", "port": {"number": 8080}}}
                            }
                        ]}
                    }],
                    "tls": [{"hosts": ["intro.example.com"], "secretName": "intro-tls"}]
                }
            })
        );
    }

    #[test]
    fn plain_http_without_host() {
        let p = IngressParams {
            paths: vec![IngressPath::prefix("/", "svc", BackendPort::Number(80))],
            ..IngressParams::new("any", "ns", None)
        };
        let ing = serde_json::to_value(ingress(&p)).unwrap();
        assert!(ing["spec"].get("tls").is_none());
        assert!(ing["spec"].get("ingressClassName").is_none());
        assert!(ing["metadata"].get("annotations").is_none());
        assert_eq!(
            ing["spec"]["rules"],
            json!([{"http": {"paths": [{
                "path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": "svc", "port": {"number": 80}}}
            }]}}])
        );
    }
}
