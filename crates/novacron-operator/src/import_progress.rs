//! Import progress in the VM status.
//!
//! The importer (`novacron-launcher import`, run as a Job) prints
//! `import-progress {json}` lines ([`ImportProgress`]). While the Job runs,
//! the reconciler reads the tail of its pod's log ([`latest_progress`]),
//! turns the latest line into `status.import` ([`running_status`]) and the
//! `DiskReady`/`Ready` message ([`message`]), and comes back every [`POLL`].
//! A log that cannot be read (pod not started, node unreachable) is not an
//! error: the last known progress stays.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};
use novacron_launcher::api::{ImportPhase as Reported, ImportProgress};

use crate::build::disks::IMPORTER_CONTAINER;
use crate::crd::{ImportPhase, ImportStatus};

/// How often a running import is looked at (bounded: one pod list and one
/// log tail per importing VM).
pub const POLL: Duration = Duration::from_secs(5);
/// Log lines read from the end of the importer's log (it prints one
/// progress line per half second, so the latest is always among them).
pub const TAIL_LINES: i64 = 20;
/// The longest a log read may take before the last known progress is kept.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// `status.import` while the importer Job runs: the latest progress from
/// its log; without one, what was known before for the same source and Job;
/// else `Pending`.
pub fn running_status(
    source: &str,
    job: &str,
    latest: Option<&ImportProgress>,
    previous: Option<&ImportStatus>,
) -> ImportStatus {
    let Some(p) = latest else {
        return match previous {
            Some(prev) if prev.source == source && prev.job.as_deref() == Some(job) => prev.clone(),
            _ => ImportStatus {
                source: source.to_owned(),
                job: Some(job.to_owned()),
                ..ImportStatus::default()
            },
        };
    };
    let total = p.total_bytes.filter(|t| *t > 0);
    let percent = match p.phase {
        Reported::Succeeded => Some(100.0),
        _ => p
            .percent
            .or_else(|| total.map(|t| p.bytes as f64 * 100.0 / t as f64)),
    }
    // Whole percent, floored: 100% only once every byte is there.
    .map(|v| v.clamp(0.0, 100.0).floor() as i32);
    ImportStatus {
        source: source.to_owned(),
        phase: match p.phase {
            Reported::Downloading => ImportPhase::Downloading,
            Reported::Verifying => ImportPhase::Verifying,
            Reported::Converting => ImportPhase::Converting,
            Reported::Succeeded => ImportPhase::Succeeded,
            Reported::Failed => ImportPhase::Failed,
        },
        percent,
        progress: progress_text(percent, p.bytes),
        bytes_done: Some(to_i64(p.bytes)),
        bytes_total: total.map(to_i64),
        job: Some(job.to_owned()),
    }
}

/// `status.import` once the import ended (the Job completed or failed, or
/// the disk already holds the image): what was known, with the outcome.
pub fn finished_status(
    source: &str,
    succeeded: bool,
    previous: Option<&ImportStatus>,
) -> ImportStatus {
    let mut s = match previous {
        Some(prev) if prev.source == source => prev.clone(),
        _ => ImportStatus {
            source: source.to_owned(),
            ..ImportStatus::default()
        },
    };
    if succeeded {
        s.phase = ImportPhase::Succeeded;
        s.percent = Some(100);
        s.progress = Some("100%".into());
        if s.bytes_total.is_some() {
            s.bytes_done = s.bytes_total;
        }
    } else {
        s.phase = ImportPhase::Failed;
    }
    s
}

