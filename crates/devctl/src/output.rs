//! Rendering DevServers and flavors as tables, JSON or YAML.

use std::collections::BTreeMap;

use devserver_operator::crd::{DevServer, DevServerFlavor};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde::Serialize;
use serde_json::{Value, json};

/// Output formats of the listing commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The table with more columns.
    Wide,
    /// A `v1/List` as JSON, like `kubectl get -o json`.
    Json,
    /// A `v1/List` as YAML, like `kubectl get -o yaml`.
    Yaml,
}

const NONE: &str = "-";

/// Aligns `rows` under `header` with three spaces between columns, like
/// kubectl. Every line ends with a newline; trailing spaces are trimmed.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration in kubectl's style: `45s`, `5m30s`, `42m`, `3h20m`, `20h`,
/// `2d5h`, `30d`, `3y`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        with_rest(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        with_rest(h, "h", (s % 3600) / 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        with_rest(d, "d", h % 24, "h")
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn with_rest(n: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{n}{unit}")
    } else {
        format!("{n}{unit}{rest}{rest_unit}")
    }
}

pub fn age(created: Option<&Timestamp>, now: Timestamp) -> String {
    created
        .map(|t| human_duration(now.duration_since(*t).as_secs()))
        .unwrap_or_else(|| NONE.into())
}

pub fn expires(at: Option<&Timestamp>, now: Timestamp) -> String {
    match at {
        None => NONE.into(),
        Some(t) => {
            let secs = t.duration_since(now).as_secs();
            if secs >= 0 {
                format!("in {}", human_duration(secs))
            } else {
                format!("{} ago", human_duration(-secs))
            }
        }
    }
}

/// The DevServer table: name, phase, flavor, owner, expiry and age (with a
/// namespace column when listing every namespace; `wide` adds the mode, the
/// image and the status message).
pub fn devserver_table(
    items: &[DevServer],
    now: Timestamp,
    with_namespace: bool,
    wide: bool,
) -> String {
    let mut header = vec!["NAME", "PHASE", "FLAVOR", "OWNER", "EXPIRES", "AGE"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["MODE", "IMAGE", "MESSAGE"]);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|ds| {
            let meta = ds.meta();
            let status = ds.status.as_ref();
            let flavor = ds
                .spec
                .flavor
                .clone()
                .or_else(|| status.and_then(|s| s.flavor.clone()))
                .unwrap_or_else(|| "(default)".into());
            let mut row = vec![
                meta.name.clone().unwrap_or_default(),
                status
                    .and_then(|s| s.phase)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| NONE.into()),
                flavor,
                ds.spec.owner.clone().unwrap_or_else(|| NONE.into()),
                expires(
                    status.and_then(|s| s.expires_at.as_ref()).map(|t| &t.0),
                    now,
                ),
                age(meta.creation_timestamp.as_ref().map(|t| &t.0), now),
            ];
            if with_namespace {
                row.insert(0, meta.namespace.clone().unwrap_or_default());
            }
            if wide {
                row.push(
                    serde_json::to_value(ds.spec.mode)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                );
                row.push(ds.spec.image.clone().unwrap_or_else(|| "(default)".into()));
                row.push(
                    status
                        .and_then(|s| s.message.clone())
                        .unwrap_or_else(|| NONE.into()),
                );
            }
            row
        })
        .collect();
    table(&header, &rows)
}

