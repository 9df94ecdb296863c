//! CEL validation rules shared by the operators' CRD schemas (evaluated by
//! the API server at admission).

use std::time::Duration;

use kube::core::{Message, Rule};

use crate::duration::format_duration;

/// On a duration string that already matches `DURATION_PATTERN`: at least
/// one non-zero digit, i.e. greater than zero.
pub fn positive_duration() -> Rule {
    Rule::new("self.matches('[1-9]')").message("must be greater than zero")
}

/// On a duration string that already matches `DURATION_PATTERN`: the
/// duration, summed in seconds, is at most `max`. Runs of ten or more digits
/// are rejected before summing, so the arithmetic cannot overflow.
pub fn max_duration(max: Duration) -> Rule {
    const DAY: u64 = 86_400;
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

/// A quantity greater than zero (malformed ones are left to `isQuantity`).
pub fn positive_quantity() -> Rule {
    Rule::new("!isQuantity(self) || quantity(self).isGreaterThan(quantity('0'))")
        .message("must be greater than zero")
}
