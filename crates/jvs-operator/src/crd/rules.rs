//! CEL rules shared by several fields.
//
// Candidates for operator-core: the workshop operator builds the same duration and quantity rules.

use kube::core::{Message, Rule};
pub(crate) use operator_core::cel::{max_duration, positive_duration, positive_quantity};
use operator_core::duration::DURATION_PATTERN;

use super::{DNS_SUBDOMAIN_PATTERN, JVS_NAME_PATTERN};

/// The whole string follows the duration grammar (`1d2h30m15s`).
pub(crate) fn duration_format() -> Rule {
    Rule::new(format!("self.matches('{DURATION_PATTERN}')")).message(
        "must be a duration like 24h, 90m or 2d12h: numbers followed by d, h, m or s, in that order, without spaces",
    )
}

/// A Kubernetes quantity.
pub(crate) fn quantity() -> Rule {
    Rule::new("isQuantity(self)").message("must be a quantity such as 10Gi or 500Mi")
}

/// A name `jvs` accepts for tags and worktrees.
pub(crate) fn jvs_name(what: &str) -> Rule {
    Rule::new(format!("self.matches('{JVS_NAME_PATTERN}')")).message(Message::Message(format!(
        "{what} may contain only letters, digits, '.', '_' and '-' (what jvs accepts)"
    )))
}

/// Empty or a DNS-1123 subdomain.
pub(crate) fn optional_dns_subdomain(what: &str) -> Rule {
    Rule::new(format!(
        "self == '' || self.matches('{DNS_SUBDOMAIN_PATTERN}')"
    ))
    .message(Message::Message(format!("must be {what}")))
}

/// A DNS-1123 subdomain.
pub(crate) fn dns_subdomain(what: &str) -> Rule {
    Rule::new(format!("self.matches('{DNS_SUBDOMAIN_PATTERN}')"))
        .message(Message::Message(format!("must be {what}")))
}
