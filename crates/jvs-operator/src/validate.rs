//! Validation of Workspace and Snapshot specs, turning them into validated models or a
//! [`ValidationError`] with a message for the user.
//!
//! Admission (schema + CEL) already rejects most of this; the controllers check again because
//! objects may predate the current CRD, and add what CEL cannot express: cron expressions and
//! time zones. Pure: no I/O, no clock.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::ResourceExt;
use operator_core::cron::{CronError, CronSchedule};
use operator_core::duration::{DurationError, parse_duration_bounded};
use operator_core::quantity;

use crate::crd::snapshot::{JVS_GZIP_LEVELS, MAX_NOTE_LEN};
use crate::crd::workspace::{
    MAX_KEEP_MIN_AGE, MAX_QUIESCE_TIMEOUT, MAX_REPLICAS, MAX_SNAPSHOT_COUNT,
};
use crate::crd::{
    Compression, CompressionType, MAX_TAG_LEN, MAX_TAGS, MAX_WORKSPACE_NAME_LEN, QuiesceMode,
    Snapshot, SnapshotSpec, SnapshotTemplate, Workspace, WorkspaceSpec,
};
pub use operator_core::names::{is_dns_label, is_dns_subdomain};

/// The `--compress` levels of `jvs snapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressLevel {
    None,
    Fast,
    Default,
    Max,
}

impl CompressLevel {
    /// The value of `jvs snapshot --compress`.
    pub fn as_flag(self) -> &'static str {
        match self {
            CompressLevel::None => "none",
            CompressLevel::Fast => "fast",
            CompressLevel::Default => "default",
            CompressLevel::Max => "max",
        }
    }
}

/// A Workspace spec that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidWorkspace {
    /// `retentionPolicy.keepMinAge` (zero when there is no policy or it is `0s`).
    pub keep_min_age: Duration,
    /// The auto-snapshot schedule, when enabled.
    pub schedule: Option<CronSchedule>,
    /// How long quiescing may take.
    pub quiesce_timeout: Duration,
}

/// A Snapshot spec that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSnapshot {
    /// The explicit compression, mapped onto `jvs`; `None` when the spec leaves it to the template.
    pub compress: Option<CompressLevel>,
    /// The worktree to restore into, when `restoreOnCreate` is set.
    pub restore_worktree: Option<String>,
}

