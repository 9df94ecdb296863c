//! Cron schedules in the form users know from crontab(5) and Kubernetes CronJobs.
//!
//! Accepted input:
//! - five fields `minute hour day-of-month month day-of-week` with `*`, `?` (day fields), lists,
//!   ranges, steps and month/day names (`JAN`, `mon-fri`);
//! - macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
//!
//! Six- and seven-field expressions (with seconds or years) are rejected with a message that says
//! so, because users write five fields and a silently shifted field would fire at the wrong time.
//!
//! Semantics that differ from the underlying `cron` crate, translated here:
//! - **Day of week** is `0-7` with both `0` and `7` meaning Sunday (crontab). The `cron` crate
//!   numbers days `1-7` with `1` = Sunday, so `1` would silently mean Sunday instead of Monday.
//!   This module parses and range-checks all five fields itself (with messages that name the
//!   field) and hands the crate explicit value lists; the crate only does the calendar search.
//! - **Day of month and day of week**: when both are restricted (neither starts with `*` or is
//!   `?`), crontab fires when *either* matches (`0 0 13 * 5`: every 13th and every Friday). The
//!   crate requires both; here the expression is split into two schedules whose ticks are merged.
//! - **Time zones and DST**: the schedule is evaluated on the wall clock of the time zone. A wall
//!   time skipped by a spring-forward change fires at the first instant after the gap (a daily
//!   `30 2 * * *` in Europe/Berlin fires at 03:00 CEST on that day instead of being skipped). A
//!   wall time repeated by a fall-back change fires once, at its first occurrence, when the hour
//!   field is fixed (`30 2 * * *`); when the hour field starts with `*` (e.g. `*/15 * * * *`,
//!   `@hourly`) it fires in both occurrences, so the schedule keeps its real-time rhythm.
//!
//! Catch-up after downtime: [`CronSchedule::latest_fire_at_or_before`] searches backwards from
//! `now` with the crate's field-wise search, so its cost does not depend on how long ago `since`
//! was; callers get the single most recent missed tick ("one catch-up, not a burst").

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How far (in real time) the wall-clock search window extends past `now`. It must exceed the
/// largest offset jump of a DST change (in practice at most two hours).
const DST_MARGIN: Duration = Duration::hours(3);

/// The longest gap in wall-clock time we look across to find where a skipped local time resumes
/// (whole-day skips have happened, e.g. Samoa in 2011).
const MAX_GAP_MINUTES: i64 = 48 * 60;

const EXPECTED: &str = "expected 5 fields \"minute hour day-of-month month day-of-week\" (e.g. \"30 2 * * *\") or a macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)";

/// Why a cron expression or time zone was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The expression is empty or blank.
    #[error("empty cron expression: {EXPECTED}")]
    Empty,
    /// The expression has a seconds and/or years field.
    #[error(
        "invalid cron expression {expression:?}: it has {fields} fields, but schedules use the standard 5 fields \"minute hour day-of-month month day-of-week\" without seconds or years (e.g. \"30 2 * * *\")"
    )]
    SecondsOrYears {
        /// The rejected expression.
        expression: String,
        /// How many fields it has (6 or 7).
        fields: usize,
    },
    /// The expression has the wrong number of fields.
    #[error("invalid cron expression {expression:?}: it has {fields} field(s); {EXPECTED}")]
    FieldCount {
        /// The rejected expression.
        expression: String,
        /// How many fields it has.
        fields: usize,
    },
    /// An `@` macro that is not supported.
    #[error("invalid cron expression {expression:?}: unknown macro; {EXPECTED}")]
    UnknownMacro {
        /// The rejected expression.
        expression: String,
    },
    /// A field could not be parsed.
    #[error("invalid cron expression {expression:?}: {reason}; {EXPECTED}")]
    Invalid {
        /// The rejected expression.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not a known IANA name.
    #[error(
        "unknown time zone {zone:?}: expected an IANA time zone name such as \"Europe/Berlin\" or \"UTC\""
    )]
    UnknownTimeZone {
        /// The rejected zone name.
        zone: String,
    },
}

