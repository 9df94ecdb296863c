//! Which snapshots retention removes: the newest `keep` *ready* snapshots
//! stay; older ready ones go. Failed snapshots never count toward `keep`, so
//! they can never push a good one out; they are removed once a newer
//! snapshot is ready (they are of no use then). Pending ones are left alone.

use chrono::{DateTime, Utc};

use crate::crd::SnapshotPhase;

/// One snapshot of a VM (all its disks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub phase: SnapshotPhase,
}

/// The names of the snapshots to delete, oldest first.
pub fn to_delete(snapshots: &[Taken], keep: usize) -> Vec<String> {
    let mut newest_first: Vec<&Taken> = snapshots.iter().collect();
    newest_first.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.name.cmp(&a.name)));
    let newest_ready = newest_first
        .iter()
        .find(|s| s.phase == SnapshotPhase::Ready)
        .map(|s| s.created_at);
    let mut ready_seen = 0;
    let mut delete = Vec::new();
    for s in newest_first {
        match s.phase {
            SnapshotPhase::Ready => {
                ready_seen += 1;
                if ready_seen > keep {
                    delete.push(s.name.clone());
                }
            }
            SnapshotPhase::Failed => {
                if newest_ready.is_some_and(|r| r > s.created_at) {
                    delete.push(s.name.clone());
                }
            }
            SnapshotPhase::Pending => {}
        }
    }
    delete.reverse();
    delete
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snap(minute: u32, phase: SnapshotPhase) -> Taken {
        Taken {
            name: format!("vm-{minute:02}"),
            created_at: Utc.with_ymd_and_hms(2026, 11, 23, 10, minute, 0).unwrap(),
            phase,
        }
    }

    use SnapshotPhase::{Failed, Pending, Ready};

    #[test]
    fn keeps_the_newest_ready_ones() {
        let all = [
            snap(1, Ready),
            snap(2, Ready),
            snap(3, Ready),
            snap(4, Ready),
        ];
        assert_eq!(to_delete(&all, 2), ["vm-01", "vm-02"]);
        assert!(to_delete(&all, 4).is_empty());
    }

    #[test]
    fn failed_snapshots_never_push_ready_ones_out() {
        // Three failures after two good snapshots, keep 2: both good stay.
        let all = [
            snap(1, Ready),
            snap(2, Ready),
            snap(3, Failed),
            snap(4, Failed),
            snap(5, Failed),
        ];
        assert!(to_delete(&all, 2).is_empty());
        // A newer good one makes the older failures and the oldest good go.
        let mut more = all.to_vec();
        more.push(snap(6, Ready));
        assert_eq!(to_delete(&more, 2), ["vm-01", "vm-03", "vm-04", "vm-05"]);
    }

    #[test]
    fn pending_ones_are_left_alone() {
        let all = [snap(1, Ready), snap(2, Pending), snap(3, Ready)];
        assert!(to_delete(&all, 1) == ["vm-01"]);
    }
}