/// Why a spec is invalid. `Display` is the user-facing message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "metadata.name {0:?} must be a DNS label (lower-case letters, digits and '-') of at most {MAX_WORKSPACE_NAME_LEN} characters"
    )]
    WorkspaceName(String),
    #[error("spec.replicas must be between 0 and {MAX_REPLICAS}, got {0}")]
    Replicas(i32),
    #[error("spec.storage: {0}")]
    Storage(#[source] quantity::QuantityError),
    #[error("spec.storage must be greater than zero")]
    StorageNotPositive,
    #[error("spec.{field} {value:?} must be {what}")]
    Name {
        field: &'static str,
        value: String,
        what: &'static str,
    },
    #[error(
        "spec.juiceFsConfig needs source, or secretsRef.keys.source naming the Secret key that holds it"
    )]
    JuiceFsSource,
    #[error(
        "spec.juiceFsConfig.source must be a JuiceFS metadata URL such as redis://redis:6379/0"
    )]
    JuiceFsSourceUrl,
    #[error("spec.{field} must be an absolute path, got {value:?}")]
    NotAbsolute { field: &'static str, value: String },
    #[error("spec.{field}: {source}")]
    Duration {
        field: &'static str,
        #[source]
        source: DurationError,
    },
    #[error("spec.{field} must be between {min} and {MAX_SNAPSHOT_COUNT}, got {value}")]
    Count {
        field: &'static str,
        min: i32,
        value: i32,
    },
    #[error("spec.autoSnapshot.schedule is required when autoSnapshot is enabled")]
    MissingSchedule,
    #[error("spec.autoSnapshot: {0}")]
    Schedule(#[source] CronError),
    #[error(
        "spec.quiesce mode Exec needs preSnapshot: the command run in each workload pod before a snapshot"
    )]
    QuiesceCommand,
    #[error("spec.runner.image must be an image reference without spaces")]
    Image,
    #[error(
        "spec.{field}: tag {tag:?} must be 1 to {MAX_TAG_LEN} letters, digits, '.', '_' or '-' (what jvs accepts)"
    )]
    Tag { field: &'static str, tag: String },
    #[error("spec.{field}: tag {tag:?} appears more than once")]
    DuplicateTag { field: &'static str, tag: String },
    #[error("spec.{field} has {count} tags; at most {MAX_TAGS} are allowed")]
    TooManyTags { field: &'static str, count: usize },
    #[error("spec.note is longer than {MAX_NOTE_LEN} characters")]
    NoteTooLong,
    #[error("spec.compression: jvs compresses snapshots with gzip only: type must be gzip or none")]
    CompressionType,
    #[error(
        "spec.compression: jvs compresses with gzip at level 1 (fast), 6 (default) or 9 (max) only, got level {0}"
    )]
    CompressionLevel(i32),
    #[error("spec.compression: level must be omitted (or 0) when type is none, got {0}")]
    CompressionNoneLevel(i32),
    #[error(
        "spec.restoreWorktree {0:?} must be letters, digits, '.', '_' or '-', not main and without '..'"
    )]
    RestoreWorktree(String),
    #[error("spec.restoreWorktree is used only with restoreOnCreate: true")]
    RestoreWorktreeWithoutRestore,
}

impl ValidationError {
    /// A stable CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        use ValidationError::*;
        match self {
            WorkspaceName(_) | Name { .. } => "InvalidName",
            Replicas(_) | Storage(_) | StorageNotPositive => "InvalidStorage",
            JuiceFsSource | JuiceFsSourceUrl | NotAbsolute { .. } => "InvalidJuiceFsConfig",
            Duration { .. } | Count { .. } => "InvalidPolicy",
            MissingSchedule | Schedule(_) => "InvalidSchedule",
            QuiesceCommand => "InvalidQuiesce",
            Image => "InvalidRunner",
            Tag { .. } | DuplicateTag { .. } | TooManyTags { .. } | NoteTooLong => "InvalidTags",
            CompressionType | CompressionLevel(_) | CompressionNoneLevel(_) => {
                "UnsupportedCompression"
            }
            RestoreWorktree(_) | RestoreWorktreeWithoutRestore => "InvalidRestore",
        }
    }
}

/// Validates a Workspace (its name takes part in child names).
pub fn validate_workspace(ws: &Workspace) -> Result<ValidWorkspace, ValidationError> {
    validate_workspace_spec(&ws.name_any(), &ws.spec)
}