/// A parsed cron schedule in a time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expression: String,
    time_zone: Tz,
    /// One schedule, or two whose ticks are merged (day-of-month OR day-of-week). The crate's
    /// schedules are evaluated on wall-clock time, represented as `DateTime<Utc>`.
    schedules: Vec<cron::Schedule>,
    /// Whether the hour field is fixed (does not start with `*`); see the module docs on DST.
    fixed_hour: bool,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.time_zone == other.time_zone
    }
}

impl Eq for CronSchedule {}

impl CronSchedule {
    /// Parses a 5-field expression or macro, evaluated in `time_zone` (an IANA name; `None` means
    /// UTC).
    pub fn parse(expr: &str, time_zone: Option<&str>) -> Result<CronSchedule, CronError> {
        let time_zone = match time_zone {
            None => Tz::UTC,
            Some(zone) => Tz::from_str(zone).map_err(|_| CronError::UnknownTimeZone {
                zone: zone.to_owned(),
            })?,
        };
        let expression = expr.trim();
        if expression.is_empty() {
            return Err(CronError::Empty);
        }
        let expanded = if expression.starts_with('@') {
            expand_macro(expression).ok_or_else(|| CronError::UnknownMacro {
                expression: expression.to_owned(),
            })?
        } else {
            expression
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        match fields.len() {
            5 => {}
            n @ (6 | 7) => {
                return Err(CronError::SecondsOrYears {
                    expression: expression.to_owned(),
                    fields: n,
                });
            }
            n => {
                return Err(CronError::FieldCount {
                    expression: expression.to_owned(),
                    fields: n,
                });
            }
        }
        let invalid = |reason: String| CronError::Invalid {
            expression: expression.to_owned(),
            reason,
        };
        let [minute, hour, dom, month, dow] =
            [fields[0], fields[1], fields[2], fields[3], fields[4]];

        // Every field is parsed and range-checked here (with crontab semantics and messages
        // that name the field); the crate gets explicit lists, so its parser never sees user
        // syntax.
        let minutes = parse_field(&MINUTE, minute).map_err(invalid)?;
        let hours = parse_field(&HOUR, hour).map_err(invalid)?;
        let days_of_month = parse_field(&DAY_OF_MONTH, dom).map_err(invalid)?;
        let months = parse_field(&MONTH, month).map_err(invalid)?;
        // Crontab numbers days of the week 0-7 (0 and 7 = Sunday); the crate numbers them 1-7
        // with Sunday = 1.
        let days_of_week: Vec<u32> = parse_field(&DAY_OF_WEEK, dow)
            .map_err(invalid)?
            .into_iter()
            .map(|d| d % 7 + 1)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let [minutes, hours, days_of_month, months, days_of_week] = [
            crate_list(&minutes, &MINUTE),
            crate_list(&hours, &HOUR),
            crate_list(&days_of_month, &DAY_OF_MONTH),
            crate_list(&months, &MONTH),
            if days_of_week.len() == 7 {
                "*".to_owned()
            } else {
                join(&days_of_week)
            },
        ];

        let crate_exprs = if is_unrestricted(dom) || is_unrestricted(dow) {
            vec![format!(
                "0 {minutes} {hours} {days_of_month} {months} {days_of_week}"
            )]
        } else {
            vec![
                format!("0 {minutes} {hours} {days_of_month} {months} *"),
                format!("0 {minutes} {hours} * {months} {days_of_week}"),
            ]
        };
        let schedules = crate_exprs
            .iter()
            .map(|e| {
                cron::Schedule::from_str(e)
                    .map_err(|err| invalid(clean_crate_error(&err.to_string())))
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(CronSchedule {
            expression: expression.to_owned(),
            time_zone,
            schedules,
            fixed_hour: !hour.starts_with('*'),
        })
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the schedule is evaluated in.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The first tick strictly after `now`, or `None` if there is none (the crate's calendar
    /// ends in 2100, and some expressions such as `0 0 30 2 *` never fire).
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Start the wall-clock search at the local time of an instant safely before `now`: every
        // tick at or after that wall time maps to an instant at or after `now - DST_MARGIN`.
        let start = self.wall_clock(now - DST_MARGIN);
        let mut best: Option<DateTime<Utc>> = None;
        for schedule in &self.schedules {
            for tick in schedule.after(&start) {
                let instants = self.resolve(tick.naive_utc());
                // The earliest instant of a wall-clock tick never decreases as ticks advance, so
                // once it is not better than the best candidate no later tick can be.
                match (instants.first(), best) {
                    (None, _) => continue,
                    (Some(first), Some(b)) if *first >= b => break,
                    _ => {}
                }
                for t in instants {
                    if t > now && best.is_none_or(|b| t < b) {
                        best = Some(t);
                    }
                }
            }
        }
        best
    }

    /// The most recent tick in `(since, now]`, or `None` if the schedule did not fire in that
    /// interval.
    ///
    /// This is for "one catch-up, not a burst": after downtime, run once for the latest missed
    /// tick. The search runs backwards from `now` field by field (year, month, day, hour,
    /// minute), so it takes the same few steps whether `since` is a minute or years ago.
    pub fn latest_fire_at_or_before(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if since >= now {
            return None;
        }
        // The crate searches strictly before its start; start one second past the local time of
        // an instant safely after `now`.
        let start = self.wall_clock(now + DST_MARGIN) + Duration::seconds(1);
        let mut best: Option<DateTime<Utc>> = None;
        for schedule in &self.schedules {
            for tick in schedule.after(&start).rev() {
                let instants = self.resolve(tick.naive_utc());
                // The latest instant of a wall-clock tick never increases as ticks go back.
                match (instants.last(), best) {
                    (None, _) => continue,
                    (Some(last), Some(b)) if *last <= b => break,
                    (Some(last), None) if *last <= since => break,
                    _ => {}
                }
                for t in instants {
                    if t <= now && best.is_none_or(|b| t > b) {
                        best = Some(t);
                    }
                }
            }
        }
        best.filter(|t| *t > since)
    }

    /// Wall-clock time of `instant` in the schedule's zone, truncated to whole seconds and
    /// represented as a `DateTime<Utc>` for the crate.
    fn wall_clock(&self, instant: DateTime<Utc>) -> DateTime<Utc> {
        let local = instant.with_timezone(&self.time_zone).naive_local();
        Utc.from_utc_datetime(&local.with_nanosecond(0).unwrap_or(local))
    }

    /// The instants at which a wall-clock tick fires (zero, one or two, ascending).
    fn resolve(&self, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.time_zone.from_local_datetime(&local) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(earlier, later) => {
                if self.fixed_hour {
                    vec![earlier.with_timezone(&Utc)]
                } else {
                    vec![earlier.with_timezone(&Utc), later.with_timezone(&Utc)]
                }
            }
            LocalResult::None => {
                // Skipped by a spring-forward change: fire when the wall clock resumes.
                (1..=MAX_GAP_MINUTES)
                    .find_map(|m| {
                        self.time_zone
                            .from_local_datetime(&(local + Duration::minutes(m)))
                            .earliest()
                    })
                    // Transitions fall on whole minutes, and ticks are whole minutes, so this is
                    // exactly the end of the gap.
                    .map(|t| t.with_timezone(&Utc))
                    .into_iter()
                    .collect()
            }
        }
    }
}

/// `*` or `?` (optionally with a step such as `*/2`) leaves a day field unrestricted for the
/// day-of-month/day-of-week OR rule, as in crontab(5) ("fields that don't start with *").
fn is_unrestricted(field: &str) -> bool {
    field.starts_with('*') || field == "?"
}

fn expand_macro(expr: &str) -> Option<&'static str> {
    Some(match expr {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

/// One crontab field: its name, range and optional names for values.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ... (three-letter, case-insensitive).
    names: &'static [&'static str],
    /// Whether `?` is accepted (the day fields).
    allows_any: bool,
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    allows_any: false,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    allows_any: false,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allows_any: true,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    allows_any: false,
};
/// Day of week: 0-7 where both 0 and 7 are Sunday; `*` means 0-6.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    allows_any: true,
};

impl FieldSpec {
    /// The range `*` stands for (day of week: 0-6, so Sunday is not counted twice).
    fn star_max(&self) -> u32 {
        if self.name == DAY_OF_WEEK.name {
            6
        } else {
            self.max
        }
    }

    fn value(&self, s: &str) -> Result<u32, String> {
        let range = || {
            let names = if self.names.is_empty() {
                String::new()
            } else {
                format!(" or a name like {}", self.names[1].to_ascii_uppercase())
            };
            let sunday = if self.name == DAY_OF_WEEK.name {
                " (0 and 7 are Sunday)"
            } else {
                ""
            };
            format!(
                "{} value {s:?} must be {}-{}{sunday}{names}",
                self.name, self.min, self.max
            )
        };
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u32>() {
                Ok(n) if (self.min..=self.max).contains(&n) => Ok(n),
                _ => Err(range()),
            };
        }
        let lower = s.to_ascii_lowercase();
        self.names
            .iter()
            .position(|n| *n == lower)
            .map(|i| self.min + i as u32)
            .ok_or_else(range)
    }
}

/// Parses one crontab field into its sorted set of values: `*`, `?` (day fields), values, names,
/// ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (= `a-max/n`), and comma-separated lists.
fn parse_field(spec: &FieldSpec, field: &str) -> Result<Vec<u32>, String> {
    let mut values = std::collections::BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
                    format!(
                        "{} step {step:?} in {item:?} must be a positive number",
                        spec.name
                    )
                })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if range == "*" || (range == "?" && spec.allows_any && step.is_none()) {
            (spec.min, spec.star_max())
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (spec.value(a)?, spec.value(b)?);
            if a > b {
                return Err(format!(
                    "{} range {range:?} goes backwards; write it as a list instead",
                    spec.name
                ));
            }
            (a, b)
        } else {
            let a = spec.value(range)?;
            (
                a,
                if step.is_some() {
                    spec.star_max().max(a)
                } else {
                    a
                },
            )
        };
        values.extend((start..=end).step_by(step.unwrap_or(1) as usize));
    }
    Ok(values.into_iter().collect())
}

