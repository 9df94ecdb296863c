//! `novacron.io/v1alpha1` VirtualMachine: every field of the original NovaCron
//! document (so its manifests apply unchanged), plus what running VMs for real
//! needs (run strategy, tolerations, cloud-init from a Secret, stable MACs,
//! a grace period) and the status the VM and migration/snapshot controllers
//! report.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use kube::{CustomResource, KubeSchema};
use operator_core::duration::DURATION_PATTERN;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MigrationPhase;

/// A non-negative `resource.Quantity` in string form (the API server does
/// not check quantities in custom resources by itself).
pub const QUANTITY_PATTERN: &str = r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[mkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// The desired state of a virtual machine: whether it runs, what it is made
/// of (`template`), and how it is migrated, snapshotted and updated.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "novacron.io",
    version = "v1alpha1",
    kind = "VirtualMachine",
    plural = "virtualmachines",
    singular = "virtualmachine",
    namespaced,
    shortname = "vm",
    shortname = "vms",
    category = "novacron",
    status = "VirtualMachineStatus",
    doc = "A QEMU/KVM virtual machine run by the NovaCron operator in a launcher pod.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase of the VM"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName", description = "Node the VM runs on"),
    printcolumn(name = "IP", type_ = "string", json_path = ".status.ipAddresses[0]", description = "First IP address of the VM"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "CPUs", type_ = "integer", json_path = ".spec.template.spec.resources.cpu", description = "Virtual CPUs", priority = 1),
    printcolumn(name = "Memory", type_ = "string", json_path = ".spec.template.spec.resources.memory", description = "Guest memory", priority = 1),
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.template.spec.image.source", description = "Root disk image", priority = 1),
    printcolumn(name = "Import", type_ = "string", json_path = ".status.import.progress", description = "Progress of the root disk's image import", priority = 1),
    selectable = ".status.nodeName",
    selectable = ".status.phase",
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("a VirtualMachine name must be a DNS label (at most 63 lowercase letters, digits and '-'): it becomes the guest host name and a label value"),
)]
#[x_kube(validation = Rule::new("!(has(self.running) && has(self.runStrategy))")
    .message("set either spec.running or spec.runStrategy, not both"))]
#[x_kube(validation = Rule::new("has(self.template) || !((has(self.running) && self.running) || (has(self.runStrategy) && self.runStrategy != 'Halted'))")
    .message("spec.template is required to run the VM").field_path(".template").reason(kube::core::Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    /// Whether the VM should be running: `true` starts it, `false` shuts it
    /// down gracefully (ACPI power-down, then a forced stop after
    /// `terminationGracePeriodSeconds`). Unset means not running unless
    /// `runStrategy` says otherwise. Mutually exclusive with `runStrategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,

    /// What to do about the VM's run state, as an alternative to `running`:
    /// `Always` keeps it running and restarts it whenever it stops (same as
    /// `running: true`), `RerunOnFailure` restarts it only after a failure (a
    /// guest shutdown leaves it stopped), `Halted` keeps it stopped (same as
    /// `running: false`). Mutually exclusive with `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<RunStrategy>,

    /// The VM itself: metadata for its launcher pod and the machine
    /// specification (resources, image, networks, disks, devices, cloud-init,
    /// placement, hooks). Required to run the VM; it may be left out of
    /// manifests that only set policies on an existing VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<VirtualMachineTemplate>,

    /// Live migration behaviour: whether the VM may be live-migrated (by a
    /// VirtualMachineMigration or when its node is drained) and with which
    /// transfer parameters.
    #[serde(default)]
    pub migration_policy: MigrationPolicy,

    /// Scheduled snapshots of the VM's disks (CSI VolumeSnapshots) with
    /// retention. No snapshots are taken when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_policy: Option<SnapshotPolicy>,

    /// How changes to `template` reach a running VM.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
}

/// The run strategy of a VM (alternative to `running`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunStrategy {
    Always,
    RerunOnFailure,
    Halted,
}

/// The VM definition: metadata and machine specification.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineTemplate {
    /// Labels and annotations put on the VM's launcher pod (for example
    /// Multus or monitoring annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<VmMetadata>,

    /// The machine specification.
    pub spec: VmSpec,
}

