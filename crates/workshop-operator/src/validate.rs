//! Validation of a Workshop spec, turning it into a [`ValidWorkshop`] or a [`ValidationError`] with
//! a message for the user.
//!
//! Admission (schema + CEL) already rejects almost all of this; the controller checks again
//! because objects may predate the current CRD, and adds what CEL cannot express (the total
//! duration including every possible extension). Pure: no I/O, no clock.

use std::cmp::Ordering;
use std::time::Duration;

use kube::ResourceExt;
use operator_core::duration::{DurationError, format_duration, parse_duration_bounded};
use operator_core::quantity;

use crate::crd::{
    DNS_1035_LABEL_PATTERN, IngressRouting, MAX_DURATION, MAX_EXPIRY_WARNING, MAX_EXTENSIONS,
    MAX_NAME_LEN, MAX_NAME_PLUS_ID_LEN, MAX_PARTICIPANT_ID_LEN, MAX_PARTICIPANTS, MAX_PREWARM,
    MAX_RETENTION, MAX_TOTAL_DURATION, Workshop, WorkshopSpec,
};
pub use operator_core::names::{is_dns_label, is_dns_subdomain};

/// A participant after validation: either named in `participantList` or generated (`user<N>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidParticipant {
    pub id: String,
    pub email: Option<String>,
}

/// A spec that passed validation, with its durations parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidWorkshop {
    pub duration: Duration,
    pub prewarm: Duration,
    pub expiry_warning: Duration,
    pub extension_step: Duration,
    pub retention: Duration,
    /// In spec order (generated ids in numeric order).
    pub participants: Vec<ValidParticipant>,
}

impl ValidWorkshop {
    /// The duration including the extensions granted so far.
    pub fn granted_duration(&self, granted: i32) -> Duration {
        self.duration + self.extension_step * granted.max(0) as u32
    }
}

/// Why a spec is invalid. `Display` is the user-facing message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("metadata.name {name:?} {problem}")]
    Name { name: String, problem: String },
    #[error("spec.name must not be empty")]
    EmptyDisplayName,
    #[error("spec.{field}: {source}")]
    Duration {
        field: &'static str,
        #[source]
        source: DurationError,
    },
    #[error(
        "spec.duration plus every allowed extension ({duration} + {max} x {step}) must be at most {limit}"
    )]
    TotalDurationTooLong {
        duration: String,
        max: i32,
        step: String,
        limit: String,
    },
    #[error(
        "spec.extension: granted ({granted}) must be between 0 and max ({max}), and max at most {MAX_EXTENSIONS}"
    )]
    Extension { granted: i32, max: i32 },
    #[error("spec.{field}: {source}")]
    Quantity {
        field: &'static str,
        #[source]
        source: quantity::QuantityError,
    },
    #[error("spec.{field} must be greater than zero")]
    NotPositive { field: &'static str },
    #[error(
        "spec.resources.{request} ({request_value}) must not be greater than spec.resources.{limit} ({limit_value})"
    )]
    RequestAboveLimit {
        request: &'static str,
        request_value: String,
        limit: &'static str,
        limit_value: String,
    },
    #[error("spec.participants must be between 1 and {MAX_PARTICIPANTS}, got {0}")]
    ParticipantCount(i32),
    #[error("spec.participantList must have between 1 and {MAX_PARTICIPANTS} entries, got {0}")]
    ParticipantListLength(usize),
    #[error(
        "spec.participants ({count}) must equal the number of entries in spec.participantList ({listed}), or be left at 1"
    )]
    ParticipantMismatch { count: i32, listed: usize },
    #[error("spec.participantList: id {id:?} {problem}")]
    ParticipantId { id: String, problem: String },
    #[error("spec.participantList: id {0:?} appears more than once")]
    DuplicateParticipant(String),
    #[error("spec.participantList: e-mail {0:?} is not an e-mail address")]
    Email(String),
    #[error("spec.image must be an image reference without spaces")]
    Image,
    #[error("spec.{field} {value:?} must be {what}")]
    DnsName {
        field: &'static str,
        value: String,
        what: &'static str,
    },
    #[error(
        "spec.ingress.routing Host needs spec.ingress.host: participants are reached at <id>.<host>"
    )]
    HostRoutingWithoutHost,
}

