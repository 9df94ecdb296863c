//! The `orchestra.io/v1` Workshop API.
//!
//! Every field of the original Orchestra document keeps its JSON name and default, so its example
//! manifest applies unchanged (`deploy/workshop-operator/samples/`). Fields added since (participant
//! list, ingress class and TLS, extension, retention, scheduled start) are optional and defaulted.
//!
//! Admission rejects malformed input through the schema and CEL rules below; [`crate::validate`]
//! re-checks the same things in Rust (plus what CEL cannot express) before anything is built.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::{Message, Rule};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use operator_core::cel::{
    max_duration as max_duration_rule, positive_duration as positive_duration_rule,
    positive_quantity as positive_quantity_rule,
};
use operator_core::duration::DURATION_PATTERN;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "orchestra.io";

/// Longest `spec.duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * DAY);
/// Longest `spec.duration` plus every extension that may be granted.
pub const MAX_TOTAL_DURATION: Duration = MAX_DURATION;
/// Longest pre-warm lead time before `spec.startTime`.
pub const MAX_PREWARM: Duration = Duration::from_secs(7 * DAY);
/// Longest expiry warning lead time.
pub const MAX_EXPIRY_WARNING: Duration = Duration::from_secs(DAY);
/// Longest retention of participants' storage after expiry.
pub const MAX_RETENTION: Duration = Duration::from_secs(90 * DAY);
/// Most participants in one workshop.
pub const MAX_PARTICIPANTS: i32 = 200;
/// Most extensions that may be allowed.
pub const MAX_EXTENSIONS: i32 = 100;
/// Longest `metadata.name`: children are named `<name>-<participant>-service` and Service names
/// are DNS labels (at most 63 characters); generated participant ids are at most 7 characters.
pub const MAX_NAME_LEN: usize = 47;
/// Longest participant id.
pub const MAX_PARTICIPANT_ID_LEN: usize = 20;
/// `metadata.name` + a participant id must fit in a Service name with `-` and `-service`.
pub const MAX_NAME_PLUS_ID_LEN: usize = 63 - "-".len() - "-service".len();

const DAY: u64 = 24 * 3600;

/// A DNS-1123 subdomain (host names, Secret and class names), as an RE2 pattern.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label (participant ids).
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1035 label (`metadata.name`: it prefixes Service names, which must start with a letter).
pub const DNS_1035_LABEL_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// A plausible e-mail address: one `@`, no spaces.
pub const EMAIL_PATTERN: &str = "^[^@[:space:]]+@[^@[:space:]]+$";

/// A Workshop: RStudio sessions for a class of participants, each with their own instance,
/// persistent home, credentials and URL, removed after the workshop's duration (plus retention).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "orchestra.io",
    version = "v1",
    kind = "Workshop",
    plural = "workshops",
    singular = "workshop",
    shortname = "ws",
    namespaced,
    status = "WorkshopStatus",
    doc = "A Workshop runs RStudio sessions for a class: one instance, home volume, password and URL per participant, expiring after spec.duration.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready", description = "Participants whose RStudio is ready / participants"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url", description = "Where the workshop is reached"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt", description = "When the sessions stop (RFC 3339)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(format!("self.metadata.name.matches('{DNS_1035_LABEL_PATTERN}')"))
        .message("metadata.name must start with a lower-case letter and contain only lower-case letters, digits and '-' (it prefixes the names of the workshop's Services)"),
    validation = Rule::new(format!("size(self.metadata.name) <= {MAX_NAME_LEN}"))
        .message(Message::Message(format!("metadata.name must be at most {MAX_NAME_LEN} characters (child objects are named <name>-<participant>-service)"))),
    validation = Rule::new(format!("!has(self.spec.participantList) || self.spec.participantList.all(p, size(self.metadata.name) + size(p.id) <= {MAX_NAME_PLUS_ID_LEN})"))
        .message(Message::Message(format!("metadata.name and each participant id together must be at most {MAX_NAME_PLUS_ID_LEN} characters (they form the Service name <name>-<id>-service)"))),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.participantList) || self.participants == 1 || self.participants == size(self.participantList)")
        .message("participants must equal the number of entries in participantList, or be left at its default of 1"),
)]
pub struct WorkshopSpec {
    /// Display name of the workshop. Child objects are named after metadata.name, so two
    /// workshops never share objects, whatever their display names.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// How long the sessions run, counted from the creation of the workshop (or from startTime
    /// when set): digits followed by d, h, m or s, in that order, e.g. 4h, 90m, 1d or 2h30m15s.
    /// Greater than zero and at most 30d.
    #[serde(default = "default_duration")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = duration_format_rule(), validation = positive_duration_rule(), validation = max_duration_rule(MAX_DURATION))]
    pub duration: String,