/// Labels and annotations for the VM's launcher pod.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmMetadata {
    /// Labels added to the launcher pod (the operator's own labels win on
    /// conflict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to the launcher pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The machine specification of a VM.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!(has(self.userData) && has(self.userDataSecretRef))")
    .message("set either userData or userDataSecretRef, not both"))]
#[serde(rename_all = "camelCase")]
pub struct VmSpec {
    /// Virtual CPUs, memory and root disk size.
    pub resources: VmResources,

    /// Where the root disk comes from.
    pub image: VmImage,

    /// Network interfaces, in guest order. When empty the VM gets one
    /// interface on the pod network (masquerade). A network named `default`
    /// without `networkAttachment` is the pod network; any other network is
    /// attached through a Multus NetworkAttachmentDefinition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub networks: Vec<Network>,

    /// Additional data disks, each a PersistentVolumeClaim owned by the VM,
    /// attached after the root disk in list order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub volumes: Vec<Volume>,

    /// Access mode of the root disk claim (default `ReadWriteOnce`). Live
    /// migration needs `ReadWriteMany`: the source and the target launcher
    /// attach the disk on two nodes at once while the VM moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk_access_mode: Option<AccessMode>,

    /// Host devices passed through to the VM (GPUs, FPGAs). They become
    /// extended-resource requests on the launcher pod, so the VM lands only on
    /// nodes that have them. VMs with passthrough devices cannot be
    /// live-migrated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub devices: Vec<Device>,

    /// cloud-init user data (for example a `#cloud-config` document), given
    /// to the guest through a NoCloud seed disk together with meta-data
    /// (instance id, host name) and a network-config rendered from
    /// `networks`. At most 16 KiB inline; use `userDataSecretRef` for more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub user_data: Option<String>,

    /// cloud-init user data read from a Secret in the VM's namespace, for
    /// data larger than the inline limit or containing credentials.
    /// Mutually exclusive with `userData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_secret_ref: Option<SecretKeyRef>,

    /// Node labels the VM's node must have (copied to the launcher pod).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Scheduling constraints of the launcher pod: the full Kubernetes
    /// affinity (node affinity, pod affinity and anti-affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Tolerations of the launcher pod, to run VMs on tainted (for example
    /// dedicated or GPU) nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Hooks run around the VM's start and stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,

    /// Seconds the guest gets to shut down after the ACPI power-down request
    /// before the VM is stopped forcibly.
    #[serde(default = "default_grace_period")]
    #[schemars(range(min = 0, max = 3600))]
    pub termination_grace_period_seconds: i64,
}

fn default_grace_period() -> i64 {
    180
}

/// Compute resources of a VM.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("isQuantity(string(self.memory)) && quantity(string(self.memory)).compareTo(quantity('512Mi')) >= 0")
    .message("memory must be a quantity of at least 512Mi, e.g. 4Gi").field_path(".memory"))]
#[x_kube(validation = Rule::new("isQuantity(string(self.disk)) && quantity(string(self.disk)).isGreaterThan(quantity('0'))")
    .message("disk must be a positive quantity, e.g. 50Gi").field_path(".disk"))]
#[serde(rename_all = "camelCase")]
pub struct VmResources {
    /// Number of virtual CPUs (at least 1).
    #[schemars(range(min = 1, max = 512))]
    pub cpu: i32,

    /// Guest memory, a quantity of at least `512Mi` (e.g. `4Gi`).
    #[schemars(extend("pattern" = QUANTITY_PATTERN))]
    pub memory: Quantity,

    /// Size of the root disk, a quantity (e.g. `50Gi`); the image is imported
    /// into a PersistentVolumeClaim of this size.
    #[schemars(extend("pattern" = QUANTITY_PATTERN))]
    pub disk: Quantity,
}

/// The source of a VM's root disk.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.checksum) || self.source.startsWith('http://') || self.source.startsWith('https://')")
    .message("image.checksum applies only to http:// and https:// sources").field_path(".checksum"))]