impl ValidationError {
    /// A stable CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::Name { .. } | ValidationError::EmptyDisplayName => "InvalidName",
            ValidationError::Duration { .. } | ValidationError::TotalDurationTooLong { .. } => {
                "InvalidDuration"
            }
            ValidationError::Extension { .. } => "InvalidExtension",
            ValidationError::Quantity { .. }
            | ValidationError::NotPositive { .. }
            | ValidationError::RequestAboveLimit { .. } => "InvalidResources",
            ValidationError::ParticipantCount(_)
            | ValidationError::ParticipantListLength(_)
            | ValidationError::ParticipantMismatch { .. }
            | ValidationError::ParticipantId { .. }
            | ValidationError::DuplicateParticipant(_)
            | ValidationError::Email(_) => "InvalidParticipants",
            ValidationError::Image => "InvalidImage",
            ValidationError::DnsName { .. } | ValidationError::HostRoutingWithoutHost => {
                "InvalidIngress"
            }
        }
    }
}

/// Validates a whole Workshop (its name takes part in child names).
pub fn validate(ws: &Workshop) -> Result<ValidWorkshop, ValidationError> {
    validate_spec(&ws.name_any(), &ws.spec)
}

/// Validates `spec` for a Workshop named `name`.
pub fn validate_spec(name: &str, spec: &WorkshopSpec) -> Result<ValidWorkshop, ValidationError> {
    check_name(name)?;
    if spec.name.trim().is_empty() {
        return Err(ValidationError::EmptyDisplayName);
    }

    let duration = positive_duration("duration", &spec.duration, MAX_DURATION)?;
    let prewarm = duration_or_zero("prewarm", &spec.prewarm, MAX_PREWARM)?;
    let expiry_warning =
        duration_or_zero("expiryWarning", &spec.expiry_warning, MAX_EXPIRY_WARNING)?;
    let extension_step = positive_duration("extension.step", &spec.extension.step, MAX_DURATION)?;
    let retention = duration_or_zero(
        "retention.afterExpiry",
        &spec.retention.after_expiry,
        MAX_RETENTION,
    )?;

    let ext = &spec.extension;
    if ext.granted < 0 || ext.max < 0 || ext.max > MAX_EXTENSIONS || ext.granted > ext.max {
        return Err(ValidationError::Extension {
            granted: ext.granted,
            max: ext.max,
        });
    }
    let total = extension_step
        .checked_mul(ext.max as u32)
        .and_then(|e| e.checked_add(duration));
    if total.is_none_or(|t| t > MAX_TOTAL_DURATION) {
        return Err(ValidationError::TotalDurationTooLong {
            duration: spec.duration.clone(),
            max: ext.max,
            step: spec.extension.step.clone(),
            limit: format_duration(MAX_TOTAL_DURATION),
        });
    }

    let r = &spec.resources;
    for (field, value) in [
        ("resources.cpu", &r.cpu),
        ("resources.memory", &r.memory),
        ("resources.cpuRequest", &r.cpu_request),
        ("resources.memoryRequest", &r.memory_request),
        ("storage.size", &spec.storage.size),
    ] {
        positive_quantity(field, value)?;
    }
    for (request, request_value, limit, limit_value) in [
        ("cpuRequest", &r.cpu_request, "cpu", &r.cpu),
        ("memoryRequest", &r.memory_request, "memory", &r.memory),
    ] {
        if quantity::compare(request_value, limit_value) == Some(Ordering::Greater) {
            return Err(ValidationError::RequestAboveLimit {
                request,
                request_value: request_value.clone(),
                limit,
                limit_value: limit_value.clone(),
            });
        }
    }

    if spec.image.is_empty() || spec.image.chars().any(char::is_whitespace) {
        return Err(ValidationError::Image);
    }
    optional_dns_subdomain(
        "storage.storageClass",
        spec.storage.storage_class.as_deref(),
        "a StorageClass name",
    )?;
    if let Some(ingress) = &spec.ingress {
        optional_dns_subdomain(
            "ingress.host",
            ingress.host.as_deref(),
            "a lower-case DNS name such as workshop.example.com",
        )?;
        optional_dns_subdomain(
            "ingress.ingressClassName",
            ingress.ingress_class_name.as_deref(),
            "an IngressClass name",
        )?;
        optional_dns_subdomain(
            "ingress.tlsSecretName",
            ingress.tls_secret_name.as_deref(),
            "a Secret name",
        )?;
        if ingress.routing == IngressRouting::Host
            && ingress.host.as_deref().unwrap_or_default().is_empty()
        {
            return Err(ValidationError::HostRoutingWithoutHost);
        }
    }

    let participants = participants(name, spec)?;
    Ok(ValidWorkshop {
        duration,
        prewarm,
        expiry_warning,
        extension_step,
        retention,
        participants,
    })
}

