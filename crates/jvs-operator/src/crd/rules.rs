//! CEL rules shared by several fields.
//
// Candidates for operator-core: the workshop operator builds the same duration and quantity rules.

use std::time::Duration;

use kube::core::{Message, Rule};
use operator_core::duration::{DURATION_PATTERN, format_duration};

use super::{DNS_SUBDOMAIN_PATTERN, JVS_NAME_PATTERN};

const DAY: u64 = 24 * 3600;

/// The whole string follows the duration grammar (`1d2h30m15s`).
pub(crate) fn duration_format() -> Rule {
    Rule::new(format!("self.matches('{DURATION_PATTERN}')")).message(
        "must be a duration like 24h, 90m or 2d12h: numbers followed by d, h, m or s, in that order, without spaces",
    )
}

/// At least one non-zero digit: a well-formed duration greater than zero.
pub(crate) fn positive_duration() -> Rule {
    Rule::new("self.matches('[1-9]')").message("must be greater than zero")
}

/// The duration, summed in seconds, is at most `max`. Runs of ten or more digits are rejected
/// before summing, so the arithmetic cannot overflow.
pub(crate) fn max_duration(max: Duration) -> Rule {
    let part = |unit: char, seconds: u64| {
        format!(
            "(self.find('[0-9]+{unit}') == '' ? 0 : int(self.find('[0-9]+{unit}').replace('{unit}', '')) * {seconds})"
        )
    };
    let sum = [part('d', DAY), part('h', 3600), part('m', 60), part('s', 1)].join(" + ");
    Rule::new(format!(
        "!self.matches('[0-9]{{10}}') && {sum} <= {}",
        max.as_secs()
    ))
    .message(Message::Message(format!(
        "must be at most {}",
        format_duration(max)
    )))
}

/// A Kubernetes quantity.
pub(crate) fn quantity() -> Rule {
    Rule::new("isQuantity(self)").message("must be a quantity such as 10Gi or 500Mi")
}

/// A quantity greater than zero (malformed ones are reported by [`quantity`]).
pub(crate) fn positive_quantity() -> Rule {
    Rule::new("!isQuantity(self) || quantity(self).isGreaterThan(quantity('0'))")
        .message("must be greater than zero")
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
