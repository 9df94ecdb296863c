//! The standard `app.kubernetes.io/*` labels every child object carries.
//!
//! ```
//! use operator_core::labels::{Labels, NAME, INSTANCE, COMPONENT, MANAGED_BY, PART_OF};
//!
//! let labels = Labels::new("workshop", "intro-to-r")
//!     .component("rstudio")
//!     .managed_by("workshop-operator")
//!     .part_of("orchestra");
//! let all = labels.build();
//! assert_eq!(all[NAME], "workshop");
//! assert_eq!(all[MANAGED_BY], "workshop-operator");
//! // Selectors use only the labels that never change for the object's lifetime.
//! let selector = labels.selector();
//! assert_eq!(selector.len(), 3);
//! assert_eq!(selector[COMPONENT], "rstudio");
//! assert!(!selector.contains_key(PART_OF));
//! ```
//!
//! Label values must be at most 63 characters of `[A-Za-z0-9._-]`, starting and ending with an
//! alphanumeric. Object names may be longer (up to 253 characters), so every value goes through
//! [`label_value`], which keeps valid values unchanged and maps invalid ones deterministically to
//! a valid value with a hash suffix (so two long names do not collide).

use std::collections::BTreeMap;

/// `app.kubernetes.io/name`: the application, e.g. `workshop` or `rstudio`.
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the instance, usually the owning custom resource's name.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: the role within the application, e.g. `server`, `storage`.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: the operator managing the object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`: the higher-level application this is part of.
pub const PART_OF: &str = "app.kubernetes.io/part-of";

/// Builder for the standard labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    name: String,
    instance: String,
    component: Option<String>,
    managed_by: Option<String>,
    part_of: Option<String>,
    extra: BTreeMap<String, String>,
}

impl Labels {
    /// Labels with `name` and `instance` set.
    pub fn new(name: impl Into<String>, instance: impl Into<String>) -> Self {
        Labels {
            name: name.into(),
            instance: instance.into(),
            component: None,
            managed_by: None,
            part_of: None,
            extra: BTreeMap::new(),
        }
    }

    /// Sets `app.kubernetes.io/component` (part of the selector).
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.component = Some(component.into());
        self
    }

    /// Sets `app.kubernetes.io/managed-by`.
    pub fn managed_by(mut self, managed_by: impl Into<String>) -> Self {
        self.managed_by = Some(managed_by.into());
        self
    }

    /// Sets `app.kubernetes.io/part-of`.
    pub fn part_of(mut self, part_of: impl Into<String>) -> Self {
        self.part_of = Some(part_of.into());
        self
    }

    /// Adds another label (not part of the selector). The standard keys set on this builder take
    /// precedence over extra labels with the same key.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// All labels.
    pub fn build(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), label_value(v)))
            .collect();
        let optional = [(MANAGED_BY, &self.managed_by), (PART_OF, &self.part_of)];
        for (key, value) in optional {
            if let Some(v) = value {
                out.insert(key.to_owned(), label_value(v));
            }
        }
        out.extend(self.selector());
        out
    }

    /// The selector labels: name, instance and component (if set). These never change for an
    /// object's lifetime, so they are safe for immutable selectors (Deployments, StatefulSets).
    pub fn selector(&self) -> BTreeMap<String, String> {
        selector_labels(&self.name, &self.instance, self.component.as_deref())
    }
}

/// The selector labels for `name`, `instance` and an optional `component`.
pub fn selector_labels(
    name: &str,
    instance: &str,
    component: Option<&str>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(NAME.to_owned(), label_value(name));
    out.insert(INSTANCE.to_owned(), label_value(instance));
    if let Some(c) = component {
        out.insert(COMPONENT.to_owned(), label_value(c));
    }
    out
}

/// Whether `value` is a valid label value.
pub fn is_valid_label_value(value: &str) -> bool {
    let b = value.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `value` if it is a valid label value; otherwise a deterministic valid value: invalid characters
/// become `-`, the result is cut to 54 characters and suffixed with `-` and 8 hex digits of a hash
/// of the original, so distinct inputs stay distinct.
pub fn label_value(value: &str) -> String {
    if is_valid_label_value(value) {
        return value.to_owned();
    }
    let mapped: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut prefix: &str = &mapped[..mapped.len().min(54)];
    prefix = prefix.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let hash = format!("{:08x}", fnv1a32(value.as_bytes()));
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// FNV-1a, 32 bit: tiny, stable across releases and platforms.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn builds_all_and_selector_labels() {
        let labels = Labels::new("devserver", "alice-dev")
            .component("ssh")
            .managed_by("devserver-operator")
            .part_of("devserver")
            .with("example.com/team", "platform")
            .with(NAME, "ignored");
        assert_eq!(
            labels.build(),
            map(&[
                ("app.kubernetes.io/component", "ssh"),
                ("app.kubernetes.io/instance", "alice-dev"),
                ("app.kubernetes.io/managed-by", "devserver-operator"),
                ("app.kubernetes.io/name", "devserver"),
                ("app.kubernetes.io/part-of", "devserver"),
                ("example.com/team", "platform"),
            ])
        );
        assert_eq!(
            labels.selector(),
            map(&[
                ("app.kubernetes.io/component", "ssh"),
                ("app.kubernetes.io/instance", "alice-dev"),
                ("app.kubernetes.io/name", "devserver"),
            ])
        );
        assert_eq!(
            Labels::new("jvs", "ws1").build(),
            map(&[
                ("app.kubernetes.io/instance", "ws1"),
                ("app.kubernetes.io/name", "jvs")
            ])
        );
        assert_eq!(
            selector_labels("jvs", "ws1", Some("snapshot")),
            map(&[
                ("app.kubernetes.io/component", "snapshot"),
                ("app.kubernetes.io/instance", "ws1"),
                ("app.kubernetes.io/name", "jvs"),
            ])
        );
    }

    #[test]
    fn label_values_are_made_valid_deterministically() {
        assert_eq!(label_value("my-app.v1_2"), "my-app.v1_2");
        assert_eq!(label_value(""), "");
        let long = "a".repeat(100);
        let v = label_value(&long);
        assert!(is_valid_label_value(&v), "{v}");
        assert_eq!(v.len(), 63);
        assert_eq!(v, label_value(&long));
        assert_ne!(v, label_value(&"a".repeat(101)));
        let v = label_value("team/alice@example.com");
        assert!(is_valid_label_value(&v), "{v}");
        assert!(v.starts_with("team-alice-example.com-"), "{v}");
        assert!(is_valid_label_value(&label_value("///")));
        assert!(is_valid_label_value(&label_value("-lead")));
        assert!(!is_valid_label_value(&"a".repeat(64)));
        assert!(!is_valid_label_value("a b"));
    }
}