#[serde(rename_all = "camelCase")]
pub struct VmImage {
    /// Where the root disk image comes from: an `http://` or `https://` URL
    /// of a qcow2 or raw image, `marketplace://NAME` resolved through the
    /// image catalog the administrator configures, `pvc://[NAMESPACE/]NAME`
    /// to clone an existing PersistentVolumeClaim, or `snapshot://NAME` to
    /// start from a VolumeSnapshot in the VM's namespace.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(r"self.matches('^(https?://[^\\s/]+[^\\s]*|marketplace://[A-Za-z0-9][A-Za-z0-9._-]*|pvc://([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?|snapshot://[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$')")
        .message("image.source must be an http(s):// URL, marketplace://NAME, pvc://[NAMESPACE/]NAME or snapshot://NAME"))]
    pub source: String,

    /// When the root disk is imported: `IfNotPresent` (default) imports once,
    /// when the disk does not exist yet; `Always` imports again whenever
    /// `source` changes (the previous disk content is lost); `Never` never
    /// imports and expects the VM's root disk to exist already.
    #[serde(default)]
    pub pull_policy: PullPolicy,

    /// Expected checksum of an http(s) image, `sha256:<64 hex digits>` or
    /// `sha512:<128 hex digits>`; the import fails when it does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 135))]
    #[x_kube(validation = Rule::new("self.matches('^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$')")
        .message("checksum must be sha256:<64 lowercase hex digits> or sha512:<128 lowercase hex digits>"))]
    pub checksum: Option<String>,
}

/// When the root disk image is imported.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// A network interface of the VM.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.ipv4) || !has(self.ipv4.address) || (isCIDR(self.ipv4.address) && cidr(self.ipv4.address).ip().family() == 4)")
    .message("ipv4.address must be an IPv4 address with a prefix length, e.g. 10.0.1.10/24").field_path(".ipv4.address"))]
#[x_kube(validation = Rule::new("!has(self.ipv6) || !has(self.ipv6.address) || (isCIDR(self.ipv6.address) && cidr(self.ipv6.address).ip().family() == 6)")
    .message("ipv6.address must be an IPv6 address with a prefix length, e.g. fd00::10/64").field_path(".ipv6.address"))]
#[x_kube(validation = Rule::new("!has(self.ipv4) || !has(self.ipv4.gateway) || (isIP(self.ipv4.gateway) && ip(self.ipv4.gateway).family() == 4)")
    .message("ipv4.gateway must be an IPv4 address, e.g. 10.0.1.1").field_path(".ipv4.gateway"))]
#[x_kube(validation = Rule::new("!has(self.ipv6) || !has(self.ipv6.gateway) || (isIP(self.ipv6.gateway) && ip(self.ipv6.gateway).family() == 6)")
    .message("ipv6.gateway must be an IPv6 address, e.g. fd00::1").field_path(".ipv6.gateway"))]
#[x_kube(validation = Rule::new("self.type != 'masquerade' || (self.name == 'default' && !has(self.networkAttachment))")
    .message("type masquerade is only possible on the pod network (the network named default without networkAttachment)").field_path(".type"))]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// Name of the interface's network, unique within the VM (a DNS label).
    /// `default` is the pod network unless `networkAttachment` is set; any
    /// other name refers to the NetworkAttachmentDefinition of that name in
    /// the VM's namespace unless `networkAttachment` says otherwise.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// How the interface is connected: `bridge` (a Linux bridge; on the pod
    /// network the guest takes over the pod's address), `ovs` (an Open
    /// vSwitch bridge), `sr-iov` (an SR-IOV virtual function), `macvlan`, or
    /// `masquerade` (pod network only: NAT behind the pod's address, the only
    /// pod-network binding that keeps working across live migration).
    #[serde(rename = "type")]
    pub type_: NetworkType,

    /// The Multus NetworkAttachmentDefinition to attach, `NAME` or
    /// `NAMESPACE/NAME` (default: the network's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub network_attachment: Option<String>,

    /// A fixed unicast MAC address for the interface (`02:00:00:aa:bb:cc`).
    /// When unset the operator derives a stable one from the VM and the
    /// network name, so the guest keeps its MAC across restarts and
    /// migrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 17))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5}$') && !self.matches('^(00:){5}00$')")
        .message("macAddress must be a unicast MAC address like 02:00:00:aa:bb:cc"))]
    pub mac_address: Option<String>,

    /// IPv4 configuration of the interface inside the guest (rendered into
    /// the cloud-init network-config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<IpConfig>,

    /// IPv6 configuration of the interface inside the guest (rendered into
    /// the cloud-init network-config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<IpConfig>,
}

/// How a VM interface is connected.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NetworkType {
    #[serde(rename = "bridge")]
    Bridge,
    #[serde(rename = "ovs")]
    Ovs,
    #[serde(rename = "sr-iov")]
    SrIov,
    #[serde(rename = "macvlan")]
    Macvlan,
    #[serde(rename = "masquerade")]
    Masquerade,
}

