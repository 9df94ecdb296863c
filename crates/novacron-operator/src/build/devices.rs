//! Passthrough devices (GPUs, FPGAs) as Kubernetes scheduling constraints:
//! each device becomes an extended-resource request (from a vendor mapping
//! the administrator can extend), its model a node selector, and a
//! toleration for the resource's taint (what the ExtendedResourceToleration
//! admission plugin adds in clusters that enable it), so the VM lands only
//! on a node that has the device.
//!
//! The mapping is a YAML (or JSON) list in `NOVACRON_DEVICE_MAPPING`, e.g.
//!
//! ```yaml
//! - {type: gpu, vendor: nvidia, resource: nvidia.com/gpu, modelLabel: nvidia.com/gpu.product}
//! - {type: fpga, vendor: acme, resource: acme.com/fpga}
//! - {type: gpu, vendor: nvidia, model: a100-mig-1g, resource: nvidia.com/mig-1g.5gb}
//! ```
//!
//! A rule with a `model` applies only to that model and wins over the
//! vendor-wide rule; administrator rules win over the built-in ones.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use serde::{Deserialize, Serialize};

use crate::crd::{Device, DeviceType};

/// One mapping rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceRule {
    /// `gpu` or `fpga`.
    #[serde(rename = "type")]
    pub type_: DeviceType,
    /// Vendor as written in VM specs (compared case-insensitively).
    pub vendor: String,
    /// Only for this model (case-insensitive); unset: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The extended resource requested, e.g. `nvidia.com/gpu`.
    pub resource: String,
    /// Node label that carries the model; unset: the model is not used for
    /// placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_label: Option<String>,
}

/// The vendor/model to resource mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMapping {
    rules: Vec<DeviceRule>,
}

fn rule(type_: DeviceType, vendor: &str, resource: &str, label: Option<&str>) -> DeviceRule {
    DeviceRule {
        type_,
        vendor: vendor.into(),
        model: None,
        resource: resource.into(),
        model_label: label.map(Into::into),
    }
}

impl Default for DeviceMapping {
    /// The device plugins' well-known resources.
    fn default() -> Self {
        DeviceMapping {
            rules: vec![
                rule(
                    DeviceType::Gpu,
                    "nvidia",
                    "nvidia.com/gpu",
                    Some("nvidia.com/gpu.product"),
                ),
                rule(
                    DeviceType::Gpu,
                    "amd",
                    "amd.com/gpu",
                    Some("amd.com/gpu.product-name"),
                ),
                rule(
                    DeviceType::Gpu,
                    "intel",
                    "gpu.intel.com/i915",
                    Some("gpu.intel.com/device-id"),
                ),
                rule(DeviceType::Fpga, "xilinx", "xilinx.com/fpga", None),
                rule(DeviceType::Fpga, "amd", "amd.com/xilinx_fpga", None),
                rule(DeviceType::Fpga, "intel", "fpga.intel.com/region", None),
            ],
        }
    }
}

/// What the devices of one VM need from the launcher pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedDevices {
    /// Extended resources and how many of each (requests = limits).
    pub resources: BTreeMap<String, i64>,
    /// Node labels the node must have (the models).
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for the resources' taints.
    pub tolerations: Vec<Toleration>,
    /// For the launcher: kind and extended resource, once per resource in
    /// spec order (the device plugin lists every allocated device of the
    /// resource in one variable; the launcher passes all of them through).
    pub host_devices: Vec<(DeviceType, String)>,
}

impl DeviceMapping {
    /// Parses administrator rules (YAML or JSON list); they take precedence
    /// over the built-in ones.
    pub fn with_rules_yaml(text: &str) -> Result<Self, String> {
        let extra: Vec<DeviceRule> =
            serde_yaml::from_str(text).map_err(|e| format!("invalid device mapping: {e}"))?;
        for r in &extra {
            if !crate::validate::is_qualified_name(&r.resource) || !r.resource.contains('/') {
                return Err(format!(
                    "invalid device mapping: resource {:?} is not an extended resource name like vendor.com/gpu",
                    r.resource
                ));
            }
        }
        let mut rules = extra;
        rules.extend(DeviceMapping::default().rules);
        Ok(DeviceMapping { rules })
    }

    fn find(&self, d: &Device) -> Option<&DeviceRule> {
        let vendor = d.vendor.as_deref().unwrap_or("");
        let model = d.model.as_deref();
        let candidates = self
            .rules
            .iter()
            .filter(|r| r.type_ == d.type_ && r.vendor.eq_ignore_ascii_case(vendor));
        let mut vendor_wide = None;
        for r in candidates {
            match (&r.model, model) {
                (Some(rm), Some(m)) if rm.eq_ignore_ascii_case(m) => return Some(r),
                (None, _) if vendor_wide.is_none() => vendor_wide = Some(r),
                _ => {}
            }
        }
        vendor_wide
    }

