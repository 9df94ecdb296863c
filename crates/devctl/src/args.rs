//! Pure parsing of argument values: DevServer names, `-v PVC:/path[:ro|rw]`
//! volumes and durations. Each error says what a valid value looks like.

use std::time::Duration;

use anyhow::{anyhow, bail};
use devserver_operator::crd::VolumeMount;
use operator_core::duration::{format_duration, parse_duration, parse_duration_bounded};
use operator_core::names::is_dns_subdomain;

/// The longest time to live the operator accepts (7 days).
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The object name from a positional `NAME` or `--name` (clap makes sure
/// exactly one is given), checked to be a valid Kubernetes name.
pub fn object_name(positional: Option<String>, flag: Option<String>) -> anyhow::Result<String> {
    let name = positional
        .or(flag)
        .ok_or_else(|| anyhow!("a name is required: pass NAME or --name NAME"))?;
    check_name("name", &name)?;
    Ok(name)
}

/// Checks that `value` is a valid Kubernetes object name (lower-case
/// letters, digits, `-` and `.`).
pub fn check_name(what: &str, value: &str) -> anyhow::Result<()> {
    if !is_dns_subdomain(value) {
        bail!(
            "invalid {what} {value:?}: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
        );
    }
    Ok(())
}

/// Parses a docker-style volume `PVC:/path`, `PVC:/path:ro` or
/// `PVC:/path:rw`.
pub fn parse_volume(spec: &str) -> anyhow::Result<VolumeMount> {
    const FORM: &str = "expected PVC:/absolute/path[:ro|rw], e.g. data:/data:ro";
    let parts: Vec<&str> = spec.split(':').collect();
    let (claim, path, read_only) = match parts[..] {
        [claim, path] => (claim, path, false),
        [claim, path, "ro"] => (claim, path, true),
        [claim, path, "rw"] => (claim, path, false),
        [_, _, mode] => bail!("invalid volume {spec:?}: mode {mode:?} must be ro or rw ({FORM})"),
        _ => bail!("invalid volume {spec:?}: {FORM}"),
    };
    if claim.is_empty() {
        bail!("invalid volume {spec:?}: the claim name is empty ({FORM})");
    }
    if !is_dns_subdomain(claim) || claim.len() > 253 {
        bail!(
            "invalid volume {spec:?}: {claim:?} is not a PersistentVolumeClaim name (lower-case letters, digits, '-' and '.')"
        );
    }
    if !path.starts_with('/') {
        bail!("invalid volume {spec:?}: the mount path {path:?} must be absolute, e.g. /data");
    }
    if path == "/" || path.ends_with('/') || path.contains("//") {
        bail!(
            "invalid volume {spec:?}: the mount path {path:?} must not be / or end with / or contain //"
        );
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        bail!("invalid volume {spec:?}: the mount path {path:?} must not contain . or .. segments");
    }
    Ok(VolumeMount {
        claim_name: claim.to_string(),
        mount_path: path.to_string(),
        read_only,
    })
}

/// Parses a duration such as `2h`, `90m` or `1d12h` (clap value parser).
pub fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Parses a time to live: a duration of at most 7 days (clap value parser).
pub fn ttl(s: &str) -> Result<Duration, String> {
    parse_duration_bounded(s, MAX_TTL).map_err(|e| e.to_string())
}

/// Parses a storage size such as `100Gi` (clap value parser).
pub fn size(s: &str) -> Result<String, String> {
    match operator_core::quantity::parse(s) {
        Ok(q) if q.is_positive() => Ok(s.to_string()),
        Ok(_) => Err(format!("size {s:?} must be greater than zero")),
        Err(e) => Err(format!("invalid size {s:?}: {e} (e.g. 100Gi)")),
    }
}

/// The time to live that moves an expiry by `by`: `current + by`, at most
/// 7 days.
pub fn extended_ttl(current: Duration, by: Duration) -> anyhow::Result<String> {
    let total = current + by;
    if total > MAX_TTL {
        bail!(
            "extending by {} would make the time to live {} (from creation), more than the 7-day maximum; use a smaller --by, or create a new DevServer",
            format_duration(by),
            format_duration(total)
        );
    }
    Ok(format_duration(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_docker_style() {
        assert_eq!(
            parse_volume("data:/data").unwrap(),
            VolumeMount {
                claim_name: "data".into(),
                mount_path: "/data".into(),
                read_only: false
            }
        );
        assert!(parse_volume("datasets:/mnt/sets:ro").unwrap().read_only);
        assert!(!parse_volume("datasets:/mnt/sets:rw").unwrap().read_only);
        for (bad, says) in [
            ("data", "expected PVC:/absolute/path"),
            ("data:relative/path", "must be absolute"),
            ("data:/data:rx", "mode \"rx\" must be ro or rw"),
            ("data:/data:ro:x", "expected PVC:/absolute/path"),
            (":/data", "claim name is empty"),
            ("Data_1:/data", "is not a PersistentVolumeClaim name"),
            ("data:/", "must not be /"),
            ("data:/data/", "end with /"),
            ("data:/a/../b", ". or .. segments"),
        ] {
            let e = parse_volume(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_and_ttls() {
        assert_eq!(duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(duration("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert!(
            duration("2 hours")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(duration("0m").unwrap_err().contains("greater than zero"));
        assert_eq!(ttl("7d").unwrap(), MAX_TTL);
        assert!(ttl("8d").unwrap_err().contains("at most 7d"));
        assert_eq!(
            extended_ttl(Duration::from_secs(8 * 3600), Duration::from_secs(7200)).unwrap(),
            "10h"
        );
        assert_eq!(
            extended_ttl(Duration::from_secs(6 * 86400), Duration::from_secs(86400)).unwrap(),
            "7d"
        );
        let e = extended_ttl(MAX_TTL, Duration::from_secs(60)).unwrap_err();
        assert!(e.to_string().contains("7-day maximum"), "{e}");
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(size("100Gi").unwrap(), "100Gi");
        assert!(size("0").unwrap_err().contains("greater than zero"));
        assert!(size("lots").unwrap_err().contains("invalid size"));
        assert_eq!(object_name(Some("mydev".into()), None).unwrap(), "mydev");
        assert_eq!(object_name(None, Some("mydev".into())).unwrap(), "mydev");
        assert!(object_name(None, None).is_err());
        let e = object_name(Some("My_Dev".into()), None).unwrap_err();
        assert!(e.to_string().contains("lower-case"), "{e}");
    }
}
