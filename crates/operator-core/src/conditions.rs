//! Status conditions (`metav1.Condition`) and the time conversions they need.
//!
//! The rules every controller follows:
//! - `lastTransitionTime` changes only when a condition's `status` flips;
//! - `reason`, `message` and `observedGeneration` are updated in place;
//! - the list is kept sorted by `type`, so status output is deterministic;
//! - [`set_condition`] reports whether anything changed, so a controller can skip writing a status
//!   that did not change.
//!
//! `k8s-openapi` 0.29 represents `metav1.Time` as a wrapper around [`jiff::Timestamp`]
//! (`k8s_openapi::jiff`), not chrono; [`to_k8s_time`] and [`from_k8s_time`] convert.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff;

/// The object is fully working.
pub const READY: &str = "Ready";
/// The controller is moving the object towards its desired state.
pub const PROGRESSING: &str = "Progressing";
/// Something is wrong that needs attention (invalid spec, failing dependency).
pub const DEGRADED: &str = "Degraded";

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// `"True"`
    True,
    /// `"False"`
    False,
    /// `"Unknown"`
    Unknown,
}

impl ConditionStatus {
    /// The API string: `"True"`, `"False"` or `"Unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The desired state of one condition, to be merged by [`set_condition`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Condition type in CamelCase, e.g. [`READY`].
    pub type_: String,
    /// Status.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason (required by the API; see [`is_valid_reason`]).
    pub reason: String,
    /// Human-readable message (never secrets).
    pub message: String,
    /// The `.metadata.generation` this condition was computed from.
    pub observed_generation: Option<i64>,
}

impl ConditionUpdate {
    /// A condition with the given status.
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConditionUpdate {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
        }
    }

    /// A condition with status `True`.
    pub fn true_(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(type_, ConditionStatus::True, reason, message)
    }

    /// A condition with status `False`.
    pub fn false_(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(type_, ConditionStatus::False, reason, message)
    }

    /// A condition with status `Unknown`.
    pub fn unknown(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(type_, ConditionStatus::Unknown, reason, message)
    }

    /// Sets `observedGeneration` (usually `obj.metadata.generation`).
    pub fn observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }
}

/// Merges `update` into `conditions` and returns whether anything changed.
///
/// `lastTransitionTime` is set to `now` for a new condition or when the status flips, and kept
/// otherwise. The list is kept sorted by type (an unsorted input list is sorted, which counts as
/// a change).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    now: DateTime<Utc>,
) -> bool {
    debug_assert!(
        is_valid_reason(&update.reason),
        "condition reason {:?} must be CamelCase ([A-Za-z][A-Za-z0-9_,:]*)",
        update.reason
    );
    let mut changed = false;
    if !conditions.is_sorted_by(|a, b| a.type_ <= b.type_) {
        conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        changed = true;
    }
    let status = update.status.as_str();
    match conditions.binary_search_by(|c| c.type_.as_str().cmp(&update.type_)) {
        Ok(i) => {
            let c = &mut conditions[i];
            if c.status != status {
                c.status = status.to_owned();
                c.last_transition_time = to_k8s_time(now);
                changed = true;
            }
            if c.reason != update.reason {
                c.reason = update.reason;
                changed = true;
            }
            if c.message != update.message {
                c.message = update.message;
                changed = true;
            }
            if c.observed_generation != update.observed_generation {
                c.observed_generation = update.observed_generation;
                changed = true;
            }
        }
        Err(i) => {
            conditions.insert(
                i,
                Condition {
                    type_: update.type_,
                    status: status.to_owned(),
                    reason: update.reason,
                    message: update.message,
                    observed_generation: update.observed_generation,
                    last_transition_time: to_k8s_time(now),
                },
            );
            changed = true;
        }
    }
    changed
}

/// Removes the condition of type `type_`; returns whether it was present.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Whether `reason` is accepted by the API server's `metav1.Condition` validation:
/// `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, at most 1024 characters.
pub fn is_valid_reason(reason: &str) -> bool {
    let b = reason.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':');
    !b.is_empty()
        && b.len() <= 1024
        && b[0].is_ascii_alphabetic()
        && b.iter().all(inner)
        && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
}