/// Validates `spec` for a Workspace named `name`.
pub fn validate_workspace_spec(
    name: &str,
    spec: &WorkspaceSpec,
) -> Result<ValidWorkspace, ValidationError> {
    if name.len() > MAX_WORKSPACE_NAME_LEN || !is_dns_label(name) {
        return Err(ValidationError::WorkspaceName(name.to_string()));
    }
    if !(0..=MAX_REPLICAS).contains(&spec.replicas) {
        return Err(ValidationError::Replicas(spec.replicas));
    }
    if !quantity::parse(&spec.storage)
        .map_err(ValidationError::Storage)?
        .is_positive()
    {
        return Err(ValidationError::StorageNotPositive);
    }
    optional_dns_subdomain(
        "storageClassName",
        spec.storage_class_name.as_deref(),
        "a StorageClass name",
    )?;

    if let Some(jfs) = &spec.juice_fs_config {
        let source_in_secret = jfs
            .secrets_ref
            .as_ref()
            .is_some_and(|s| s.keys.contains_key("source"));
        match &jfs.source {
            None if !source_in_secret => return Err(ValidationError::JuiceFsSource),
            Some(source) if !is_url(source) => return Err(ValidationError::JuiceFsSourceUrl),
            _ => {}
        }
        absolute("juiceFsConfig.metaDir", jfs.meta_dir.as_deref())?;
        absolute("juiceFsConfig.cacheDir", jfs.cache_dir.as_deref())?;
        if let Some(secrets) = &jfs.secrets_ref {
            if !is_dns_subdomain(&secrets.name) {
                return Err(name_error(
                    "juiceFsConfig.secretsRef.name",
                    &secrets.name,
                    "a Secret name",
                ));
            }
            for key in secrets.keys.values() {
                if !is_secret_key(key) {
                    return Err(name_error(
                        "juiceFsConfig.secretsRef.keys",
                        key,
                        "a Secret key (letters, digits, '-', '_' and '.')",
                    ));
                }
            }
        }
    }

    let mut keep_min_age = Duration::ZERO;
    if let Some(policy) = &spec.retention_policy {
        count(
            "retentionPolicy.keepMinSnapshots",
            policy.keep_min_snapshots,
            0,
        )?;
        keep_min_age = duration_or_zero(
            "retentionPolicy.keepMinAge",
            &policy.keep_min_age,
            MAX_KEEP_MIN_AGE,
        )?;
        tags("retentionPolicy.keepTags", &policy.keep_tags)?;
    }

    let mut schedule = None;
    if let Some(auto) = &spec.auto_snapshot {
        count("autoSnapshot.maxSnapshots", auto.max_snapshots, 1)?;
        let parsed = match &auto.schedule {
            Some(expr) => Some(
                CronSchedule::parse(expr, auto.time_zone.as_deref())
                    .map_err(ValidationError::Schedule)?,
            ),
            None => {
                if let Some(zone) = &auto.time_zone {
                    CronSchedule::parse("@daily", Some(zone)).map_err(ValidationError::Schedule)?;
                }
                None
            }
        };
        if auto.enabled {
            schedule = Some(parsed.ok_or(ValidationError::MissingSchedule)?);
        }
    }

    if let Some(image) = spec.runner.as_ref().and_then(|r| r.image.as_deref())
        && (image.is_empty() || image.chars().any(char::is_whitespace))
    {
        return Err(ValidationError::Image);
    }
    if let Some(workload) = &spec.workload {
        absolute("workload.mountPath", Some(&workload.mount_path))?;
    }
    if spec.quiesce.mode == QuiesceMode::Exec && spec.quiesce.pre_snapshot.is_empty() {
        return Err(ValidationError::QuiesceCommand);
    }
    let quiesce_timeout = parse_duration_bounded(&spec.quiesce.timeout, MAX_QUIESCE_TIMEOUT)
        .map_err(|source| ValidationError::Duration {
            field: "quiesce.timeout",
            source,
        })?;

    Ok(ValidWorkspace {
        keep_min_age,
        schedule,
        quiesce_timeout,
    })
}

/// Validates a Snapshot.
pub fn validate_snapshot(snap: &Snapshot) -> Result<ValidSnapshot, ValidationError> {
    validate_snapshot_spec(&snap.spec)
}

/// Validates a Snapshot spec.
pub fn validate_snapshot_spec(spec: &SnapshotSpec) -> Result<ValidSnapshot, ValidationError> {
    if !is_dns_subdomain(&spec.workspace) {
        return Err(name_error(
            "workspace",
            &spec.workspace,
            "the name of a Workspace",
        ));
    }
    if spec.note.as_ref().is_some_and(|n| n.len() > MAX_NOTE_LEN) {
        return Err(ValidationError::NoteTooLong);
    }
    tags("tags", &spec.tags)?;
    let compress = spec.compression.as_ref().map(compress_level).transpose()?;
    let restore_worktree = match (&spec.restore_worktree, spec.restore_on_create) {
        (Some(_), false) => return Err(ValidationError::RestoreWorktreeWithoutRestore),
        (Some(w), true) if !is_worktree_name(w) => {
            return Err(ValidationError::RestoreWorktree(w.clone()));
        }
        (w, true) => w.clone(),
        (None, false) => None,
    };
    Ok(ValidSnapshot {
        compress,
        restore_worktree,
    })
}

