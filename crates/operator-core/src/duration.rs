//! Human-friendly durations such as `90m`, `2h30m`, `1d` or `1d2h3m4s`.
//!
//! Grammar (the whole string must match, no whitespace, lower-case units):
//!
//! ```text
//! duration = [ digits "d" ] [ digits "h" ] [ digits "m" ] [ digits "s" ]   ; at least one part
//! ```
//!
//! The parts must appear in that order and at most once each, so `1h1d`, `1h1h`, `5`, `1h ` and
//! `-1h` are all rejected. The total must be greater than zero and at most an upper bound
//! ([`DEFAULT_MAX`], 365 days, for [`parse_duration`]). Huge digit strings are reported as
//! "too large" instead of overflowing.
//!
//! For CRDs, [`DURATION_PATTERN`] is the same grammar as a regular expression for an OpenAPI
//! `pattern`, so the API server rejects malformed values at admission. The pattern cannot express
//! "greater than zero" or an upper bound; those are checked by [`parse_duration_bounded`] in the
//! controller (or by a CEL rule where an operator wants admission-time bounds).

use std::time::Duration;

/// The upper bound used by [`parse_duration`]: 365 days.
pub const DEFAULT_MAX: Duration = Duration::from_secs(365 * DAY);

/// A regular expression (RE2/ECMA compatible, anchored) that matches exactly the grammar accepted
/// by [`parse_duration`]: optional `<digits>d`, `<digits>h`, `<digits>m`, `<digits>s` parts in that
/// order, at least one of them.
///
/// Positivity and the upper bound are not expressible here; they are checked in code
/// ([`parse_duration_bounded`]) or by a CEL rule on the field.
pub const DURATION_PATTERN: &str = "^([0-9]+d([0-9]+h)?([0-9]+m)?([0-9]+s)?|[0-9]+h([0-9]+m)?([0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s)$";

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Units in the order they must appear, with their length in seconds.
const UNITS: [(char, u64); 4] = [('d', DAY), ('h', HOUR), ('m', MINUTE), ('s', 1)];

/// Why a duration string was rejected. Every message quotes the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string does not follow the grammar.
    #[error(
        "invalid duration {input:?}: expected parts like 1d2h30m15s (d, h, m, s in that order)"
    )]
    Invalid {
        /// The rejected input.
        input: String,
    },
    /// The string is well-formed but adds up to zero.
    #[error("invalid duration {input:?}: must be greater than zero")]
    Zero {
        /// The rejected input.
        input: String,
    },
    /// The string is well-formed but longer than allowed (or does not fit in 64 bits).
    #[error("invalid duration {input:?}: must be at most {max}")]
    TooLarge {
        /// The rejected input.
        input: String,
        /// The upper bound in canonical form, e.g. `365d`.
        max: String,
    },
}

/// Parses `s` with the default upper bound of [`DEFAULT_MAX`] (365 days).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    parse_duration_bounded(s, DEFAULT_MAX)
}

/// Parses `s` (see the module docs for the grammar); the result is greater than zero and at most
/// `max`.
pub fn parse_duration_bounded(s: &str, max: Duration) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: s.to_owned(),
    };
    let too_large = || DurationError::TooLarge {
        input: s.to_owned(),
        max: format_duration(max),
    };

    let bytes = s.as_bytes();
    let mut pos = 0;
    // Index into UNITS of the next unit that may still appear.
    let mut next_unit = 0;
    let mut total: u64 = 0;
    let mut overflow = false;
    while pos < bytes.len() {
        let digits_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == digits_start || pos == bytes.len() {
            // No digits, or digits without a unit.
            return Err(invalid());
        }
        let unit = bytes[pos] as char;
        let Some(offset) = UNITS[next_unit..].iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        let (_, unit_secs) = UNITS[next_unit + offset];
        next_unit += offset + 1;

        // Keep validating the grammar after an overflow so a malformed string is reported as
        // malformed rather than as too large.
        let part = s[digits_start..pos]
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_secs))
            .and_then(|secs| total.checked_add(secs));
        match part {
            Some(t) => total = t,
            None => overflow = true,
        }
        pos += 1;
    }
    if next_unit == 0 {
        // Empty string.
        return Err(invalid());
    }
    if overflow {
        return Err(too_large());
    }
    let value = Duration::from_secs(total);
    if value.is_zero() {
        return Err(DurationError::Zero {
            input: s.to_owned(),
        });
    }
    if value > max {
        return Err(too_large());
    }
    Ok(value)
}

