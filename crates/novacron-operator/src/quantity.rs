//! Kubernetes resource quantities (`4Gi`, `512Mi`, `1.5G`, `2e9`) as whole
//! bytes, for the checks the schema cannot do exactly (memory >= 512Mi) and
//! for the launcher's QEMU arguments later.

use thiserror::Error;

/// A quantity that is not well formed or does not fit in 64 bits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{value:?} is not a valid quantity ({reason}); expected a number with an optional suffix like 512Mi, 4Gi or 50G"
)]
pub struct QuantityError {
    /// The rejected text.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a quantity into bytes, rounding a fractional byte up.
///
/// Accepts the grammar of `resource.Quantity`: an optional sign, digits with an
/// optional fraction, and a binary suffix (`Ki` .. `Ei`), a decimal suffix
/// (`m`, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`).
/// Negative values are an error: sizes cannot be negative.
pub fn parse_bytes(value: &str) -> Result<u64, QuantityError> {
    let err = |reason| QuantityError {
        value: value.to_owned(),
        reason,
    };
    let s = value.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err("no digits"));
    }
    if frac_part.contains('.') {
        return Err(err("more than one decimal point"));
    }
    if int_part.len() + frac_part.len() > 30 {
        return Err(err("too many digits"));
    }
    let digits: String = format!("{int_part}{frac_part}");
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err("not a number"))?
    };
    // value = mantissa * 10^exp10 * 2^exp2
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        other if other.starts_with(['e', 'E']) => {
            let e: i32 = other[1..].parse().map_err(|_| err("invalid exponent"))?;
            if !(-40..=40).contains(&e) {
                return Err(err("exponent out of range"));
            }
            exp10 += e;
        }
        _ => return Err(err("unknown suffix")),
    }
    if negative && mantissa != 0 {
        return Err(err("negative"));
    }
    let mut n = mantissa;
    let overflow = || err("too large");
    n = n.checked_mul(1i128 << exp2).ok_or_else(overflow)?;
    if exp10 >= 0 {
        let p = 10i128.checked_pow(exp10 as u32).ok_or_else(overflow)?;
        n = n.checked_mul(p).ok_or_else(overflow)?;
    } else {
        let p = 10i128
            .checked_pow(exp10.unsigned_abs())
            .ok_or_else(overflow)?;
        n = (n + p - 1) / p;
    }
    u64::try_from(n).map_err(|_| overflow())
}

/// `512Mi`, the least memory a VM may have.
pub const MIN_MEMORY_BYTES: u64 = 512 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        let cases = [
            ("0", 0),
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
            (".5Ki", 512),
            ("+3", 3),
            ("1Ei", 1 << 60),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "Gi", "4GB", "4 Gi", "1.2.3", "-1Gi", "abc", "1e", "1e99", "16Ei", "4gi", ".",
        ] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.to_string().contains("not a valid quantity"), "{bad}: {e}");
        }
    }
}