/// Maps the spec's compression onto `jvs snapshot --compress`: `jvs` implements gzip at levels
/// 1, 6 and 9 only.
pub fn compress_level(c: &Compression) -> Result<CompressLevel, ValidationError> {
    match (c.type_, c.level) {
        (CompressionType::None, None | Some(0)) => Ok(CompressLevel::None),
        (CompressionType::None, Some(level)) => Err(ValidationError::CompressionNoneLevel(level)),
        (CompressionType::Gzip, None | Some(6)) => Ok(CompressLevel::Default),
        (CompressionType::Gzip, Some(1)) => Ok(CompressLevel::Fast),
        (CompressionType::Gzip, Some(9)) => Ok(CompressLevel::Max),
        (CompressionType::Gzip, Some(level)) => {
            debug_assert!(!JVS_GZIP_LEVELS.contains(&level));
            Err(ValidationError::CompressionLevel(level))
        }
    }
}

/// The compression a template implies (only `archive` asks for one: maximum).
pub fn template_compression(template: SnapshotTemplate) -> Option<CompressLevel> {
    (template == SnapshotTemplate::Archive).then_some(CompressLevel::Max)
}

fn tags(field: &'static str, tags: &[String]) -> Result<(), ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::TooManyTags {
            field,
            count: tags.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for tag in tags {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || !is_jvs_name(tag) {
            return Err(ValidationError::Tag {
                field,
                tag: tag.clone(),
            });
        }
        if !seen.insert(tag.as_str()) {
            return Err(ValidationError::DuplicateTag {
                field,
                tag: tag.clone(),
            });
        }
    }
    Ok(())
}

fn count(field: &'static str, value: i32, min: i32) -> Result<(), ValidationError> {
    if (min..=MAX_SNAPSHOT_COUNT).contains(&value) {
        Ok(())
    } else {
        Err(ValidationError::Count { field, min, value })
    }
}

/// A duration where zero (`0s`) is allowed.
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

fn absolute(field: &'static str, value: Option<&str>) -> Result<(), ValidationError> {
    match value {
        Some(v) if !v.starts_with('/') => Err(ValidationError::NotAbsolute {
            field,
            value: v.to_string(),
        }),
        _ => Ok(()),
    }
}

fn optional_dns_subdomain(
    field: &'static str,
    value: Option<&str>,
    what: &'static str,
) -> Result<(), ValidationError> {
    match value {
        Some(v) if !v.is_empty() && !is_dns_subdomain(v) => Err(name_error(field, v, what)),
        _ => Ok(()),
    }
}

fn name_error(field: &'static str, value: &str, what: &'static str) -> ValidationError {
    ValidationError::Name {
        field,
        value: value.to_string(),
        what,
    }
}

