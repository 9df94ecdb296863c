//! Kubernetes quantities (`500m`, `2`, `1.5Gi`, `1e3`), parsed exactly so that they can be
//! compared, sign-checked and turned into bytes: the checks the API server does not make on
//! custom resources (positivity, requests <= limits, minimum sizes).
//!
//! The grammar is the API server's (`resource.Quantity`), the whole string, no whitespace:
//!
//! ```text
//! quantity = [ "+" | "-" ] ( digits [ "." digits ] | "." digits ) [ suffix ]
//! suffix   = "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"          ; binary
//!          | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" ; decimal
//!          | ( "e" | "E" ) [ "+" | "-" ] digits                  ; exponent, at most 4 digits
//! ```
//!
//! Values are held exactly in nano-units (10^-9), rounded up (away from zero) below a nano-unit
//! as the API server does. At most 30 significant digits are accepted; larger values are
//! reported as "too large" instead of overflowing.

use std::cmp::Ordering;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

/// Nano-units in one unit (`1` = 1_000_000_000 nano-units).
pub const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Most significant digits (leading zeros aside) accepted in the number.
const MAX_DIGITS: usize = 30;

/// A parsed quantity, in nano-units (10^-9), rounded up. Ordering is by value, so `500m` and
/// `0.5` are equal and `1Gi` is greater than `1G`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// `n` whole units (`Quantity::from_units(2)` is `2`).
    pub const fn from_units(n: i128) -> Quantity {
        Quantity {
            nanos: n * NANOS_PER_UNIT,
        }
    }

    /// `nanos` nano-units (`Quantity::from_nanos(1)` is `1n`).
    pub const fn from_nanos(nanos: i128) -> Quantity {
        Quantity { nanos }
    }

    /// The value in nano-units.
    pub const fn nanos(self) -> i128 {
        self.nanos
    }

    /// Whether the quantity is greater than zero.
    pub const fn is_positive(self) -> bool {
        self.nanos > 0
    }

    /// Whether the quantity is less than zero.
    pub const fn is_negative(self) -> bool {
        self.nanos < 0
    }
}

/// Why a quantity was rejected. Every message quotes the input and says "not a valid quantity".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not of the form `<number><suffix>`.
    #[error(
        "{0:?} is not a valid quantity: expected a number with an optional suffix, such as 500m, 2, 4Gi or 1.5G"
    )]
    Invalid(String),
    /// Too large to represent (or, for [`parse_bytes`], more than `u64::MAX` bytes).
    #[error("{0:?} is not a valid quantity: too large")]
    TooLarge(String),
    /// Negative where only sizes make sense ([`parse_bytes`]).
    #[error("{0:?} is not a valid quantity: a size cannot be negative")]
    Negative(String),
}

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
    // mantissa = int_part.frac_part as an integer, scaled by 10^-frac_len.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_DIGITS {
        return Err(too_large());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| invalid())?
    };
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
        Some(d) => numerator / d + i128::from(numerator % d != 0),
        // Dividing by more than 10^38: anything non-zero rounds up to one nano-unit.
        None => i128::from(numerator > 0),
    };
    Ok(Quantity {
        nanos: if negative { -nanos } else { nanos },
    })
}

/// Parses a [`k8s_openapi`] quantity (its string form; see [`parse`]).
pub fn parse_quantity(q: &K8sQuantity) -> Result<Quantity, QuantityError> {
    parse(&q.0)
}

/// Compares two quantity strings by value; `None` when either does not parse.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse(a).ok()?.cmp(&parse(b).ok()?))
}