/// The condition message of a running import, e.g.
/// `importing https://x/disk.qcow2: 42% (12.0 MiB of 28.6 MiB)`.
pub fn message(s: &ImportStatus) -> String {
    let src = &s.source;
    let done = s.bytes_done.map(|b| human_bytes(b.max(0) as u64));
    match (s.phase, done) {
        (ImportPhase::Pending, _) | (_, None) => {
            format!("importing {src}: waiting for the importer's first progress report")
        }
        (ImportPhase::Downloading, Some(done)) => match (s.percent, s.bytes_total) {
            (Some(p), Some(total)) => {
                format!(
                    "importing {src}: {p}% ({done} of {})",
                    human_bytes(total.max(0) as u64)
                )
            }
            _ => format!("importing {src}: {done} downloaded (size unknown)"),
        },
        (ImportPhase::Verifying, Some(done)) => {
            format!("importing {src}: verifying the checksum of {done}")
        }
        (ImportPhase::Converting, Some(done)) => {
            format!("importing {src}: converting {done} into the disk image")
        }
        (ImportPhase::Succeeded, Some(done)) => {
            format!("importing {src}: {done} imported, the importer is finishing")
        }
        (ImportPhase::Failed, Some(done)) => {
            format!("importing {src}: an attempt failed after {done}; the Job retries")
        }
    }
}