/// `[a-zA-Z0-9._-]+`: what `jvs` accepts for tags and worktree names.
pub fn is_jvs_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A name `jvs worktree create` accepts for a new worktree.
pub fn is_worktree_name(s: &str) -> bool {
    is_jvs_name(s) && s.len() <= 128 && s != "main" && !s.contains("..")
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, _)) => {
            let b = scheme.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase()
                && b.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'.' | b'-')
                })
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoSnapshot, JuiceFsConfig, JuiceFsSecretsRef, RetentionPolicy};

    fn workspace() -> WorkspaceSpec {
        serde_json::from_value(serde_json::json!({})).unwrap()
    }

    fn snapshot() -> SnapshotSpec {
        serde_json::from_value(serde_json::json!({ "workspace": "ml-workspace" })).unwrap()
    }

    fn ws_err(spec: &WorkspaceSpec) -> ValidationError {
        validate_workspace_spec("ml-workspace", spec).unwrap_err()
    }

    fn snap_err(spec: &SnapshotSpec) -> ValidationError {
        validate_snapshot_spec(spec).unwrap_err()
    }

    fn compression(type_: CompressionType, level: Option<i32>) -> Compression {
        Compression { type_, level }
    }

    #[test]
    fn the_documents_samples_are_valid() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/jvs-operator/samples"
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let yaml = std::fs::read_to_string(&path).unwrap();
            let value: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
            match value["kind"].as_str() {
                Some("Workspace") => {
                    let ws: Workspace = serde_json::from_value(value).unwrap();
                    let v = validate_workspace(&ws)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    assert_eq!(v.keep_min_age, Duration::from_secs(48 * 3600));
                    assert_eq!(v.schedule.unwrap().expression(), "0 */4 * * *");
                }
                Some("Snapshot") => {
                    let snap: Snapshot = serde_json::from_value(value).unwrap();
                    validate_snapshot(&snap).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                other => panic!("unexpected kind {other:?} in {}", path.display()),
            }
            seen += 1;
        }
        assert_eq!(seen, 4);
    }

    #[test]
    fn defaults_are_valid() {
        let v = validate_workspace_spec("ws", &workspace()).unwrap();
        assert_eq!(v.schedule, None);
        assert_eq!(v.keep_min_age, Duration::ZERO);
        assert_eq!(v.quiesce_timeout, Duration::from_secs(300));
        let s = validate_snapshot_spec(&snapshot()).unwrap();
        assert_eq!(
            s,
            ValidSnapshot {
                compress: None,
                restore_worktree: None
            }
        );
    }

    #[test]
    fn compression_maps_onto_jvs_levels() {
        let (gzip, none) = (CompressionType::Gzip, CompressionType::None);
        let ok = [
            (gzip, None, CompressLevel::Default),
            (gzip, Some(6), CompressLevel::Default),
            (gzip, Some(1), CompressLevel::Fast),
            (gzip, Some(9), CompressLevel::Max),
            (none, None, CompressLevel::None),
            (none, Some(0), CompressLevel::None),
        ];
        for (t, l, expected) in ok {
            assert_eq!(
                compress_level(&compression(t, l)),
                Ok(expected),
                "{t:?} {l:?}"
            );
        }
        for level in [0, 2, 3, 4, 5, 7, 8, 10, -1] {
            let e = compress_level(&compression(gzip, Some(level))).unwrap_err();
            assert_eq!(e, ValidationError::CompressionLevel(level));
            assert_eq!(e.reason(), "UnsupportedCompression");
        }
        assert_eq!(
            compress_level(&compression(none, Some(6))),
            Err(ValidationError::CompressionNoneLevel(6))
        );
        assert_eq!(CompressLevel::Max.as_flag(), "max");
        assert_eq!(
            template_compression(SnapshotTemplate::Archive),
            Some(CompressLevel::Max)
        );
        assert_eq!(template_compression(SnapshotTemplate::Checkpoint), None);
    }

    #[test]
    fn unsupported_compression_types_do_not_deserialize() {
        let spec: Result<SnapshotSpec, _> = serde_json::from_value(serde_json::json!({
            "workspace": "w", "compression": { "type": "zstd" }
        }));
        assert!(spec.is_err());
    }

    #[test]
    fn snapshot_tags_and_restore() {
        let mut s = snapshot();
        s.tags = vec!["pre-deploy".into(), "model-v2".into(), "v1.0_rc".into()];
        assert!(validate_snapshot_spec(&s).is_ok());
        for bad in ["has space", "a,b", "", "ü", &"x".repeat(129)] {
            s.tags = vec![bad.to_string()];
            assert_eq!(snap_err(&s).reason(), "InvalidTags", "{bad:?}");
        }
        s.tags = vec!["a".into(), "a".into()];
        assert!(matches!(snap_err(&s), ValidationError::DuplicateTag { .. }));
        s.tags = (0..33).map(|i| format!("t{i}")).collect();
        assert!(matches!(
            snap_err(&s),
            ValidationError::TooManyTags { count: 33, .. }
        ));

        let mut s = snapshot();
        s.restore_worktree = Some("test-branch".into());
        assert_eq!(snap_err(&s), ValidationError::RestoreWorktreeWithoutRestore);
        s.restore_on_create = true;
        assert_eq!(
            validate_snapshot_spec(&s)
                .unwrap()
                .restore_worktree
                .as_deref(),
            Some("test-branch")
        );
        for bad in ["main", "a..b", "a/b", "with space"] {
            s.restore_worktree = Some(bad.into());
            assert_eq!(snap_err(&s), ValidationError::RestoreWorktree(bad.into()));
        }
        s.restore_worktree = None;
        assert_eq!(validate_snapshot_spec(&s).unwrap().restore_worktree, None);

        let mut s = snapshot();
        s.workspace = "ML_Workspace".into();
        assert_eq!(snap_err(&s).reason(), "InvalidName");
        let mut s = snapshot();
        s.note = Some("x".repeat(MAX_NOTE_LEN + 1));
        assert_eq!(snap_err(&s), ValidationError::NoteTooLong);
    }

    #[test]
    fn workspace_names_and_sizes() {
        let spec = workspace();
        for bad in ["ML", "-a", &"a".repeat(51), "a.b"] {
            assert!(matches!(
                validate_workspace_spec(bad, &spec),
                Err(ValidationError::WorkspaceName(_))
            ));
        }
        let mut s = workspace();
        s.replicas = 101;
        assert_eq!(ws_err(&s), ValidationError::Replicas(101));
        let mut s = workspace();
        s.storage = "50 Gi".into();
        assert!(matches!(ws_err(&s), ValidationError::Storage(_)));
        s.storage = "0".into();
        assert_eq!(ws_err(&s), ValidationError::StorageNotPositive);
        let mut s = workspace();
        s.storage_class_name = Some("Fast_SSD".into());
        assert_eq!(ws_err(&s).reason(), "InvalidName");
    }

    #[test]
    fn juicefs() {
        let mut s = workspace();
        s.juice_fs_config = Some(JuiceFsConfig {
            source: None,
            meta_dir: None,
            cache_dir: None,
            secrets_ref: None,
        });
        assert_eq!(ws_err(&s), ValidationError::JuiceFsSource);
        let jfs = s.juice_fs_config.as_mut().unwrap();
        jfs.secrets_ref = Some(JuiceFsSecretsRef {
            name: "juicefs-credentials".into(),
            keys: [("source".to_string(), "REDIS_URL".to_string())].into(),
        });
        assert!(validate_workspace_spec("ws", &s).is_ok());
        let jfs = s.juice_fs_config.as_mut().unwrap();
        jfs.source = Some("localhost:6379".into());
        assert_eq!(ws_err(&s), ValidationError::JuiceFsSourceUrl);
        let jfs = s.juice_fs_config.as_mut().unwrap();
        jfs.source = Some("redis://localhost:6379/0".into());
        jfs.cache_dir = Some("mnt/cache".into());
        assert!(matches!(
            ws_err(&s),
            ValidationError::NotAbsolute {
                field: "juiceFsConfig.cacheDir",
                ..
            }
        ));
        let jfs = s.juice_fs_config.as_mut().unwrap();
        jfs.cache_dir = Some("/mnt/cache".into());
        jfs.secrets_ref
            .as_mut()
            .unwrap()
            .keys
            .insert("token".into(), "bad key".into());
        assert_eq!(ws_err(&s).reason(), "InvalidName");
    }

    #[test]
    fn retention_and_schedule() {
        let mut s = workspace();
        s.retention_policy = Some(RetentionPolicy {
            keep_min_age: "0s".into(),
            ..RetentionPolicy::default()
        });
        assert_eq!(
            validate_workspace_spec("ws", &s).unwrap().keep_min_age,
            Duration::ZERO
        );
        s.retention_policy.as_mut().unwrap().keep_min_age = "1.5h".into();
        assert!(matches!(
            ws_err(&s),
            ValidationError::Duration {
                field: "retentionPolicy.keepMinAge",
                ..
            }
        ));
        s.retention_policy.as_mut().unwrap().keep_min_age = "7d".into();
        s.retention_policy.as_mut().unwrap().keep_tags = vec!["prod uction".into()];
        assert!(matches!(
            ws_err(&s),
            ValidationError::Tag {
                field: "retentionPolicy.keepTags",
                ..
            }
        ));
        s.retention_policy.as_mut().unwrap().keep_tags = vec![];
        s.retention_policy.as_mut().unwrap().keep_min_snapshots = -1;
        assert!(matches!(
            ws_err(&s),
            ValidationError::Count { value: -1, .. }
        ));

        let mut s = workspace();
        let auto: AutoSnapshot =
            serde_json::from_value(serde_json::json!({"enabled": true})).unwrap();
        s.auto_snapshot = Some(auto);
        assert_eq!(ws_err(&s), ValidationError::MissingSchedule);
        let auto = s.auto_snapshot.as_mut().unwrap();
        auto.schedule = Some("0 */4 * * * *".into());
        let e = ws_err(&s);
        assert_eq!(e.reason(), "InvalidSchedule");
        assert!(e.to_string().contains("6 fields"), "{e}");
        let auto = s.auto_snapshot.as_mut().unwrap();
        auto.schedule = Some("0 2 * * 1-5".into());
        auto.time_zone = Some("Europe/Berlin".into());
        let v = validate_workspace_spec("ws", &s).unwrap();
        assert_eq!(v.schedule.unwrap().time_zone().name(), "Europe/Berlin");
        let auto = s.auto_snapshot.as_mut().unwrap();
        auto.time_zone = Some("Mars/Olympus".into());
        assert!(ws_err(&s).to_string().contains("unknown time zone"));
        // A disabled schedule is still checked, but not required.
        let auto = s.auto_snapshot.as_mut().unwrap();
        auto.enabled = false;
        assert_eq!(ws_err(&s).reason(), "InvalidSchedule");
        let auto = s.auto_snapshot.as_mut().unwrap();
        auto.schedule = None;
        auto.time_zone = None;
        assert_eq!(validate_workspace_spec("ws", &s).unwrap().schedule, None);
        let auto = s.auto_snapshot.as_mut().unwrap();
        auto.max_snapshots = 0;
        assert!(matches!(
            ws_err(&s),
            ValidationError::Count {
                field: "autoSnapshot.maxSnapshots",
                ..
            }
        ));
    }

    #[test]
    fn quiesce_runner_workload() {
        let mut s = workspace();
        s.quiesce.mode = QuiesceMode::Exec;
        assert_eq!(ws_err(&s), ValidationError::QuiesceCommand);
        s.quiesce.pre_snapshot = vec!["sync".into()];
        assert!(validate_workspace_spec("ws", &s).is_ok());
        s.quiesce.timeout = "2h".into();
        assert!(matches!(
            ws_err(&s),
            ValidationError::Duration {
                field: "quiesce.timeout",
                ..
            }
        ));

        let mut s: WorkspaceSpec =
            serde_json::from_value(serde_json::json!({"runner": {"image": "jvs runner"}})).unwrap();
        assert_eq!(ws_err(&s), ValidationError::Image);
        s.runner = None;
        s.workload =
            Some(serde_json::from_value(serde_json::json!({"mountPath": "data"})).unwrap());
        assert!(matches!(
            ws_err(&s),
            ValidationError::NotAbsolute {
                field: "workload.mountPath",
                ..
            }
        ));
    }
}