fn check_name(name: &str) -> Result<(), ValidationError> {
    let problem = if name.len() > MAX_NAME_LEN {
        format!(
            "must be at most {MAX_NAME_LEN} characters (child objects are named <name>-<participant>-service)"
        )
    } else if !is_dns_1035_label(name) {
        "must start with a lower-case letter and contain only lower-case letters, digits and '-'"
            .to_string()
    } else {
        return Ok(());
    };
    Err(ValidationError::Name {
        name: name.to_string(),
        problem,
    })
}

fn participants(name: &str, spec: &WorkshopSpec) -> Result<Vec<ValidParticipant>, ValidationError> {
    if !(1..=MAX_PARTICIPANTS).contains(&spec.participants) {
        return Err(ValidationError::ParticipantCount(spec.participants));
    }
    let Some(list) = &spec.participant_list else {
        return Ok((1..=spec.participants)
            .map(|i| ValidParticipant {
                id: format!("user{i}"),
                email: None,
            })
            .collect());
    };
    if list.is_empty() || list.len() > MAX_PARTICIPANTS as usize {
        return Err(ValidationError::ParticipantListLength(list.len()));
    }
    if spec.participants != 1 && spec.participants as usize != list.len() {
        return Err(ValidationError::ParticipantMismatch {
            count: spec.participants,
            listed: list.len(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let bad = |problem: String| ValidationError::ParticipantId {
            id: p.id.clone(),
            problem,
        };
        if p.id.is_empty() || p.id.len() > MAX_PARTICIPANT_ID_LEN || !is_dns_label(&p.id) {
            return Err(bad(format!(
                "must be 1 to {MAX_PARTICIPANT_ID_LEN} lower-case letters, digits and '-', starting and ending with a letter or digit"
            )));
        }
        if name.len() + p.id.len() > MAX_NAME_PLUS_ID_LEN {
            return Err(bad(format!(
                "is too long for this workshop's name: name and id together must be at most {MAX_NAME_PLUS_ID_LEN} characters"
            )));
        }
        if !seen.insert(p.id.as_str()) {
            return Err(ValidationError::DuplicateParticipant(p.id.clone()));
        }
        if let Some(email) = &p.email
            && !is_email(email)
        {
            return Err(ValidationError::Email(email.clone()));
        }
        out.push(ValidParticipant {
            id: p.id.clone(),
            email: p.email.clone(),
        });
    }
    Ok(out)
}

fn positive_duration(
    field: &'static str,
    value: &str,
    max: Duration,
) -> Result<Duration, ValidationError> {
    parse_duration_bounded(value, max).map_err(|source| ValidationError::Duration { field, source })
}

/// Like [`positive_duration`], but zero (`0s`, `0m`, ...) is allowed and means "none".
fn duration_or_zero(
    field: &'static str,
    value: &str,
    max: Duration,
) -> Result<Duration, ValidationError> {
    match parse_duration_bounded(value, max) {
        Ok(d) => Ok(d),
        Err(DurationError::Zero { .. }) => Ok(Duration::ZERO),
        Err(source) => Err(ValidationError::Duration { field, source }),
    }
}

fn positive_quantity(field: &'static str, value: &str) -> Result<(), ValidationError> {
    let q = quantity::parse(value).map_err(|source| ValidationError::Quantity { field, source })?;
    if q.is_positive() {
        Ok(())
    } else {
        Err(ValidationError::NotPositive { field })
    }
}

fn optional_dns_subdomain(
    field: &'static str,
    value: Option<&str>,
    what: &'static str,
) -> Result<(), ValidationError> {
    match value {
        None | Some("") => Ok(()),
        Some(v) if is_dns_subdomain(v) => Ok(()),
        Some(v) => Err(ValidationError::DnsName {
            field,
            value: v.to_string(),
            what,
        }),
    }
}

/// A DNS-1035 label: a DNS-1123 label starting with a letter ([`DNS_1035_LABEL_PATTERN`]).
pub fn is_dns_1035_label(s: &str) -> bool {
    debug_assert!(DNS_1035_LABEL_PATTERN.starts_with("^[a-z]"));
    is_dns_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Participant, WorkshopIngress};

    fn spec() -> WorkshopSpec {
        serde_json::from_value(serde_json::json!({ "name": "Intro to R" })).unwrap()
    }

    fn check(spec: &WorkshopSpec) -> Result<ValidWorkshop, ValidationError> {
        validate_spec("intro", spec)
    }

    fn err(spec: &WorkshopSpec) -> ValidationError {
        check(spec).unwrap_err()
    }

    fn named(ids: &[&str]) -> Option<Vec<Participant>> {
        Some(
            ids.iter()
                .map(|id| Participant {
                    id: id.to_string(),
                    email: None,
                })
                .collect(),
        )
    }

    #[test]
    fn defaults_are_valid() {
        let v = check(&spec()).unwrap();
        assert_eq!(v.duration, Duration::from_secs(4 * 3600));
        assert_eq!(v.prewarm, Duration::from_secs(15 * 60));
        assert_eq!(v.expiry_warning, Duration::from_secs(10 * 60));
        assert_eq!(v.extension_step, Duration::from_secs(30 * 60));
        assert_eq!(v.retention, Duration::from_secs(24 * 3600));
        assert_eq!(
            v.participants,
            vec![ValidParticipant {
                id: "user1".into(),
                email: None
            }]
        );
        assert_eq!(v.granted_duration(2), Duration::from_secs(5 * 3600));
    }

    #[test]
    fn the_original_example_is_valid() {
        let yaml = include_str!("../../../deploy/workshop-operator/samples/workshop-example.yaml");
        let ws: Workshop = serde_yaml::from_str(yaml).unwrap();
        let v = validate(&ws).unwrap();
        assert_eq!(v.participants.len(), 1);
    }

    #[test]
    fn counted_participants_get_generated_ids() {
        let mut s = spec();
        s.participants = 3;
        let ids: Vec<String> = check(&s)
            .unwrap()
            .participants
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["user1", "user2", "user3"]);
    }

    #[test]
    fn durations() {
        let mut s = spec();
        s.duration = "1h 30m".into();
        let e = err(&s);
        assert_eq!(e.reason(), "InvalidDuration");
        assert!(
            e.to_string()
                .starts_with("spec.duration: invalid duration \"1h 30m\""),
            "{e}"
        );

        for bad in ["30m2h", "0h", "", "4", "31d", "-1h"] {
            s.duration = bad.into();
            assert!(
                matches!(
                    err(&s),
                    ValidationError::Duration {
                        field: "duration",
                        ..
                    }
                ),
                "{bad}"
            );
        }
        s.duration = "30d".into();
        s.extension.max = 0;
        assert!(check(&s).is_ok());

        // Zero is "none" for the lead times and the retention.
        let mut s = spec();
        s.prewarm = "0s".into();
        s.expiry_warning = "0m".into();
        s.retention.after_expiry = "0s".into();
        let v = check(&s).unwrap();
        assert_eq!(
            (v.prewarm, v.expiry_warning, v.retention),
            (Duration::ZERO, Duration::ZERO, Duration::ZERO)
        );
        s.retention.after_expiry = "91d".into();
        assert!(matches!(
            err(&s),
            ValidationError::Duration {
                field: "retention.afterExpiry",
                ..
            }
        ));
        s.retention.after_expiry = "1x".into();
        assert!(matches!(
            err(&s),
            ValidationError::Duration {
                field: "retention.afterExpiry",
                ..
            }
        ));
    }

    #[test]
    fn total_duration_with_extensions_is_bounded() {
        let mut s = spec();
        s.duration = "29d".into();
        s.extension.step = "1d".into();
        s.extension.max = 1;
        assert!(check(&s).is_ok());
        s.extension.max = 2;
        let e = err(&s);
        assert_eq!(e.reason(), "InvalidDuration");
        assert_eq!(
            e.to_string(),
            "spec.duration plus every allowed extension (29d + 2 x 1d) must be at most 30d"
        );
    }

    #[test]
    fn extensions() {
        let mut s = spec();
        s.extension.granted = 3;
        assert_eq!(err(&s), ValidationError::Extension { granted: 3, max: 2 });
        s.extension.granted = -1;
        assert_eq!(err(&s).reason(), "InvalidExtension");
        s.extension.granted = 0;
        s.extension.step = "0m".into();
        assert!(matches!(
            err(&s),
            ValidationError::Duration {
                field: "extension.step",
                ..
            }
        ));
    }

    #[test]
    fn resources() {
        let mut s = spec();
        s.resources.cpu = "250m".into();
        let e = err(&s);
        assert_eq!(
            e.to_string(),
            "spec.resources.cpuRequest (500m) must not be greater than spec.resources.cpu (250m)"
        );
        assert_eq!(e.reason(), "InvalidResources");
        s.resources.cpu_request = "250m".into();
        assert!(check(&s).is_ok());

        s.resources.memory = "lots".into();
        assert!(matches!(
            err(&s),
            ValidationError::Quantity {
                field: "resources.memory",
                ..
            }
        ));
        s.resources.memory = "2Gi".into();
        s.storage.size = "0".into();
        assert_eq!(
            err(&s),
            ValidationError::NotPositive {
                field: "storage.size"
            }
        );
        s.storage.size = "1Gi".into();
        s.resources.memory_request = "3Gi".into();
        assert!(matches!(
            err(&s),
            ValidationError::RequestAboveLimit {
                request: "memoryRequest",
                ..
            }
        ));
    }

    #[test]
    fn names() {
        let s = spec();
        assert!(validate_spec("data-science-101", &s).is_ok());
        for bad in ["101-intro", "Intro", "intro_r", "intro-", &"a".repeat(48)] {
            let e = validate_spec(bad, &s).unwrap_err();
            assert_eq!(e.reason(), "InvalidName", "{bad}");
        }
        assert!(validate_spec(&"a".repeat(47), &s).is_ok());
        let mut s = spec();
        s.name = "  ".into();
        assert_eq!(err(&s), ValidationError::EmptyDisplayName);
    }

    #[test]
    fn participant_lists() {
        let mut s = spec();
        s.participant_list = named(&["ada", "grace"]);
        let v = check(&s).unwrap();
        assert_eq!(
            v.participants
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>(),
            ["ada", "grace"]
        );
        s.participants = 2;
        assert!(check(&s).is_ok());
        s.participants = 3;
        assert_eq!(
            err(&s),
            ValidationError::ParticipantMismatch {
                count: 3,
                listed: 2
            }
        );

        let mut s = spec();
        s.participant_list = named(&["ada", "ada"]);
        assert_eq!(err(&s), ValidationError::DuplicateParticipant("ada".into()));
        s.participant_list = named(&[]);
        assert_eq!(err(&s), ValidationError::ParticipantListLength(0));
        for bad in ["Ada", "-ada", "a.b", "", "abcdefghijklmnopqrstu"] {
            s.participant_list = named(&[bad]);
            assert!(
                matches!(err(&s), ValidationError::ParticipantId { .. }),
                "{bad:?}"
            );
        }
        // A 47-character name leaves room for 7-character ids only.
        s.participant_list = named(&["abcdefgh"]);
        let long = "a".repeat(47);
        assert!(matches!(
            validate_spec(&long, &s),
            Err(ValidationError::ParticipantId { .. })
        ));
        s.participant_list = named(&["abcdefg"]);
        assert!(validate_spec(&long, &s).is_ok());

        s.participant_list = Some(vec![Participant {
            id: "ada".into(),
            email: Some("ada at example.com".into()),
        }]);
        assert_eq!(err(&s), ValidationError::Email("ada at example.com".into()));
        s.participant_list = Some(vec![Participant {
            id: "ada".into(),
            email: Some("ada@example.com".into()),
        }]);
        assert_eq!(
            check(&s).unwrap().participants[0].email.as_deref(),
            Some("ada@example.com")
        );

        let mut s = spec();
        for bad in [0, MAX_PARTICIPANTS + 1] {
            s.participants = bad;
            assert_eq!(err(&s), ValidationError::ParticipantCount(bad));
        }
    }

    #[test]
    fn ingress_and_storage_names() {
        let mut s = spec();
        s.ingress = Some(WorkshopIngress {
            host: Some("Workshop.Example.com".into()),
            annotations: Default::default(),
            ingress_class_name: None,
            tls_secret_name: None,
            routing: IngressRouting::Path,
        });
        let e = err(&s);
        assert_eq!(e.reason(), "InvalidIngress");
        assert!(
            e.to_string()
                .contains("spec.ingress.host \"Workshop.Example.com\""),
            "{e}"
        );

        let ingress = s.ingress.as_mut().unwrap();
        ingress.host = Some(String::new());
        assert!(check(&s).is_ok());
        s.ingress.as_mut().unwrap().routing = IngressRouting::Host;
        assert_eq!(err(&s), ValidationError::HostRoutingWithoutHost);
        let ingress = s.ingress.as_mut().unwrap();
        ingress.host = Some("ws.example.com".into());
        ingress.tls_secret_name = Some("ws_tls".into());
        assert!(matches!(
            err(&s),
            ValidationError::DnsName {
                field: "ingress.tlsSecretName",
                ..
            }
        ));

        let mut s = spec();
        s.storage.storage_class = Some("".into());
        assert!(check(&s).is_ok());
        s.storage.storage_class = Some("fast ssd".into());
        assert!(matches!(
            err(&s),
            ValidationError::DnsName {
                field: "storage.storageClass",
                ..
            }
        ));
        let mut s = spec();
        s.image = "rocker/rstudio latest".into();
        assert_eq!(err(&s), ValidationError::Image);
    }

    #[test]
    fn dns_helpers() {
        assert!(is_dns_subdomain("workshop.example.com"));
        assert!(!is_dns_subdomain("workshop..example.com"));
        assert!(!is_dns_subdomain(".example.com"));
        assert!(is_dns_label("0abc"));
        assert!(!is_dns_1035_label("0abc"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