/// `42%`, or the bytes downloaded when the size is unknown.
fn progress_text(percent: Option<i32>, bytes: u64) -> Option<String> {
    Some(match percent {
        Some(p) => format!("{p}%"),
        None => human_bytes(bytes),
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Binary units with one decimal: `512 B`, `1.5 KiB`, `28.6 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The latest progress in the log of the Job's newest pod; `None` when
/// there is no pod, no progress line yet, or the log cannot be read (a
/// debug log line says why).
pub async fn latest_progress(pods: &Api<Pod>, job: &Job) -> Option<ImportProgress> {
    let uid = job.uid()?;
    let listed = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}")))
        .await;
    let pod = match listed {
        Ok(list) => newest(list.items)?,
        Err(e) => {
            tracing::debug!(job = %job.name_any(), error = %e, "cannot list the importer's pods");
            return None;
        }
    };
    let params = LogParams {
        container: Some(IMPORTER_CONTAINER.into()),
        tail_lines: Some(TAIL_LINES),
        ..LogParams::default()
    };
    match tokio::time::timeout(LOG_TIMEOUT, pods.logs(&pod, &params)).await {
        Ok(Ok(log)) => ImportProgress::latest_in_log(&log),
        Ok(Err(e)) => {
            tracing::debug!(%pod, error = %e, "cannot read the importer's log");
            None
        }
        Err(_) => {
            tracing::debug!(%pod, "reading the importer's log timed out");
            None
        }
    }
}

/// The name of the most recently created pod (a retried Job has several).
fn newest(pods: Vec<Pod>) -> Option<String> {
    pods.into_iter()
        .max_by(|a, b| {
            (a.creation_timestamp(), a.name_any()).cmp(&(b.creation_timestamp(), b.name_any()))
        })
        .map(|p| p.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "https://images.example.com/disk.qcow2";

    fn report(phase: Reported, bytes: u64, total: Option<u64>) -> ImportProgress {
        ImportProgress {
            phase,
            bytes,
            total_bytes: total,
            percent: total.map(|t| bytes as f64 * 100.0 / t as f64),
            message: String::new(),
        }
    }

    #[test]
    fn a_download_report_becomes_status_and_message() {
        let total = 30_000_000; // 28.6 MiB
        let p = report(Reported::Downloading, 12 << 20, Some(total));
        let s = running_status(SRC, "job-1", Some(&p), None);
        assert_eq!(s.phase, ImportPhase::Downloading);
        assert_eq!(s.percent, Some(41));
        assert_eq!(s.progress.as_deref(), Some("41%"));
        assert_eq!(s.bytes_done, Some(12 << 20));
        assert_eq!(s.bytes_total, Some(30_000_000));
        assert_eq!(s.job.as_deref(), Some("job-1"));
        assert_eq!(
            message(&s),
            format!("importing {SRC}: 41% (12.0 MiB of 28.6 MiB)")
        );
    }

    #[test]
    fn a_report_from_the_log_line_round_trips() {
        let line = report(Reported::Downloading, 5 << 20, Some(10 << 20)).to_log_line();
        let log = format!("starting\n{line}\n");
        let p = ImportProgress::latest_in_log(&log).unwrap();
        let s = running_status(SRC, "j", Some(&p), None);
        assert_eq!((s.percent, s.progress.as_deref()), (Some(50), Some("50%")));
    }

    #[test]
    fn unknown_size_shows_bytes() {
        let p = ImportProgress {
            phase: Reported::Downloading,
            bytes: 1536,
            ..ImportProgress::default()
        };
        let s = running_status(SRC, "j", Some(&p), None);
        assert_eq!(s.percent, None);
        assert_eq!(s.progress.as_deref(), Some("1.5 KiB"));
        assert_eq!(
            message(&s),
            format!("importing {SRC}: 1.5 KiB downloaded (size unknown)")
        );
    }

    #[test]
    fn the_percent_is_floored_and_bounded() {
        let p = ImportProgress {
            phase: Reported::Downloading,
            bytes: 999,
            total_bytes: Some(1000),
            percent: Some(99.9),
            ..ImportProgress::default()
        };
        assert_eq!(running_status(SRC, "j", Some(&p), None).percent, Some(99));
        let over = ImportProgress {
            percent: Some(250.0),
            ..p.clone()
        };
        assert_eq!(
            running_status(SRC, "j", Some(&over), None).percent,
            Some(100)
        );
        // The percent is derived from the bytes when the report has none.
        let derived = ImportProgress { percent: None, ..p };
        assert_eq!(
            running_status(SRC, "j", Some(&derived), None).percent,
            Some(99)
        );
    }

    #[test]
    fn later_phases_have_their_own_messages() {
        let verifying = running_status(
            SRC,
            "j",
            Some(&report(Reported::Verifying, 3 << 30, None)),
            None,
        );
        assert_eq!(
            message(&verifying),
            format!("importing {SRC}: verifying the checksum of 3.0 GiB")
        );
        let converting = running_status(
            SRC,
            "j",
            Some(&report(Reported::Converting, 100, None)),
            None,
        );
        assert_eq!(converting.phase, ImportPhase::Converting);
        assert!(message(&converting).contains("converting 100 B"));
        let failed = running_status(SRC, "j", Some(&report(Reported::Failed, 0, None)), None);
        assert!(message(&failed).contains("the Job retries"), "{failed:?}");
    }

    #[test]
    fn without_a_report_the_last_known_progress_stays() {
        let p = report(Reported::Downloading, 5, Some(10));
        let known = running_status(SRC, "j", Some(&p), None);
        assert_eq!(running_status(SRC, "j", None, Some(&known)), known);
        // Not for another source or Job: that import starts from nothing.
        for (src, job) in [("https://other/x.img", "j"), (SRC, "other-job")] {
            let fresh = running_status(src, job, None, Some(&known));
            assert_eq!(fresh.phase, ImportPhase::Pending);
            assert_eq!(fresh.percent, None);
            assert_eq!(fresh.source, src);
        }
        let pending = running_status(SRC, "j", None, None);
        assert_eq!(
            message(&pending),
            format!("importing {SRC}: waiting for the importer's first progress report")
        );
    }

    #[test]
    fn the_outcome_keeps_what_was_known() {
        let known = running_status(
            SRC,
            "j",
            Some(&report(Reported::Converting, 10, Some(10))),
            None,
        );
        let done = finished_status(SRC, true, Some(&known));
        assert_eq!(done.phase, ImportPhase::Succeeded);
        assert_eq!(
            (done.percent, done.progress.as_deref(), done.bytes_done),
            (Some(100), Some("100%"), Some(10))
        );
        assert_eq!(done.job.as_deref(), Some("j"));
        let failed = finished_status(SRC, false, Some(&known));
        assert_eq!(failed.phase, ImportPhase::Failed);
        assert_eq!(failed.bytes_done, Some(10));
        // A disk imported before (no record) still says where it came from.
        let old = finished_status(SRC, true, None);
        assert_eq!((old.source.as_str(), old.percent), (SRC, Some(100)));
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(30_000_000), "28.6 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }
}