    /// Number of participants; each gets their own RStudio instance, home volume, password and
    /// URL (ids user1, user2, ...). Use participantList instead to name them.
    #[serde(default = "default_participants")]
    #[schemars(range(min = 1, max = MAX_PARTICIPANTS))]
    pub participants: i32,

    /// Named participants, an alternative to the participants count. Ids are unique DNS labels
    /// used in object names and URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PARTICIPANTS))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    pub participant_list: Option<Vec<Participant>>,

    /// Container image of the RStudio server (listening on port 8787).
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(r"self.matches('^\\S+$')").message("must be an image reference without spaces, e.g. rocker/rstudio:4.4.1"))]
    pub image: String,

    /// CPU and memory of each participant's RStudio instance.
    #[serde(default)]
    pub resources: WorkshopResources,

    /// Each participant's persistent home volume.
    #[serde(default)]
    pub storage: WorkshopStorage,

    /// Exposure through a networking.k8s.io/v1 Ingress. Without it the sessions are reached
    /// through their Services (kubectl port-forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<WorkshopIngress>,

    /// Scheduled start (RFC 3339 with a time zone). The sessions are created prewarm ahead of it
    /// so the class does not wait for images and scheduling; the duration counts from it. When
    /// unset, the workshop starts at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// How long before startTime the sessions are created (a duration such as 15m; 0s creates
    /// them at startTime). At most 7d.
    #[serde(default = "default_prewarm")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = duration_format_rule(), validation = max_duration_rule(MAX_PREWARM))]
    pub prewarm: String,

    /// How long before expiry a Warning event announces it (a duration such as 10m; 0s for no
    /// warning). At most 1d.
    #[serde(default = "default_expiry_warning")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = duration_format_rule(), validation = max_duration_rule(MAX_EXPIRY_WARNING))]
    pub expiry_warning: String,

    /// Extensions of the workshop's duration: raise `granted` (up to `max`) to add `step` each time.
    #[serde(default)]
    pub extension: WorkshopExtension,

    /// What is kept after expiry so participants' work can be recovered.
    #[serde(default)]
    pub retention: WorkshopRetention,
}

/// CPU and memory of each RStudio instance, as Kubernetes quantities.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!isQuantity(self.cpu) || !isQuantity(self.cpuRequest) || quantity(self.cpuRequest).compareTo(quantity(self.cpu)) <= 0")
        .message("cpuRequest (500m by default) must not be greater than cpu, the limit"),
    validation = Rule::new("!isQuantity(self.memory) || !isQuantity(self.memoryRequest) || quantity(self.memoryRequest).compareTo(quantity(self.memory)) <= 0")
        .message("memoryRequest (1Gi by default) must not be greater than memory, the limit"),
)]
pub struct WorkshopResources {
    /// CPU limit, e.g. 1, 1500m.
    #[serde(default = "default_cpu")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = quantity_rule(), validation = positive_quantity_rule())]
    pub cpu: String,
    /// Memory limit, e.g. 2Gi.
    #[serde(default = "default_memory")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = quantity_rule(), validation = positive_quantity_rule())]
    pub memory: String,
    /// CPU request (guaranteed share), at most cpu.
    #[serde(default = "default_cpu_request")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = quantity_rule(), validation = positive_quantity_rule())]
    pub cpu_request: String,
    /// Memory request, at most memory.
    #[serde(default = "default_memory_request")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = quantity_rule(), validation = positive_quantity_rule())]
    pub memory_request: String,
}

impl Default for WorkshopResources {
    fn default() -> Self {
        Self {
            cpu: default_cpu(),
            memory: default_memory(),
            cpu_request: default_cpu_request(),
            memory_request: default_memory_request(),
        }
    }
}