impl NetworkType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Bridge => "bridge",
            NetworkType::Ovs => "ovs",
            NetworkType::SrIov => "sr-iov",
            NetworkType::Macvlan => "macvlan",
            NetworkType::Masquerade => "masquerade",
        }
    }
}

/// Address configuration of one IP family of an interface.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("self.method != 'static' || has(self.address)")
    .message("method static requires address (an address with prefix length, e.g. 10.0.1.10/24)").field_path(".address")
    .reason(kube::core::Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("self.method == 'static' || (!has(self.address) && !has(self.gateway))")
    .message("address and gateway can only be set with method static"))]
#[serde(rename_all = "camelCase")]
pub struct IpConfig {
    /// `dhcp` (default) or `static`.
    #[serde(default)]
    pub method: IpMethod,

    /// The static address with its prefix length, e.g. `10.0.1.10/24`.
    /// Required with method `static`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub address: Option<String>,

    /// The default gateway, e.g. `10.0.1.1` (method `static` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub gateway: Option<String>,

    /// DNS server addresses, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(d, isIP(d))").message("dns entries must be IP addresses"))]
    pub dns: Vec<String>,
}

/// How an interface gets its address.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IpMethod {
    #[default]
    #[serde(rename = "dhcp")]
    Dhcp,
    #[serde(rename = "static")]
    Static,
}

/// An additional data disk.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Name of the disk, unique within the VM (a DNS label); the
    /// PersistentVolumeClaim is named `<vm>-<name>`. `rootdisk` and
    /// `cloudinit` are reserved.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// Size of the disk, a quantity (e.g. `100Gi`).
    #[schemars(extend("pattern" = QUANTITY_PATTERN))]
    pub size: Quantity,

    /// StorageClass of the claim (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class: Option<String>,

    /// Access mode of the claim (default `ReadWriteOnce`). Live migration
    /// needs disks that can attach on two nodes at once (`ReadWriteMany`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
}

/// PersistentVolumeClaim access modes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
    ReadWriteOncePod,
}

/// A host device passed through to the VM.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Kind of device: `gpu` or `fpga`.
    #[serde(rename = "type")]
    pub type_: DeviceType,

    /// Vendor, e.g. `nvidia`; selects the extended resource requested (for
    /// `nvidia` GPUs `nvidia.com/gpu`; other vendors through the operator's
    /// device mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub vendor: Option<String>,

    /// Model, e.g. `tesla-t4`; used as a node selector so the VM lands on a
    /// node with that model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub model: Option<String>,

    /// How many devices of this kind (default 1).
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 16))]
    pub count: i32,
}

fn default_count() -> i32 {
    1
}

/// Kinds of passthrough devices.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeviceType {
    #[serde(rename = "gpu")]
    Gpu,
    #[serde(rename = "fpga")]
    Fpga,
}

/// A key of a Secret in the VM's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Key in the Secret holding the data (default `userdata`).
    #[serde(default = "default_userdata_key")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_userdata_key() -> String {
    "userdata".into()
}

/// Hooks around the VM's start and stop.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// Runs before QEMU starts; the VM does not start until it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_start: Option<LifecycleHandler>,

    /// Runs before the VM is shut down; the shutdown proceeds after it ends
    /// or times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<LifecycleHandler>,
}

/// One hook: a command or an HTTP request, bounded by a timeout.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.exec) != has(self.httpGet)")
    .message("a hook needs exactly one of exec or httpGet"))]
#[serde(rename_all = "camelCase")]
pub struct LifecycleHandler {
    /// A command run in the VM's launcher pod (not in the guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,

    /// An HTTP GET request; a 2xx or 3xx response is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,

    /// Seconds the hook may take before it counts as failed (default 30).
    #[serde(default = "default_hook_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
}

fn default_hook_timeout() -> i32 {
    30
}

/// A command hook.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecAction {
    /// The command and its arguments (not run through a shell; use
    /// `["sh", "-c", "..."]` for one). Exit status 0 is success.
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
}

/// An HTTP GET hook.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    /// Path to request (default `/`).
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 2048), pattern(r"^/"))]
    pub path: String,

    /// TCP port to connect to.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Host name or address to connect to (default: the VM's first IP
    /// address; required for `preStart`, when the VM has no address yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,

    /// `HTTP` (default) or `HTTPS`.
    #[serde(default)]
    pub scheme: HttpScheme,
}

