//! Service: ClusterIP, headless and NodePort.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::object_meta;

/// Which kind of Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// A virtual IP inside the cluster.
    #[default]
    ClusterIp,
    /// No virtual IP (`clusterIP: None`): DNS returns the pod addresses (StatefulSet pods get
    /// stable names). `clusterIP` is immutable, so switching kinds means recreating the Service.
    Headless,
    /// A port on every node (`nodePort` on the ports, or allocated by the cluster).
    NodePort,
}

/// A port protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// One Service port.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePortParams {
    /// Port name (required by the API when there is more than one port).
    pub name: String,
    /// The Service port.
    pub port: i32,
    /// The container port (number or name); `None` means the same as `port`.
    pub target_port: Option<IntOrString>,
    /// The node port for [`ServiceKind::NodePort`] (`None`: allocated); ignored for other kinds.
    pub node_port: Option<i32>,
    /// Protocol.
    pub protocol: Protocol,
}

impl ServicePortParams {
    /// A TCP port with the same target port.
    pub fn tcp(name: impl Into<String>, port: i32) -> Self {
        ServicePortParams {
            name: name.into(),
            port,
            target_port: None,
            node_port: None,
            protocol: Protocol::Tcp,
        }
    }

    /// Sets the target (container) port.
    pub fn target(mut self, target_port: IntOrString) -> Self {
        self.target_port = Some(target_port);
        self
    }

    /// Sets the node port (NodePort Services only).
    pub fn node_port(mut self, node_port: i32) -> Self {
        self.node_port = Some(node_port);
        self
    }
}

/// Parameters for [`service`].
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceParams {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Pod selector.
    pub selector: BTreeMap<String, String>,
    /// Kind.
    pub kind: ServiceKind,
    /// Ports, in the order given.
    pub ports: Vec<ServicePortParams>,
    /// Publish addresses of pods that are not ready (useful for headless Services of
    /// StatefulSets whose members must find each other before they are ready).
    pub publish_not_ready_addresses: bool,
}

impl ServiceParams {
    /// A Service of `kind` selecting `selector`, without ports or labels.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        kind: ServiceKind,
        selector: BTreeMap<String, String>,
    ) -> Self {
        ServiceParams {
            name: name.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            selector,
            kind,
            ports: Vec::new(),
            publish_not_ready_addresses: false,
        }
    }
}

/// The Service described by `p`.
pub fn service(p: &ServiceParams) -> Service {
    let (type_, cluster_ip) = match p.kind {
        ServiceKind::ClusterIp => ("ClusterIP", None),
        ServiceKind::Headless => ("ClusterIP", Some("None".to_owned())),
        ServiceKind::NodePort => ("NodePort", None),
    };
    let ports: Vec<ServicePort> = p
        .ports
        .iter()
        .map(|port| ServicePort {
            name: Some(port.name.clone()),
            port: port.port,
            target_port: Some(
                port.target_port
                    .clone()
                    .unwrap_or(IntOrString::Int(port.port)),
            ),
            node_port: port.node_port.filter(|_| p.kind == ServiceKind::NodePort),
            protocol: Some(port.protocol.as_str().to_owned()),
            ..ServicePort::default()
        })
        .collect();
    Service {
        metadata: object_meta(&p.name, &p.namespace, &p.labels),
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            cluster_ip,
            selector: Some(p.selector.clone()),
            ports: (!ports.is_empty()).then_some(ports),
            publish_not_ready_addresses: p.publish_not_ready_addresses.then_some(true),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::builders::test_util::labels;

    fn build(kind: ServiceKind) -> Value {
        let p = ServiceParams {
            labels: labels(&[("app.kubernetes.io/name", "rstudio")]),
            ports: vec![
                ServicePortParams::tcp("http", 80)
                    .target(IntOrString::String("http".into()))
                    .node_port(30080),
                ServicePortParams::tcp("metrics", 9090),
            ],
            ..ServiceParams::new("rs", "ws", kind, labels(&[("app", "rs")]))
        };
        serde_json::to_value(service(&p)).unwrap()
    }

    fn expected(spec_extra: Value, node_port: bool) -> Value {
        let mut http = json!({"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"});
        if node_port {
            http["nodePort"] = json!(30080);
        }
        let mut spec = json!({
            "selector": {"app": "rs"},
            "ports": [
                http,
                {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}
            ]
        });
        spec.as_object_mut()
            .unwrap()
            .extend(spec_extra.as_object().unwrap().clone());
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "rs",
                "namespace": "ws",
                "labels": {"app.kubernetes.io/name": "rstudio"}
            },
            "spec": spec
        })
    }

    #[test]
    fn cluster_ip() {
        assert_eq!(
            build(ServiceKind::ClusterIp),
            expected(json!({"type": "ClusterIP"}), false)
        );
    }

    #[test]
    fn headless() {
        assert_eq!(
            build(ServiceKind::Headless),
            expected(json!({"type": "ClusterIP", "clusterIP": "None"}), false)
        );
        let mut p = ServiceParams::new("h", "ns", ServiceKind::Headless, labels(&[("a", "b")]));
        p.publish_not_ready_addresses = true;
        let svc = serde_json::to_value(service(&p)).unwrap();
        assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
        assert!(svc["spec"].get("ports").is_none());
    }

    #[test]
    fn node_port() {
        assert_eq!(
            build(ServiceKind::NodePort),
            expected(json!({"type": "NodePort"}), true)
        );
    }
}