/// The persistent home volume of each participant (a PersistentVolumeClaim mounted at the RStudio
/// user's home directory). Existing volumes can grow (when their StorageClass allows expansion)
/// but never shrink or change class: Kubernetes cannot do either to a claim in use.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!isQuantity(self.size) || !isQuantity(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0")
        .message("storage.size cannot shrink: the participants' home volumes already have the old size (volumes can only grow)"),
    validation = Rule::new("(has(self.storageClass) ? self.storageClass : '') == (has(oldSelf.storageClass) ? oldSelf.storageClass : '')")
        .message("storage.storageClass cannot change: the participants' home volumes already exist in the old class"),
)]
pub struct WorkshopStorage {
    /// Size of each participant's volume, e.g. 10Gi.
    #[serde(default = "default_storage_size")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = quantity_rule(), validation = positive_quantity_rule())]
    pub size: String,
    /// StorageClass of the volumes; empty or unset uses the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = optional_dns_subdomain_rule("a StorageClass name such as fast-ssd"))]
    pub storage_class: Option<String>,
}

impl Default for WorkshopStorage {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class: None,
        }
    }
}

/// How the sessions are exposed through a networking.k8s.io/v1 Ingress.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.routing != 'Host' || (has(self.host) && self.host != '')")
        .message("routing Host needs ingress.host: participants are reached at <id>.<host>"),
)]
pub struct WorkshopIngress {
    /// Host name of the workshop, e.g. workshop.example.com (a lower-case DNS name). Empty or
    /// unset matches any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = optional_dns_subdomain_rule("a lower-case DNS name such as workshop.example.com"))]
    pub host: Option<String>,
    /// Annotations copied onto the Ingress (for the ingress controller).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// IngressClass of the Ingress (spec.ingressClassName); unset uses the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = optional_dns_subdomain_rule("an IngressClass name such as traefik"))]
    pub ingress_class_name: Option<String>,
    /// Secret holding the TLS certificate for the host(s); when set the URLs use https.
    /// With routing Host the certificate must cover *.<host>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = optional_dns_subdomain_rule("a Secret name"))]
    pub tls_secret_name: Option<String>,
    /// How participants are told apart: Path gives each a path (/<id>/) on the host; Host gives
    /// each their own host name <id>.<host> (needs wildcard DNS).
    #[serde(default)]
    pub routing: IngressRouting,
}

/// How participants' sessions are routed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IngressRouting {
    /// One path per participant on the workshop host: `/<id>/`.
    #[default]
    Path,
    /// One host name per participant: `<id>.<host>`.
    Host,
}

/// A named participant.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Unique id, a lower-case DNS label of at most 20 characters (used in object names and URLs).
    #[schemars(length(min = 1, max = MAX_PARTICIPANT_ID_LEN))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DNS_LABEL_PATTERN}')")).message("must be lower-case letters, digits and '-', starting and ending with a letter or digit"))]
    pub id: String,
    /// Contact e-mail address (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254))]
    #[x_kube(validation = Rule::new(format!("self.matches('{EMAIL_PATTERN}')")).message("must be an e-mail address such as ada@example.com"))]
    pub email: Option<String>,
}

/// Extensions of a workshop's duration.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.granted <= self.max").message("extension.granted must not be greater than extension.max"))]
pub struct WorkshopExtension {
    /// Time added by each extension (a duration such as 30m).
    #[serde(default = "default_extension_step")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = duration_format_rule(), validation = positive_duration_rule(), validation = max_duration_rule(MAX_DURATION))]
    pub step: String,
    /// Most extensions that may be granted.
    #[serde(default = "default_max_extensions")]
    #[schemars(range(min = 0, max = MAX_EXTENSIONS))]
    pub max: i32,
    /// Extensions granted so far; raising it moves status.expiresAt by step each time.
    #[serde(default)]
    #[schemars(range(min = 0, max = MAX_EXTENSIONS))]
    pub granted: i32,
}

impl Default for WorkshopExtension {
    fn default() -> Self {
        Self {
            step: default_extension_step(),
            max: default_max_extensions(),
            granted: 0,
        }
    }
}

/// What happens after expiry.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkshopRetention {
    /// How long the stopped workshop and its participants' volumes are kept after expiry before
    /// everything is deleted (a duration such as 24h; 0s deletes at expiry). At most 90d.
    #[serde(default = "default_retention")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = duration_format_rule(), validation = max_duration_rule(MAX_RETENTION))]
    pub after_expiry: String,
}