fn default_path() -> String {
    "/".into()
}

/// URL scheme of an HTTP hook.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpScheme {
    #[default]
    Http,
    Https,
}

/// Live migration settings of a VM.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationPolicy {
    /// Whether the VM may be live-migrated: by a VirtualMachineMigration and,
    /// when its node is drained, automatically instead of being stopped
    /// (default false).
    #[serde(default)]
    pub allow_live_migration: bool,

    /// Compress memory pages during migration (multifd zstd) to trade CPU
    /// for bandwidth (default false).
    #[serde(default)]
    pub compression: bool,

    /// Encrypt the migration stream with TLS using certificates the operator
    /// manages (default true).
    #[serde(default = "default_true")]
    pub encrypted: bool,

    /// Bandwidth cap of the migration stream, e.g. `10Gbps`, `500Mbps`,
    /// `200MB/s` or `100MiB/s`. Unset means no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(r"self.matches('^[0-9]+(\\.[0-9]+)?([kKMGT]?bps|[KMGT]?B/s|[KMGT]iB/s)$')")
        .message("bandwidth must be a rate like 10Gbps, 500Mbps (bits per second), 200MB/s or 100MiB/s (bytes per second)"))]
    pub bandwidth: Option<String>,

    /// Abort a migration that has not completed after this long (e.g.
    /// `10m`; units d, h, m, s). Unset: a limit derived from the guest's
    /// memory size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub completion_timeout: Option<String>,

    /// Throttle the guest's vCPUs when memory is dirtied faster than it can
    /// be copied, so the migration converges (default false).
    #[serde(default)]
    pub auto_converge: bool,

    /// Switch to post-copy when pre-copy does not converge (after the second
    /// full pass over memory): the VM runs on the target at once and fetches
    /// the remaining pages on demand; a network failure during post-copy
    /// loses the VM (default false). Cannot be combined with `compression`;
    /// needs `vm.unprivileged_userfaultfd=1` on the nodes.
    #[serde(default)]
    pub post_copy: bool,
}

fn default_true() -> bool {
    true
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        MigrationPolicy {
            allow_live_migration: false,
            compression: false,
            encrypted: true,
            bandwidth: None,
            completion_timeout: None,
            auto_converge: false,
            post_copy: false,
        }
    }
}

/// Scheduled snapshots of a VM's disks.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPolicy {
    /// When to take snapshots: a 5-field cron expression (`minute hour
    /// day-of-month month day-of-week`, e.g. `0 2 * * *` for 2 AM daily) or a
    /// macro (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`),
    /// evaluated in `timeZone`. After downtime, missed ticks lead to one
    /// catch-up snapshot, not a burst.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new(r"self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ \\t]+([ \\t]+[^ \\t]+){4})$')")
        .message("schedule must be a 5-field cron expression (minute hour day-of-month month day-of-week) or a macro such as @daily"))]
    pub schedule: String,

    /// IANA time zone the schedule is evaluated in, e.g. `Europe/Berlin`
    /// (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,

    /// How many ready snapshots to keep (the newest ones; failed snapshots
    /// never push ready ones out). Default 7.
    #[serde(default = "default_retention")]
    #[schemars(range(min = 1, max = 1000))]
    pub retention: i32,

    /// Pause the schedule without removing it; existing snapshots are kept.
    #[serde(default)]
    pub suspend: bool,

    /// VolumeSnapshotClass used for the snapshots (default: the class marked
    /// default for the disks' CSI driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub volume_snapshot_class_name: Option<String>,
}

fn default_retention() -> i32 {
    7
}

/// How template changes reach a running VM.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.rollingUpdate) || self.type == 'RollingUpdate'")
    .message("rollingUpdate can only be set with type RollingUpdate").field_path(".rollingUpdate"))]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// `Recreate` (default): a change to the template restarts the VM (a
    /// graceful shutdown, then a start with the new specification).
    /// `RollingUpdate`: the new specification is started in a new launcher
    /// pod and the VM is live-migrated into it when the change and the
    /// migration policy allow it; otherwise it falls back to `Recreate`.
    #[serde(default, rename = "type")]
    pub type_: UpdateStrategyType,

    /// Parameters of `RollingUpdate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// Update strategy types.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum UpdateStrategyType {
    #[default]
    Recreate,
    RollingUpdate,
}