    /// The constraints for `devices`, or a message naming the device that
    /// cannot be placed.
    pub fn resolve(&self, devices: &[Device]) -> Result<ResolvedDevices, String> {
        let mut out = ResolvedDevices::default();
        for (i, d) in devices.iter().enumerate() {
            let kind = match d.type_ {
                DeviceType::Gpu => "gpu",
                DeviceType::Fpga => "fpga",
            };
            let Some(r) = self.find(d) else {
                return Err(format!(
                    "spec.template.spec.devices[{i}]: no device mapping for {kind} vendor {:?}; the operator knows {}; an administrator can add one in NOVACRON_DEVICE_MAPPING",
                    d.vendor.as_deref().unwrap_or(""),
                    self.vendors(d.type_)
                ));
            };
            *out.resources.entry(r.resource.clone()).or_default() += i64::from(d.count);
            if let (Some(label), Some(model)) = (&r.model_label, &d.model) {
                if let Some(other) = out.node_selector.get(label)
                    && other != model
                {
                    return Err(format!(
                        "spec.template.spec.devices[{i}]: model {model:?} and model {other:?} cannot be on one node ({label} has one value)"
                    ));
                }
                out.node_selector.insert(label.clone(), model.clone());
            }
            let toleration = Toleration {
                key: Some(r.resource.clone()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            };
            if !out.tolerations.contains(&toleration) {
                out.tolerations.push(toleration);
            }
            let host = (d.type_, r.resource.clone());
            if !out.host_devices.contains(&host) {
                out.host_devices.push(host);
            }
        }
        Ok(out)
    }

    fn vendors(&self, t: DeviceType) -> String {
        let mut v: Vec<&str> = self
            .rules
            .iter()
            .filter(|r| r.type_ == t)
            .map(|r| r.vendor.as_str())
            .collect();
        v.sort();
        v.dedup();
        v.join(", ")
    }
}

/// The environment variable through which a device plugin hands the PCI
/// addresses of the allocated devices of `resource` to the container
/// (KubeVirt's convention: `PCI_RESOURCE_` and the resource name upper-cased
/// with `.` and `/` as `_`).
pub fn pci_resource_env(resource: &str) -> String {
    let mut s = String::from("PCI_RESOURCE_");
    s.extend(resource.chars().map(|c| match c {
        '.' | '/' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(t: DeviceType, vendor: &str, model: Option<&str>, count: i32) -> Device {
        Device {
            type_: t,
            vendor: Some(vendor.into()),
            model: model.map(Into::into),
            count,
        }
    }

    #[test]
    fn nvidia_gpus_request_nvidia_com_gpu_with_the_model_as_selector() {
        let r = DeviceMapping::default()
            .resolve(&[dev(DeviceType::Gpu, "NVIDIA", Some("tesla-t4"), 2)])
            .unwrap();
        assert_eq!(r.resources, BTreeMap::from([("nvidia.com/gpu".into(), 2)]));
        assert_eq!(
            r.node_selector,
            BTreeMap::from([("nvidia.com/gpu.product".into(), "tesla-t4".into())])
        );
        assert_eq!(r.tolerations.len(), 1);
        assert_eq!(r.tolerations[0].key.as_deref(), Some("nvidia.com/gpu"));
        assert_eq!(
            r.host_devices,
            vec![(DeviceType::Gpu, "nvidia.com/gpu".to_owned())]
        );
    }

    #[test]
    fn administrator_rules_win_and_model_rules_beat_vendor_rules() {
        let m = DeviceMapping::with_rules_yaml(
            "- {type: gpu, vendor: nvidia, model: a100-mig, resource: nvidia.com/mig-1g.5gb}\n- {type: fpga, vendor: acme, resource: acme.com/fpga, modelLabel: acme.com/model}\n",
        )
        .unwrap();
        let r = m
            .resolve(&[
                dev(DeviceType::Gpu, "nvidia", Some("a100-mig"), 1),
                dev(DeviceType::Gpu, "nvidia", None, 1),
                dev(DeviceType::Fpga, "acme", Some("u250"), 1),
            ])
            .unwrap();
        assert_eq!(
            r.resources,
            BTreeMap::from([
                ("acme.com/fpga".into(), 1),
                ("nvidia.com/gpu".into(), 1),
                ("nvidia.com/mig-1g.5gb".into(), 1)
            ])
        );
        assert_eq!(r.node_selector["acme.com/model"], "u250");
        assert_eq!(r.tolerations.len(), 3);
    }

    #[test]
    fn unknown_vendors_and_conflicting_models_are_explained() {
        let e = DeviceMapping::default()
            .resolve(&[dev(DeviceType::Fpga, "acme", None, 1)])
            .unwrap_err();
        assert!(e.contains("devices[0]") && e.contains("\"acme\""), "{e}");
        assert!(e.contains("xilinx"), "{e}");
        let e = DeviceMapping::default()
            .resolve(&[
                dev(DeviceType::Gpu, "nvidia", Some("t4"), 1),
                dev(DeviceType::Gpu, "nvidia", Some("a100"), 1),
            ])
            .unwrap_err();
        assert!(e.contains("devices[1]"), "{e}");
        assert!(DeviceMapping::with_rules_yaml("- {type: gpu}").is_err());
        assert!(
            DeviceMapping::with_rules_yaml("- {type: gpu, vendor: x, resource: 'no slash'}")
                .is_err()
        );
    }

    #[test]
    fn pci_env_names() {
        assert_eq!(
            pci_resource_env("nvidia.com/gpu"),
            "PCI_RESOURCE_NVIDIA_COM_GPU"
        );
    }
}