impl Default for WorkshopRetention {
    fn default() -> Self {
        Self {
            after_expiry: default_retention(),
        }
    }
}

/// The observed state of a Workshop.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkshopStatus {
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary of the lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkshopPhase>,
    /// Where the workshop is reached (the first participant's URL, or the workshop's host);
    /// https when TLS is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// One entry per participant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    pub participants: Vec<ParticipantStatus>,
    /// Participants whose RStudio instance is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_participants: Option<i32>,
    /// Participants of the workshop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_participants: Option<i32>,
    /// readyParticipants/totalParticipants, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// When the workshop was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// When the sessions stop: start (creation or startTime) + duration + granted extensions
    /// (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Conditions: Accepted (the spec is valid), Ready, Progressing, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The lifecycle phase of a Workshop.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkshopPhase {
    /// Accepted, waiting to be provisioned (or for its scheduled start).
    Pending,
    /// Children are being created; not every participant is ready.
    Creating,
    /// Every participant's instance is ready.
    Ready,
    /// Ready and in use (after startTime).
    Running,
    /// Being deleted.
    Terminating,
    /// Cannot be provisioned (see the conditions).
    Failed,
    /// Past expiresAt: sessions stopped, volumes kept for the retention period.
    Expired,
}

impl WorkshopPhase {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkshopPhase::Pending => "Pending",
            WorkshopPhase::Creating => "Creating",
            WorkshopPhase::Ready => "Ready",
            WorkshopPhase::Running => "Running",
            WorkshopPhase::Terminating => "Terminating",
            WorkshopPhase::Failed => "Failed",
            WorkshopPhase::Expired => "Expired",
        }
    }
}

/// The state of one participant's session.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantStatus {
    /// The participant's id.
    pub id: String,
    /// The participant's RStudio URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether the participant's RStudio instance is ready.
    #[serde(default)]
    pub ready: bool,
    /// Name of the Secret holding the participant's generated username and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Every CRD of this operator.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Workshop::crd()]
}

fn default_duration() -> String {
    "4h".into()
}
fn default_participants() -> i32 {
    1
}
fn default_image() -> String {
    "rocker/rstudio:latest".into()
}
fn default_cpu() -> String {
    "1".into()
}
fn default_memory() -> String {
    "2Gi".into()
}
fn default_cpu_request() -> String {
    "500m".into()
}
fn default_memory_request() -> String {
    "1Gi".into()
}
fn default_storage_size() -> String {
    "10Gi".into()
}
fn default_prewarm() -> String {
    "15m".into()
}
fn default_expiry_warning() -> String {
    "10m".into()
}
fn default_extension_step() -> String {
    "30m".into()
}
fn default_max_extensions() -> i32 {
    2
}
fn default_retention() -> String {
    "24h".into()
}

/// CEL: the whole string follows the duration grammar.
pub(crate) fn duration_format_rule() -> Rule {
    Rule::new(format!("self.matches('{DURATION_PATTERN}')"))
        .message("must be a duration like 4h, 90m or 1d2h30m15s: numbers followed by d, h, m or s, in that order, without spaces")
}

/// CEL: a Kubernetes quantity.
pub(crate) fn quantity_rule() -> Rule {
    Rule::new("isQuantity(self)").message("must be a quantity such as 500m, 2 or 4Gi")
}

