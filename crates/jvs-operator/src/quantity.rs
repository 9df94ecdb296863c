//! Kubernetes quantities (`500m`, `2`, `4Gi`, `1e3`), parsed to compare them.
//!
//! The grammar is the API server's (`resource.Quantity`):
//! `[+-]? (digits [. digits] | . digits) [suffix]` with suffix one of the binary `Ki Mi Gi Ti Pi Ei`,
//! the decimal `n u m k M G T P E`, or an exponent `e`/`E` followed by an optional sign and digits.
//! Values are held exactly in nano-units (rounded up, as the API server does), which is enough
//! to compare requests with limits and check signs.
//
// Candidate for operator-core: the devserver, jvs and novacron operators validate quantities too.

use std::cmp::Ordering;

/// A parsed quantity, in nano-units (10^-9), rounded up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// Whether the quantity is greater than zero.
    pub fn is_positive(self) -> bool {
        self.nanos > 0
    }

    /// The value in nano-units.
    pub fn nanos(self) -> i128 {
        self.nanos
    }
}

/// Why a quantity was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a quantity.
    #[error(
        "invalid quantity {0:?}: expected a number with an optional suffix, such as 500m, 2 or 4Gi"
    )]
    Invalid(String),
    /// Too large to represent.
    #[error("invalid quantity {0:?}: too large")]
    TooLarge(String),
}

const MAX_DIGITS: usize = 30;

/// Parses `s` as a Kubernetes quantity.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    let invalid = || QuantityError::Invalid(s.to_string());
    let too_large = || QuantityError::TooLarge(s.to_string());
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(invalid());
    }
    if int_part.len() + frac_part.len() > MAX_DIGITS {
        return Err(too_large());
    }
    // mantissa = int_part.frac_part as an integer scaled by 10^-frac_len
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = digits.parse().map_err(|_| invalid())?;
    let mut den_pow10: i32 = frac_part.len() as i32;
    let (mul, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(invalid)?;
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty()
                || !unsigned.bytes().all(|b| b.is_ascii_digit())
                || unsigned.len() > 4
            {
                return Err(invalid());
            }
            (1, exp.parse::<i32>().map_err(|_| invalid())?)
        }
    };
    // nanos = ceil(mantissa * mul * 10^(exp10 + 9) / 10^den_pow10)
    let mut num_pow10 = exp10 + 9;
    let common = num_pow10.min(den_pow10);
    num_pow10 -= common;
    den_pow10 -= common;
    let pow10 = |p: i32| -> Option<i128> { 10i128.checked_pow(u32::try_from(p).ok()?) };
    let numerator = pow10(num_pow10)
        .and_then(|p| mantissa.checked_mul(mul)?.checked_mul(p))
        .ok_or_else(too_large)?;
    let nanos = match pow10(den_pow10) {
        Some(d) => (numerator + d - 1) / d,
        // Dividing by more than 10^38: anything non-zero rounds up to one nano-unit.
        None => i128::from(numerator > 0),
    };
    Ok(Quantity {
        nanos: if negative { -nanos } else { nanos },
    })
}

/// Compares two quantity strings; `None` when either does not parse.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse(a).ok()?.cmp(&parse(b).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> i128 {
        parse(s).unwrap_or_else(|e| panic!("{e}")).nanos()
    }

    #[test]
    fn parses_the_usual_forms() {
        const G: i128 = 1_000_000_000;
        assert_eq!(n("1"), G);
        assert_eq!(n("500m"), G / 2);
        assert_eq!(n("1.5"), 3 * G / 2);
        assert_eq!(n(".5"), G / 2);
        assert_eq!(n("2Gi"), 2 * (1 << 30) * G);
        assert_eq!(n("4Gi"), 4 * (1 << 30) * G);
        assert_eq!(n("1k"), 1000 * G);
        assert_eq!(n("1e3"), 1000 * G);
        assert_eq!(n("1E3"), 1000 * G);
        assert_eq!(n("1E"), 1_000_000_000_000_000_000 * G);
        assert_eq!(n("100n"), 100);
        assert_eq!(n("1u"), 1000);
        assert_eq!(n("+3"), 3 * G);
        assert_eq!(n("-3"), -3 * G);
        assert_eq!(n("0"), 0);
        assert_eq!(n("1.5Gi"), 3 * (1 << 29) * G);
        // Below a nano-unit rounds up.
        assert_eq!(n("1e-12"), 1);
        assert_eq!(n("0.1n"), 1);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "Gi", "1 Gi", "1gi", "1GB", "1.2.3", "abc", "1e", "1e+", "--1", ".", "1Gi ", " 1",
            "1x", "1e99999",
        ] {
            assert!(
                matches!(parse(bad), Err(QuantityError::Invalid(_))),
                "{bad:?} -> {:?}",
                parse(bad)
            );
        }
        assert!(matches!(parse("1e40"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            parse(&"9".repeat(40)),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn compares() {
        assert_eq!(compare("500m", "1"), Some(Ordering::Less));
        assert_eq!(compare("1Gi", "1024Mi"), Some(Ordering::Equal));
        assert_eq!(compare("2Gi", "2G"), Some(Ordering::Greater));
        assert_eq!(compare("1000m", "1"), Some(Ordering::Equal));
        assert_eq!(compare("x", "1"), None);
    }
}