/// Converts to `metav1.Time`, truncated to whole seconds (the precision the API server stores and
/// serializes, so a value read back compares equal to the one written).
pub fn to_k8s_time(t: DateTime<Utc>) -> Time {
    // Every i64 second count chrono can represent is within jiff's range for realistic dates;
    // fall back to the epoch rather than panic on absurd input.
    Time(jiff::Timestamp::from_second(t.timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Converts `metav1.Time` to chrono.
pub fn from_k8s_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().unsigned_abs())
        .unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cond(type_: &str, status: &str, reason: &str, message: &str, t: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: to_k8s_time(at(t)),
        }
    }

    #[test]
    fn adds_conditions_sorted_by_type() {
        let t0 = "2024-01-01T00:00:00Z";
        let mut conds = Vec::new();
        let gen1 = Some(1);
        assert!(set_condition(
            &mut conds,
            ConditionUpdate::true_(READY, "Available", "all good").observed_generation(gen1),
            at(t0)
        ));
        assert!(set_condition(
            &mut conds,
            ConditionUpdate::false_(DEGRADED, "AsExpected", "").observed_generation(gen1),
            at(t0)
        ));
        assert!(set_condition(
            &mut conds,
            ConditionUpdate::new(PROGRESSING, false, "Done", "").observed_generation(gen1),
            at(t0)
        ));
        assert_eq!(
            conds,
            vec![
                cond("Degraded", "False", "AsExpected", "", t0),
                cond("Progressing", "False", "Done", "", t0),
                cond("Ready", "True", "Available", "all good", t0),
            ]
        );
        assert!(is_true(&conds, READY));
        assert!(!is_true(&conds, DEGRADED));
        assert!(!is_true(&conds, "Missing"));
        assert_eq!(find(&conds, PROGRESSING).unwrap().reason, "Done");
        assert!(find(&conds, "Missing").is_none());
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let t0 = "2024-01-01T00:00:00Z";
        let t1 = "2024-01-01T01:00:00Z";
        let t2 = "2024-01-01T02:00:00Z";
        let mut conds = vec![cond("Ready", "True", "Available", "ok", t0)];

        // Same values at a later time: no change at all.
        let same = ConditionUpdate::true_(READY, "Available", "ok").observed_generation(Some(1));
        assert!(!set_condition(&mut conds, same.clone(), at(t1)));
        assert_eq!(conds, vec![cond("Ready", "True", "Available", "ok", t0)]);

        // New reason, message and generation: updated in place, transition time kept.
        let reworded =
            ConditionUpdate::true_(READY, "Reconciled", "still ok").observed_generation(Some(2));
        assert!(set_condition(&mut conds, reworded, at(t1)));
        let mut expected = cond("Ready", "True", "Reconciled", "still ok", t0);
        expected.observed_generation = Some(2);
        assert_eq!(conds, vec![expected]);

        // Status flips: transition time moves.
        let down =
            ConditionUpdate::unknown(READY, "Pending", "waiting").observed_generation(Some(2));
        assert!(set_condition(&mut conds, down.clone(), at(t2)));
        let mut expected = cond("Ready", "Unknown", "Pending", "waiting", t2);
        expected.observed_generation = Some(2);
        assert_eq!(conds, vec![expected.clone()]);
        assert!(!set_condition(&mut conds, down, at("2024-01-02T00:00:00Z")));
        assert_eq!(conds, vec![expected]);
    }

    #[test]
    fn sorts_unsorted_input_and_reports_it() {
        let t0 = "2024-01-01T00:00:00Z";
        let mut conds = vec![
            cond("Ready", "True", "A", "", t0),
            cond("Degraded", "False", "B", "", t0),
        ];
        let update = ConditionUpdate::true_(READY, "A", "").observed_generation(Some(1));
        assert!(set_condition(&mut conds, update.clone(), at(t0)));
        assert_eq!(
            conds,
            vec![
                cond("Degraded", "False", "B", "", t0),
                cond("Ready", "True", "A", "", t0),
            ]
        );
        assert!(!set_condition(&mut conds, update, at(t0)));
        assert!(remove_condition(&mut conds, DEGRADED));
        assert!(!remove_condition(&mut conds, DEGRADED));
        assert_eq!(conds, vec![cond("Ready", "True", "A", "", t0)]);
    }

    #[test]
    fn reasons() {
        for ok in ["Ready", "A", "Invalid_Spec", "a:b,c_", "X1"] {
            assert!(is_valid_reason(ok), "{ok}");
        }
        for bad in [
            "",
            "1Bad",
            "has space",
            "trailing:",
            "trailing,",
            "dash-ed",
            "Ünicode",
        ] {
            assert!(!is_valid_reason(bad), "{bad}");
        }
    }

    #[test]
    fn time_conversion_truncates_to_seconds_and_round_trips() {
        let t = at("2024-05-06T07:08:09.987654321Z");
        let k = to_k8s_time(t);
        assert_eq!(serde_json::to_value(&k).unwrap(), "2024-05-06T07:08:09Z");
        assert_eq!(from_k8s_time(&k), at("2024-05-06T07:08:09Z"));
        let parsed: Time = serde_json::from_value("2024-05-06T07:08:09Z".into()).unwrap();
        assert_eq!(parsed, k);
    }
}
