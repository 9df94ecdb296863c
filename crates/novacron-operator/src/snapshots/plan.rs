//! When to take the next scheduled snapshot: at most one per reconcile, for
//! the latest tick missed since the last one (so downtime leads to one
//! catch-up, not a burst), and when to look again.

use chrono::{DateTime, Utc};
use operator_core::cron::CronSchedule;

/// What the schedule asks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The tick to take a snapshot for now, if one is due.
    pub take: Option<DateTime<Utc>>,
    /// The next tick after now (when to requeue).
    pub next: Option<DateTime<Utc>>,
}

/// `last_tick`: the tick of the newest scheduled snapshot (any phase), or
/// none yet; ticks before `since` (the VM's creation, or when the policy was
/// added) never count.
pub fn plan(
    schedule: &CronSchedule,
    last_tick: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Plan {
    let from = last_tick.map_or(since, |t| t.max(since));
    Plan {
        take: schedule.latest_fire_at_or_before(from, now),
        next: schedule.next_after(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
    }

    #[test]
    fn nothing_due_before_the_first_tick() {
        let hourly = CronSchedule::parse("0 * * * *", None).unwrap();
        let p = plan(&hourly, None, at(10, 5), at(10, 30));
        assert_eq!(p.take, None);
        assert_eq!(p.next, Some(at(11, 0)));
    }

    #[test]
    fn a_due_tick_is_taken_once() {
        let hourly = CronSchedule::parse("0 * * * *", None).unwrap();
        let p = plan(&hourly, None, at(10, 5), at(11, 0));
        assert_eq!(p.take, Some(at(11, 0)));
        // Once taken, the same tick is not due again.
        let again = plan(&hourly, Some(at(11, 0)), at(10, 5), at(11, 0));
        assert_eq!(again.take, None);
        assert_eq!(again.next, Some(at(12, 0)));
    }

    #[test]
    fn downtime_leads_to_one_catch_up_for_the_latest_missed_tick() {
        let every_15 = CronSchedule::parse("*/15 * * * *", None).unwrap();
        // Last snapshot at 08:00, back at 11:07: 12 ticks missed, one taken.
        let p = plan(&every_15, Some(at(8, 0)), at(7, 0), at(11, 7));
        assert_eq!(p.take, Some(at(11, 0)));
        assert_eq!(p.next, Some(at(11, 15)));
    }

    #[test]
    fn ticks_before_the_policy_existed_do_not_count() {
        let daily = CronSchedule::parse("@daily", None).unwrap();
        let p = plan(&daily, None, at(9, 0), at(23, 59));
        assert_eq!(p.take, None);
    }
}