/// Formats a duration in the canonical form accepted by [`parse_duration`]: `1d2h`, `30m`, `45s`;
/// zero is `0s`. Sub-second precision is dropped (the grammar has no unit for it).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, len) in UNITS {
        let n = secs / len;
        secs %= len;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push(unit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("45s", secs(45)),
            ("90m", secs(90 * 60)),
            ("2h30m", secs(2 * 3600 + 30 * 60)),
            ("1d", secs(86_400)),
            ("1d2h3m4s", secs(86_400 + 2 * 3600 + 3 * 60 + 4)),
            ("1d4s", secs(86_400 + 4)),
            ("0h1m", secs(60)),
            ("007m", secs(7 * 60)),
            ("365d", secs(365 * 86_400)),
            ("364d23h59m60s", secs(365 * 86_400)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_helpful_message() {
        for input in [
            "", "1h1d", "1h1h", "5", "1h ", " 1h", "-1h", "+1h", "1H", "1.5h", "h", "1x", "1hm",
            "1ms", "2hours", "1d 2h", "１h",
        ] {
            let err = parse_duration(input).unwrap_err();
            assert_eq!(
                err,
                DurationError::Invalid {
                    input: input.to_owned()
                },
                "input {input:?}"
            );
        }
        assert_eq!(
            parse_duration("2hours").unwrap_err().to_string(),
            r#"invalid duration "2hours": expected parts like 1d2h30m15s (d, h, m, s in that order)"#
        );
        assert_eq!(
            parse_duration("").unwrap_err().to_string(),
            r#"invalid duration "": expected parts like 1d2h30m15s (d, h, m, s in that order)"#
        );
    }

    #[test]
    fn rejects_zero() {
        for input in ["0s", "0d0h0m0s", "00m"] {
            assert_eq!(
                parse_duration(input),
                Err(DurationError::Zero {
                    input: input.to_owned()
                })
            );
        }
        assert_eq!(
            parse_duration("0s").unwrap_err().to_string(),
            r#"invalid duration "0s": must be greater than zero"#
        );
    }

    #[test]
    fn rejects_values_above_the_bound_without_overflowing() {
        for input in [
            "366d",
            "365d1s",
            "99999999999999999999d",
            "18446744073709551615s",
            "18446744073709551615d",
            "1d18446744073709551615s",
            "213503982334601d",
        ] {
            assert_eq!(
                parse_duration(input),
                Err(DurationError::TooLarge {
                    input: input.to_owned(),
                    max: "365d".to_owned()
                }),
                "input {input:?}"
            );
        }
        assert_eq!(
            parse_duration("99999999999999999999d")
                .unwrap_err()
                .to_string(),
            r#"invalid duration "99999999999999999999d": must be at most 365d"#
        );
        // A malformed string with a huge number is still reported as malformed.
        assert!(matches!(
            parse_duration("99999999999999999999d1d"),
            Err(DurationError::Invalid { .. })
        ));
    }

    #[test]
    fn honours_a_custom_bound() {
        let max = secs(2 * 3600);
        assert_eq!(parse_duration_bounded("2h", max), Ok(max));
        assert_eq!(parse_duration_bounded("119m60s", max), Ok(max));
        assert_eq!(
            parse_duration_bounded("2h1s", max).unwrap_err().to_string(),
            r#"invalid duration "2h1s": must be at most 2h"#
        );
        // Bounds longer than the default work too.
        assert_eq!(
            parse_duration_bounded("1000d", secs(10_000 * 86_400)),
            Ok(secs(1000 * 86_400))
        );
    }

    #[test]
    fn formats_canonically_and_round_trips() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(999)), "0s");
        assert_eq!(format_duration(secs(45)), "45s");
        assert_eq!(format_duration(secs(90 * 60)), "1h30m");
        assert_eq!(format_duration(secs(86_400 + 7200)), "1d2h");
        assert_eq!(format_duration(secs(86_400 + 4)), "1d4s");
        assert_eq!(format_duration(secs(86_400 + 3723)), "1d1h2m3s");
        assert_eq!(format_duration(DEFAULT_MAX), "365d");
        for n in [
            1,
            59,
            60,
            61,
            3599,
            3600,
            86_399,
            86_400,
            90_061,
            365 * 86_400,
        ] {
            let d = secs(n);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{n}s");
        }
    }

    #[test]
    fn pattern_matches_the_same_grammar() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        let accepted = [
            "45s",
            "90m",
            "2h30m",
            "1d",
            "1d2h3m4s",
            "1d4s",
            "1d3m",
            "2h5s",
            "0s",
            "0d0h0m0s",
            "99999999999999999999d",
        ];
        let rejected = [
            "", "1h1d", "1h1h", "5", "1h ", " 1h", "-1h", "1H", "1.5h", "h", "d", "1x", "1ms",
            "2hours", "1d 2h", "1s1m", "1dh",
        ];
        for input in accepted {
            assert!(re.is_match(input), "pattern should accept {input:?}");
            // The pattern checks the form only; zero and bounds are left to code.
            let form_ok = !matches!(parse_duration(input), Err(DurationError::Invalid { .. }));
            assert!(form_ok, "parser should accept the form of {input:?}");
        }
        for input in rejected {
            assert!(!re.is_match(input), "pattern should reject {input:?}");
            assert!(
                matches!(parse_duration(input), Err(DurationError::Invalid { .. })),
                "parser should reject {input:?}"
            );
        }
    }
}