/// Parameters of the `RollingUpdate` strategy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// How many instances of the VM may be unavailable during the update:
    /// `0` requires a live update (no downtime; the update waits when the VM
    /// cannot be migrated), `1` allows falling back to a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub max_unavailable: Option<i32>,
}

/// The observed state of a virtual machine.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Lifecycle phase: Pending, Starting, Running, Stopping, Stopped,
    /// Migrating or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VmPhase>,

    /// Node the VM runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,

    /// IP addresses of the VM, the primary interface's first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,

    /// Identifier of the running VM instance (changes on every start).
    #[serde(default, rename = "vmID", skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,

    /// Name of the launcher pod running the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher_pod: Option<String>,

    /// The VM's network interfaces as the guest sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStatus>,

    /// Resource usage of the running VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceUsage>,

    /// The root disk's image import (http(s) and marketplace sources): its
    /// progress while the importer runs, then its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportStatus>,

    /// Conditions: `Accepted` (the spec is valid), `Ready`, `LiveMigratable`
    /// (with the reason when not), `Paused`, and those of the disk import and
    /// hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The current or last live migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<VmMigrationStatus>,

    /// Snapshots taken by the snapshot policy, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotStatus>,

    /// When the snapshot policy fires next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_snapshot_time: Option<Time>,
}

/// The root disk's image import.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportStatus {
    /// The image being imported (the resolved URL; a marketplace name is
    /// resolved through the image catalog).
    pub source: String,
    /// `Pending` (the importer has not reported yet), `Downloading`,
    /// `Verifying` (checksum), `Converting` (`qemu-img`), `Succeeded` or
    /// `Failed`.
    pub phase: ImportPhase,
    /// Percent of the download done, when the source tells its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<i32>,
    /// `percent` for people and printer columns (e.g. `42%`), or the bytes
    /// downloaded when the size is unknown (e.g. `12.0 MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Bytes downloaded so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<i64>,
    /// Size of the image in bytes, when the source tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<i64>,
    /// The importer Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// Phases of an image import.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ImportPhase {
    #[default]
    Pending,
    Downloading,
    Verifying,
    Converting,
    Succeeded,
    Failed,
}

/// Lifecycle phases of a VM.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VmPhase {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Migrating,
    Failed,
}

/// One network interface of a running VM.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStatus {
    /// The network's name from the spec.
    pub name: String,
    /// The interface's MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Addresses reported for the interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
}

/// Resource usage of a running VM.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// CPU usage, in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ResourceMetric>,
    /// Memory usage, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ResourceMetric>,
    /// Root disk usage, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<ResourceMetric>,
}

/// Usage of one resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetric {
    /// Amount in use, a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
    /// Amount available to the VM, a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    /// `used` as a percentage of `available`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
}

/// The current or last live migration of a VM.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmMigrationStatus {
    /// The VirtualMachineMigration driving it (empty for a drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_name: Option<String>,
    /// Phase of the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
    /// QEMU's own migration state (e.g. `active`, `completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Node the VM migrates from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_node: Option<String>,
    /// Node the VM migrates to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    /// When the migration started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the migration ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Progress in percent of the memory transferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub progress: Option<i32>,
    /// Total bytes to transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_total_bytes: Option<i64>,
    /// Bytes still to transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_remaining_bytes: Option<i64>,
    /// Current transfer speed in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_bytes_per_second: Option<i64>,
    /// Why the migration failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One snapshot of a VM's disks.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// Name of the snapshot (shared by its VolumeSnapshots' label).
    pub name: String,
    /// When the snapshot was taken.
    pub created_at: Time,
    /// Total size of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// `Pending`, `Ready` or `Failed`.
    pub phase: SnapshotPhase,
    /// The VolumeSnapshots making up the snapshot, one per disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_snapshots: Vec<String>,
    /// Why the snapshot failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// State of one snapshot.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SnapshotPhase {
    Pending,
    Ready,
    Failed,
}

impl VirtualMachineSpec {
    /// Whether the VM should be running, from `runStrategy` or `running`.
    pub fn wants_running(&self) -> bool {
        match self.run_strategy {
            Some(RunStrategy::Always | RunStrategy::RerunOnFailure) => true,
            Some(RunStrategy::Halted) => false,
            None => self.running.unwrap_or(false),
        }
    }
}