/// CEL: empty, or a lower-case DNS subdomain.
pub(crate) fn optional_dns_subdomain_rule(what: &str) -> Rule {
    Rule::new(format!(
        "self == '' || self.matches('{DNS_SUBDOMAIN_PATTERN}')"
    ))
    .message(Message::Message(format!("must be {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_json() -> serde_json::Value {
        serde_json::to_value(Workshop::crd()).unwrap()
    }

    fn spec_schema() -> serde_json::Value {
        crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    #[test]
    fn names_and_scope() {
        let crd = Workshop::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("workshops.orchestra.io"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["ws".to_string()]));
        assert_eq!(crd.spec.versions[0].name, "v1");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .unwrap()
                .status
                .is_some()
        );
    }

    #[test]
    fn printer_columns() {
        let crd = Workshop::crd();
        let cols: Vec<(String, String)> = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.json_path))
            .collect();
        let expected = [
            ("Phase", ".status.phase"),
            ("Ready", ".status.ready"),
            ("URL", ".status.url"),
            ("Expires", ".status.expiresAt"),
            ("Age", ".metadata.creationTimestamp"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(cols, expected);
    }

    #[test]
    fn defaults_of_the_original_are_in_the_schema() {
        let spec = spec_schema();
        let p = &spec["properties"];
        assert_eq!(p["duration"]["default"], "4h");
        assert_eq!(p["participants"]["default"], 1);
        assert_eq!(p["image"]["default"], "rocker/rstudio:latest");
        assert_eq!(
            p["resources"]["default"],
            serde_json::json!({"cpu": "1", "memory": "2Gi", "cpuRequest": "500m", "memoryRequest": "1Gi"})
        );
        assert_eq!(p["storage"]["default"], serde_json::json!({"size": "10Gi"}));
        assert_eq!(p["participants"]["minimum"].as_f64(), Some(1.0));
        assert_eq!(
            p["participants"]["maximum"].as_f64(),
            Some(f64::from(MAX_PARTICIPANTS))
        );
        assert_eq!(spec["required"], serde_json::json!(["name"]));
    }

    #[test]
    fn schema_carries_the_cel_rules() {
        let crd = serde_json::to_string(&Workshop::crd()).unwrap();
        for needle in [
            "self.metadata.name.matches(",
            "isQuantity(self)",
            "quantity(self.cpuRequest).compareTo(quantity(self.cpu)) <= 0",
            "self.granted <= self.max",
            "self.matches('[1-9]')",
            "<= 2592000",
            "self.participants == size(self.participantList)",
            "routing Host needs ingress.host",
            "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",
        ] {
            assert!(crd.contains(needle), "missing {needle}");
        }
        let spec = spec_schema();
        let duration_rules = spec["properties"]["duration"]["x-kubernetes-validations"]
            .as_array()
            .unwrap();
        assert_eq!(duration_rules.len(), 3);
        assert_eq!(
            spec["properties"]["participantList"]["x-kubernetes-list-type"],
            "map"
        );
        assert_eq!(
            spec["properties"]["participantList"]["x-kubernetes-list-map-keys"],
            serde_json::json!(["id"])
        );
    }

    #[test]
    fn every_field_is_described() {
        fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                for (name, sub) in props {
                    let p = format!("{path}.{name}");
                    if path.starts_with(".status.conditions")
                        || p == ".metadata"
                        || p == ".apiVersion"
                        || p == ".kind"
                    {
                        continue;
                    }
                    if sub.get("description").is_none() {
                        missing.push(p.clone());
                    }
                    walk(&p, sub, missing);
                }
            }
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let root = crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        let mut missing = Vec::new();
        walk("", &root, &mut missing);
        assert!(
            missing.is_empty(),
            "fields without description: {missing:?}"
        );
    }

    #[test]
    fn the_original_example_deserializes() {
        let yaml = include_str!("../../../deploy/workshop-operator/samples/workshop-example.yaml");
        let ws: Workshop = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(ws.spec.name, "data-science-101");
        assert_eq!(ws.spec.resources.cpu, "2");
        assert_eq!(ws.spec.storage.storage_class.as_deref(), Some("fast-ssd"));
        let ingress = ws.spec.ingress.unwrap();
        assert_eq!(ingress.host.as_deref(), Some("workshop.example.com"));
        assert_eq!(
            ingress.annotations["kubernetes.io/ingress.class"],
            "traefik"
        );
        assert_eq!(ingress.routing, IngressRouting::Path);
        // Added fields take their defaults.
        assert_eq!(ws.spec.extension, WorkshopExtension::default());
        assert_eq!(ws.spec.retention.after_expiry, "24h");
    }

    #[test]
    fn limits_are_consistent() {
        assert_eq!(MAX_NAME_PLUS_ID_LEN, 54);
        // Generated ids (user1 .. user200) fit with the longest name.
        assert!(MAX_NAME_LEN + format!("user{MAX_PARTICIPANTS}").len() <= MAX_NAME_PLUS_ID_LEN);
        assert_eq!(
            max_duration_rule(MAX_DURATION).message,
            Some(Message::Message("must be at most 30d".into()))
        );
    }
}