/// Parses a size into whole bytes (units), rounding a fractional byte up: `1.5Gi`, `50G`, `5e-1`
/// (one byte). Negative sizes ([`QuantityError::Negative`]; `-0` is zero) and sizes over
/// `u64::MAX` bytes ([`QuantityError::TooLarge`]) are rejected.
pub fn parse_bytes(s: &str) -> Result<u64, QuantityError> {
    let q = parse(s)?;
    if q.is_negative() {
        return Err(QuantityError::Negative(s.to_string()));
    }
    let bytes = q.nanos / NANOS_PER_UNIT + i128::from(q.nanos % NANOS_PER_UNIT != 0);
    u64::try_from(bytes).map_err(|_| QuantityError::TooLarge(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: i128 = NANOS_PER_UNIT;

    fn n(s: &str) -> i128 {
        parse(s).unwrap_or_else(|e| panic!("{e}")).nanos()
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(n("1"), G);
        assert_eq!(n("500m"), G / 2);
        assert_eq!(n("0.5"), G / 2);
        assert_eq!(n(".5"), G / 2);
        assert_eq!(n("1.5"), 3 * G / 2);
        assert_eq!(n("1Gi"), (1 << 30) * G);
        assert_eq!(n("2Gi"), 2 * (1 << 30) * G);
        assert_eq!(n("100Gi"), (100 << 30) * G);
        assert_eq!(n("1.5Gi"), 3 * (1 << 29) * G);
        assert_eq!(n("2G"), 2_000_000_000 * G);
        assert_eq!(n("1k"), 1000 * G);
        assert_eq!(n("1e3"), 1000 * G);
        assert_eq!(n("1E3"), 1000 * G);
        assert_eq!(n("1e+3"), 1000 * G);
        assert_eq!(n("1E"), 1_000_000_000_000_000_000 * G);
        assert_eq!(n("100n"), 100);
        assert_eq!(n("1u"), 1000);
        assert_eq!(n("+3"), 3 * G);
        assert_eq!(n("+4Mi"), (4 << 20) * G);
        assert_eq!(n("-3"), -3 * G);
        assert_eq!(n("0"), 0);
        assert_eq!(n("-0"), 0);
        assert_eq!(parse("1"), Ok(Quantity::from_units(1)));
        assert_eq!(parse("1n"), Ok(Quantity::from_nanos(1)));
        assert_eq!(parse("0"), Ok(Quantity::ZERO));
    }

    #[test]
    fn sub_nano_values_round_up() {
        assert_eq!(n("1e-12"), 1);
        assert_eq!(n("0.1n"), 1);
        assert_eq!(n("1e-9999"), 1);
        assert_eq!(n("-1e-12"), -1);
        assert_eq!(n("0e-12"), 0);
    }

    #[test]
    fn leading_zeros_do_not_count_as_digits() {
        assert_eq!(n(&format!("{}1", "0".repeat(40))), G);
        assert_eq!(n("0.000000001"), 1);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "Gi", "1 Gi", "1gi", "1ki", "1GB", "1Gb", "1.2.3", "abc", "1e", "1e+", "--1",
            "+-1", ".", "1Gi ", " 1", "1x", "1e99999", "1e3.5",
        ] {
            assert!(
                matches!(parse(bad), Err(QuantityError::Invalid(_))),
                "{bad:?} -> {:?}",
                parse(bad)
            );
        }
        for big in [
            "1e40".to_string(),
            "1e9999".to_string(),
            "9".repeat(40),
            "99999999999999999999999999999999999".to_string(),
        ] {
            assert!(
                matches!(parse(&big), Err(QuantityError::TooLarge(_))),
                "{big:?} -> {:?}",
                parse(&big)
            );
        }
    }

    #[test]
    fn compares() {
        assert_eq!(compare("500m", "1"), Some(Ordering::Less));
        assert_eq!(compare("1Gi", "1024Mi"), Some(Ordering::Equal));
        assert_eq!(compare("2Gi", "2G"), Some(Ordering::Greater));
        assert_eq!(compare("1Gi", "1G"), Some(Ordering::Greater));
        assert_eq!(compare("2", "1500m"), Some(Ordering::Greater));
        assert_eq!(compare("1000m", "1"), Some(Ordering::Equal));
        assert_eq!(compare("x", "1"), None);
        assert_eq!(compare("1", "x"), None);
    }

    #[test]
    fn signs() {
        assert!(parse("1n").unwrap().is_positive());
        assert!(!parse("0").unwrap().is_positive());
        assert!(!parse("0").unwrap().is_negative());
        assert!(parse("-1m").unwrap().is_negative());
        assert!(!parse("-1m").unwrap().is_positive());
    }

    #[test]
    fn parses_k8s_quantities() {
        assert_eq!(
            parse_quantity(&K8sQuantity("4Gi".into())),
            Ok(Quantity::from_units(4 << 30))
        );
        assert_eq!(
            parse_quantity(&K8sQuantity("lots".into())),
            Err(QuantityError::Invalid("lots".into()))
        );
    }

    #[test]
    fn parses_bytes() {
        let cases = [
            ("0", 0),
            ("-0", 0),
            ("1", 1),
            ("512Mi", 512 << 20),
            ("4Gi", 4 << 30),
            ("1.5Gi", 3 << 29),
            ("50G", 50_000_000_000),
            ("2k", 2000),
            ("1500m", 2),
            ("1e3", 1000),
            ("1E9", 1_000_000_000),
            ("5e-1", 1),
            ("100n", 1),
            (".5Ki", 512),
            ("+3", 3),
            ("1Ei", 1 << 60),
            ("15Ei", 15 << 60),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            "", "Gi", "4GB", "4 Gi", "1.2.3", "-1Gi", "-1n", "abc", "1e", "1e99", "16Ei", "4gi",
            ".",
        ] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.to_string().contains("not a valid quantity"), "{bad}: {e}");
        }
        assert_eq!(
            parse_bytes("-1Gi"),
            Err(QuantityError::Negative("-1Gi".into()))
        );
        assert_eq!(
            parse_bytes("16Ei"),
            Err(QuantityError::TooLarge("16Ei".into()))
        );
    }
}