/// A resource of the flavor: the request, else the limit.
fn resource(flavor: &DevServerFlavor, name: &str) -> Option<String> {
    let res = flavor.spec.resources.as_ref()?;
    let get = |m: &Option<BTreeMap<String, Quantity>>| {
        m.as_ref().and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    get(&res.requests).or_else(|| get(&res.limits))
}

/// GPUs of the flavor: every `<vendor>/gpu` resource, limits first.
fn gpus(flavor: &DevServerFlavor) -> Option<String> {
    let res = flavor.spec.resources.as_ref()?;
    let mut found: BTreeMap<&str, &str> = BTreeMap::new();
    for map in [&res.requests, &res.limits].into_iter().flatten() {
        for (k, v) in map {
            if k.ends_with("/gpu") {
                found.insert(k, &v.0);
            }
        }
    }
    if found.is_empty() {
        return None;
    }
    Some(
        found
            .iter()
            .map(|(k, v)| {
                if found.len() == 1 {
                    v.to_string()
                } else {
                    format!("{v} {k}")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The flavor table: name, default marker, CPU, memory, GPUs, whether it
/// can be scheduled, and the description.
pub fn flavor_table(items: &[DevServerFlavor]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|f| {
            vec![
                f.meta().name.clone().unwrap_or_default(),
                if f.spec.default {
                    "yes".into()
                } else {
                    String::new()
                },
                resource(f, "cpu").unwrap_or_else(|| NONE.into()),
                resource(f, "memory").unwrap_or_else(|| NONE.into()),
                gpus(f).unwrap_or_else(|| NONE.into()),
                f.status
                    .as_ref()
                    .and_then(|s| s.schedulable)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "Unknown".into()),
                f.spec
                    .description
                    .clone()
                    .or_else(|| f.spec.display_name.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "DEFAULT",
            "CPU",
            "MEMORY",
            "GPU",
            "SCHEDULABLE",
            "DESCRIPTION",
        ],
        &rows,
    )
}

/// The objects as a `v1/List`, each with its `apiVersion` and `kind` and
/// without `managedFields` (as kubectl prints them).
pub fn list<K>(items: &[K]) -> anyhow::Result<Value>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut v = serde_json::to_value(item)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("apiVersion".into(), K::api_version(&()).into());
            obj.insert("kind".into(), K::kind(&()).into());
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        }
        out.push(v);
    }
    Ok(
        json!({ "apiVersion": "v1", "kind": "List", "items": out, "metadata": { "resourceVersion": "" } }),
    )
}

/// Renders `items` in `format`; `table` renders the table form (its flag
/// asks for the wide one).
pub fn render<K>(
    items: &[K],
    format: Format,
    table: impl FnOnce(&[K], bool) -> String,
) -> anyhow::Result<String>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    Ok(match format {
        Format::Table => table(items, false),
        Format::Wide => table(items, true),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&list(items)?)?;
            s.push('\n');
            s
        }
        Format::Yaml => serde_yaml::to_string(&list(items)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use devserver_operator::crd::{
        DevServerFlavorStatus, DevServerPhase, DevServerStatus, Schedulable,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn devserver(name: &str, yaml_spec: &str) -> DevServer {
        let mut ds = DevServer::new(name, serde_yaml::from_str(yaml_spec).unwrap());
        ds.metadata.namespace = Some("dev-alice".into());
        ds.metadata.creation_timestamp = Some(Time(ts("2025-01-01T00:00:00Z")));
        ds
    }

    #[test]
    fn durations_read_like_kubectl() {
        for (secs, want) in [
            (0, "0s"),
            (-5, "0s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (42 * 60, "42m"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (20 * 3600, "20h"),
            (2 * 86400 + 5 * 3600, "2d5h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400, "3y"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn tables_are_aligned() {
        let t = table(
            &["A", "LONGER"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "".into()]],
        );
        assert_eq!(t, "A     LONGER\nxyz   1\nq\n");
    }

    #[test]
    fn devserver_rows() {
        let mut running = devserver("mydev", "{flavor: cpu-small, owner: alice}");
        running.status = Some(DevServerStatus {
            phase: Some(DevServerPhase::Running),
            expires_at: Some(Time(ts("2025-01-01T08:00:00Z"))),
            ..Default::default()
        });
        let fresh = devserver("other", "{}");
        let now = ts("2025-01-01T02:00:00Z");
        let t = devserver_table(&[running.clone(), fresh.clone()], now, false, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    PHASE     FLAVOR      OWNER   EXPIRES   AGE"
        );
        assert_eq!(
            lines[1],
            "mydev   Running   cpu-small   alice   in 6h     120m"
        );
        assert_eq!(
            lines[2],
            "other   -         (default)   -       -         120m"
        );
        let w = devserver_table(&[fresh], now, false, true);
        assert_eq!(
            w.lines().next().unwrap(),
            "NAME    PHASE   FLAVOR      OWNER   EXPIRES   AGE    MODE         IMAGE       MESSAGE"
        );
        assert!(w.contains("standalone   (default)   -"), "{w}");
        let t = devserver_table(&[running], ts("2025-01-01T09:00:00Z"), true, false);
        assert!(t.starts_with("NAMESPACE   NAME"), "{t}");
        assert!(t.contains("dev-alice   mydev"), "{t}");
        assert!(t.contains("60m ago"), "{t}");
    }

    #[test]
    fn flavor_rows() {
        let mut gpu = DevServerFlavor::new(
            "gpu-small",
            serde_yaml::from_str(
                "{resources: {requests: {cpu: '4', memory: 16Gi}, limits: {nvidia.com/gpu: '1'}}, description: One GPU}",
            )
            .unwrap(),
        );
        gpu.status = Some(DevServerFlavorStatus {
            schedulable: Some(Schedulable::Autoscaled),
            ..Default::default()
        });
        let cpu = DevServerFlavor::new(
            "cpu-small",
            serde_yaml::from_str("{default: true}").unwrap(),
        );
        let t = flavor_table(&[cpu, gpu]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME        DEFAULT   CPU   MEMORY   GPU   SCHEDULABLE   DESCRIPTION"
        );
        assert_eq!(
            lines[1],
            "cpu-small   yes       -     -        -     Unknown"
        );
        assert_eq!(
            lines[2],
            "gpu-small             4     16Gi     1     AUTOSCALED    One GPU"
        );
    }

    #[test]
    fn lists_carry_kinds_and_drop_managed_fields() {
        let mut ds = devserver("mydev", "{}");
        ds.metadata.managed_fields = Some(vec![Default::default()]);
        let v = list(&[ds]).unwrap();
        assert_eq!(v["kind"], "List");
        assert_eq!(v["items"][0]["kind"], "DevServer");
        assert_eq!(v["items"][0]["apiVersion"], "devserver.io/v1");
        assert!(v["items"][0]["metadata"].get("managedFields").is_none());
        let yaml = render(&[devserver("a", "{}")], Format::Yaml, |_, _| unreachable!()).unwrap();
        let back: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back["items"][0]["metadata"]["name"], "a");
    }
}