/// The crate's form of a field: `*` for the whole range, otherwise an explicit list.
fn crate_list(values: &[u32], spec: &FieldSpec) -> String {
    if values.len() == (spec.max - spec.min + 1) as usize {
        "*".to_owned()
    } else {
        join(values)
    }
}

fn join(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The crate's messages span several lines (an excerpt of its own 6-field expression with a
/// caret); keep the last line, which states the problem.
fn clean_crate_error(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .trim_end_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Option<&str>, now: &str) -> DateTime<Utc> {
        CronSchedule::parse(expr, tz)
            .unwrap()
            .next_after(utc(now))
            .unwrap()
    }

    fn upcoming(s: &CronSchedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t.to_rfc3339());
        }
        out
    }

    #[test]
    fn five_fields_in_utc() {
        assert_eq!(
            next("*/15 * * * *", None, "2024-06-15T10:07:30Z"),
            utc("2024-06-15T10:15:00Z")
        );
        assert_eq!(
            next("30 2 * * *", None, "2024-06-15T10:07:30Z"),
            utc("2024-06-16T02:30:00Z")
        );
        assert_eq!(
            next("0 0 1 JAN *", None, "2024-06-15T10:07:30Z"),
            utc("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            next("5 4 * 2-3 *", None, "2024-06-15T10:07:30Z"),
            utc("2025-02-01T04:05:00Z")
        );
        // Strictly after: a tick exactly at `now` is not returned.
        assert_eq!(
            next("*/15 * * * *", None, "2024-06-15T10:15:00Z"),
            utc("2024-06-15T10:30:00Z")
        );
        assert_eq!(
            next("*/15 * * * *", None, "2024-06-15T10:14:59.999Z"),
            utc("2024-06-15T10:15:00Z")
        );
        let s = CronSchedule::parse("  0 9 * * 1-5  ", None).unwrap();
        assert_eq!(s.expression(), "0 9 * * 1-5");
        assert_eq!(s.time_zone(), Tz::UTC);
    }

    #[test]
    fn day_of_week_follows_crontab_numbering() {
        // 2024-01-03 is a Wednesday; 2024-01-07 a Sunday; 2024-01-08 a Monday.
        let wed = "2024-01-03T12:00:00Z";
        assert_eq!(next("0 9 * * 0", None, wed), utc("2024-01-07T09:00:00Z"));
        assert_eq!(next("0 9 * * 7", None, wed), utc("2024-01-07T09:00:00Z"));
        assert_eq!(next("0 9 * * sun", None, wed), utc("2024-01-07T09:00:00Z"));
        assert_eq!(next("0 9 * * 1", None, wed), utc("2024-01-08T09:00:00Z"));
        assert_eq!(next("0 9 * * MON", None, wed), utc("2024-01-08T09:00:00Z"));
        assert_eq!(next("0 9 * * 6", None, wed), utc("2024-01-06T09:00:00Z"));
        assert_eq!(next("0 9 * * 3", None, wed), utc("2024-01-10T09:00:00Z"));

        let weekend = CronSchedule::parse("0 9 * * 6-7", None).unwrap();
        assert_eq!(
            upcoming(&weekend, wed, 3),
            [
                "2024-01-06T09:00:00+00:00",
                "2024-01-07T09:00:00+00:00",
                "2024-01-13T09:00:00+00:00"
            ]
        );
        let weekdays = CronSchedule::parse("0 9 * * mon-fri", None).unwrap();
        assert_eq!(
            upcoming(&weekdays, "2024-01-05T12:00:00Z", 2),
            ["2024-01-08T09:00:00+00:00", "2024-01-09T09:00:00+00:00"]
        );
        let every_other = CronSchedule::parse("0 9 * * */2", None).unwrap();
        // Sunday, Tuesday, Thursday, Saturday.
        assert_eq!(
            upcoming(&every_other, "2024-01-06T12:00:00Z", 4),
            [
                "2024-01-07T09:00:00+00:00",
                "2024-01-09T09:00:00+00:00",
                "2024-01-11T09:00:00+00:00",
                "2024-01-13T09:00:00+00:00"
            ]
        );
        let dow = |f: &str| parse_field(&DAY_OF_WEEK, f);
        assert_eq!(dow("1-5/2"), Ok(vec![1, 3, 5]));
        assert_eq!(dow("0-7"), Ok(vec![0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(dow("*"), Ok(vec![0, 1, 2, 3, 4, 5, 6]));
        assert_eq!(dow("5/1"), Ok(vec![5, 6]));
        assert_eq!(dow("Sat,SUN"), Ok(vec![0, 6]));
        assert_eq!(
            dow("fri-sun"),
            Err("day-of-week range \"fri-sun\" goes backwards; write it as a list instead".into())
        );
        for bad in ["8", "5-1", "*/0", "funday", "1-", "", "?/2"] {
            assert!(dow(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // 13th of the month OR a Friday. 2024-09-06 and 2024-09-13 are Fridays.
        let s = CronSchedule::parse("0 0 13 * 5", None).unwrap();
        assert_eq!(
            upcoming(&s, "2024-09-01T00:00:00Z", 4),
            [
                "2024-09-06T00:00:00+00:00",
                "2024-09-13T00:00:00+00:00",
                "2024-09-20T00:00:00+00:00",
                "2024-09-27T00:00:00+00:00"
            ]
        );
        assert_eq!(
            upcoming(&s, "2024-10-01T00:00:00Z", 3),
            [
                "2024-10-04T00:00:00+00:00",
                "2024-10-11T00:00:00+00:00",
                "2024-10-13T00:00:00+00:00"
            ]
        );
        // With an unrestricted day of month the day of week alone decides.
        let s = CronSchedule::parse("0 0 * * 5", None).unwrap();
        assert_eq!(
            upcoming(&s, "2024-10-11T00:00:00Z", 1),
            ["2024-10-18T00:00:00+00:00"]
        );
    }

    #[test]
    fn macros() {
        let now = "2024-06-15T10:07:30Z"; // a Saturday
        assert_eq!(next("@yearly", None, now), utc("2025-01-01T00:00:00Z"));
        assert_eq!(next("@annually", None, now), utc("2025-01-01T00:00:00Z"));
        assert_eq!(next("@monthly", None, now), utc("2024-07-01T00:00:00Z"));
        assert_eq!(next("@weekly", None, now), utc("2024-06-16T00:00:00Z"));
        assert_eq!(next("@daily", None, now), utc("2024-06-16T00:00:00Z"));
        assert_eq!(next("@midnight", None, now), utc("2024-06-16T00:00:00Z"));
        assert_eq!(next("@hourly", None, now), utc("2024-06-15T11:00:00Z"));
        assert_eq!(
            CronSchedule::parse("@daily", None).unwrap().expression(),
            "@daily"
        );
        assert_eq!(
            CronSchedule::parse("@every 5m", None).unwrap_err(),
            CronError::UnknownMacro {
                expression: "@every 5m".into()
            }
        );
        assert!(CronSchedule::parse("@reboot", None).is_err());
    }

    #[test]
    fn rejects_seconds_and_years_fields_clearly() {
        let err = CronSchedule::parse("0 30 2 * * *", None).unwrap_err();
        assert_eq!(
            err,
            CronError::SecondsOrYears {
                expression: "0 30 2 * * *".into(),
                fields: 6
            }
        );
        assert!(err.to_string().contains("standard 5 fields"), "{err}");
        let err = CronSchedule::parse("0 30 2 * * * 2030", None).unwrap_err();
        assert!(matches!(err, CronError::SecondsOrYears { fields: 7, .. }));
        assert_eq!(
            CronSchedule::parse("* * *", None).unwrap_err(),
            CronError::FieldCount {
                expression: "* * *".into(),
                fields: 3
            }
        );
        assert_eq!(
            CronSchedule::parse("   ", None).unwrap_err(),
            CronError::Empty
        );
    }

    #[test]
    fn rejects_invalid_fields() {
        for bad in [
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "a * * * *",
            "* * * * mon-",
            "? * * * *",
            "* * * * ?/2",
            "1,,2 * * * *",
            "99999999999 * * * *",
            "*/99999999999 * * * *",
        ] {
            let err = CronSchedule::parse(bad, None).unwrap_err();
            assert!(matches!(err, CronError::Invalid { .. }), "{bad}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("expected 5 fields"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        assert_eq!(
            CronSchedule::parse("60 * * * *", None).unwrap_err(),
            CronError::Invalid {
                expression: "60 * * * *".into(),
                reason: "minute value \"60\" must be 0-59".into()
            }
        );
        assert_eq!(
            CronSchedule::parse("0 0 * foo *", None).unwrap_err(),
            CronError::Invalid {
                expression: "0 0 * foo *".into(),
                reason: "month value \"foo\" must be 1-12 or a name like FEB".into()
            }
        );
        assert_eq!(
            CronSchedule::parse("0 0 * * 8", None)
                .unwrap_err()
                .to_string(),
            "invalid cron expression \"0 0 * * 8\": day-of-week value \"8\" must be 0-7 (0 and 7 \
             are Sunday) or a name like MON; expected 5 fields \"minute hour day-of-month month \
             day-of-week\" (e.g. \"30 2 * * *\") or a macro (@yearly, @annually, @monthly, \
             @weekly, @daily, @midnight, @hourly)"
        );
    }

    #[test]
    fn time_zones() {
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            next("0 9 * * *", Some("Europe/Berlin"), "2024-01-10T12:00:00Z"),
            utc("2024-01-11T08:00:00Z")
        );
        assert_eq!(
            next("0 9 * * *", Some("Europe/Berlin"), "2024-07-10T12:00:00Z"),
            utc("2024-07-11T07:00:00Z")
        );
        assert_eq!(
            next(
                "0 9 * * *",
                Some("America/New_York"),
                "2024-07-10T12:00:00Z"
            ),
            utc("2024-07-10T13:00:00Z")
        );
        // Day of week is judged on the local date: Monday 00:30 in Tokyo is Sunday in UTC.
        assert_eq!(
            next("30 0 * * 1", Some("Asia/Tokyo"), "2024-01-03T00:00:00Z"),
            utc("2024-01-07T15:30:00Z")
        );
        let s = CronSchedule::parse("@daily", Some("Europe/Berlin")).unwrap();
        assert_eq!(s.time_zone(), chrono_tz::Europe::Berlin);

        let err = CronSchedule::parse("@daily", Some("Mars/Olympus_Mons")).unwrap_err();
        assert_eq!(
            err,
            CronError::UnknownTimeZone {
                zone: "Mars/Olympus_Mons".into()
            }
        );
        assert!(err.to_string().contains("\"Mars/Olympus_Mons\""));
        assert!(CronSchedule::parse("@daily", Some("")).is_err());
    }

    #[test]
    fn dst_spring_forward_fires_after_the_gap() {
        // 2024-03-31 in Berlin: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist.
        let s = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            upcoming(&s, "2024-03-29T12:00:00Z", 3),
            [
                "2024-03-30T01:30:00+00:00", // 02:30 CET
                "2024-03-31T01:00:00+00:00", // 03:00 CEST, the moment the clock resumes
                "2024-04-01T00:30:00+00:00", // 02:30 CEST
            ]
        );
        // Sub-hourly schedules collapse the skipped ticks into one.
        let s = CronSchedule::parse("*/20 * * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            upcoming(&s, "2024-03-31T00:30:00Z", 3),
            [
                "2024-03-31T00:40:00+00:00", // 01:40 CET
                "2024-03-31T01:00:00+00:00", // 02:00-02:40 skipped -> 03:00 CEST
                "2024-03-31T01:20:00+00:00", // 03:20 CEST
            ]
        );
        // Catch-up across the gap.
        let s = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            s.latest_fire_at_or_before(utc("2024-03-30T12:00:00Z"), utc("2024-03-31T05:00:00Z")),
            Some(utc("2024-03-31T01:00:00Z"))
        );
    }

    #[test]
    fn dst_fall_back_fires_fixed_times_once() {
        // 2024-10-27 in Berlin: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice.
        let s = CronSchedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            upcoming(&s, "2024-10-26T12:00:00Z", 2),
            [
                "2024-10-27T00:30:00+00:00", // 02:30 CEST, first occurrence only
                "2024-10-28T01:30:00+00:00", // 02:30 CET
            ]
        );
        assert_eq!(
            s.latest_fire_at_or_before(utc("2024-10-26T12:00:00Z"), utc("2024-10-27T03:00:00Z")),
            Some(utc("2024-10-27T00:30:00Z"))
        );
        // Hourly keeps its real-time rhythm through the repeated hour.
        let s = CronSchedule::parse("@hourly", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            upcoming(&s, "2024-10-26T23:30:00Z", 4),
            [
                "2024-10-27T00:00:00+00:00", // 02:00 CEST
                "2024-10-27T01:00:00+00:00", // 02:00 CET
                "2024-10-27T02:00:00+00:00", // 03:00 CET
                "2024-10-27T03:00:00+00:00",
            ]
        );
        assert_eq!(
            s.latest_fire_at_or_before(utc("2024-10-27T00:00:00Z"), utc("2024-10-27T01:30:00Z")),
            Some(utc("2024-10-27T01:00:00Z"))
        );
    }

    #[test]
    fn latest_fire_is_one_catch_up_and_cheap_from_long_ago() {
        let since = utc("2000-01-01T00:00:00Z");
        let now = utc("2024-06-15T10:07:30Z");
        let every_minute = CronSchedule::parse("* * * * *", None).unwrap();
        // Decades of missed minutes: the answer is the single latest one. The search walks
        // backwards from `now`, so this is as cheap as a next-fire computation.
        for _ in 0..1000 {
            assert_eq!(
                every_minute.latest_fire_at_or_before(since, now),
                Some(utc("2024-06-15T10:07:00Z"))
            );
        }
        let yearly = CronSchedule::parse("@yearly", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            yearly.latest_fire_at_or_before(since, now),
            Some(utc("2023-12-31T23:00:00Z"))
        );
        // Ticks at `now` count; ticks at `since` do not.
        let s = CronSchedule::parse("0 10 * * *", None).unwrap();
        assert_eq!(
            s.latest_fire_at_or_before(utc("2024-06-14T10:00:00Z"), utc("2024-06-15T10:00:00Z")),
            Some(utc("2024-06-15T10:00:00Z"))
        );
        assert_eq!(
            s.latest_fire_at_or_before(utc("2024-06-15T10:00:00Z"), utc("2024-06-16T09:59:59Z")),
            None
        );
        assert_eq!(s.latest_fire_at_or_before(now, now), None);
        assert_eq!(s.latest_fire_at_or_before(now, since), None);
        // The OR form picks the latest of both halves: 2024-06-14 is a Friday.
        let s = CronSchedule::parse("0 0 1 * 5", None).unwrap();
        assert_eq!(
            s.latest_fire_at_or_before(since, now),
            Some(utc("2024-06-14T00:00:00Z"))
        );
        // A schedule that never fires finds nothing, and does not hang.
        let never = CronSchedule::parse("0 0 30 2 *", None).unwrap();
        assert_eq!(never.latest_fire_at_or_before(since, now), None);
        assert_eq!(never.next_after(now), None);
    }
}
