//! Parsing Kubernetes quantities (`500m`, `2`, `1.5Gi`, `1e3`) into a
//! comparable value, for checks the API server does not make on custom
//! resources (positivity, requests <= limits).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A parsed quantity in billionths of the unit (`1` = 1_000_000_000), so
/// `500m` and `0.5` compare equal and binary suffixes are exact.
pub type Nanos = i128;

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Why a quantity was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not of the form `<number><suffix>`.
    #[error("{0:?} is not a quantity (expected e.g. 500m, 2, 4Gi, 1.5G)")]
    Invalid(String),
    /// Too large to represent.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses a quantity string.
pub fn parse(s: &str) -> Result<Nanos, QuantityError> {
    let invalid = || QuantityError::Invalid(s.to_string());
    let too_large = || QuantityError::TooLarge(s.to_string());
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
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
    if digits.len() > 30 {
        return Err(too_large());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| invalid())?
    };
    let mut decimal_exp: i32 = -(frac_part.len() as i32);
    let mut binary_exp: u32 = 0;
    match suffix {
        "" => {}
        "m" => decimal_exp -= 3,
        "k" => decimal_exp += 3,
        "M" => decimal_exp += 6,
        "G" => decimal_exp += 9,
        "T" => decimal_exp += 12,
        "P" => decimal_exp += 15,
        "E" => decimal_exp += 18,
        "Ki" => binary_exp = 10,
        "Mi" => binary_exp = 20,
        "Gi" => binary_exp = 30,
        "Ti" => binary_exp = 40,
        "Pi" => binary_exp = 50,
        "Ei" => binary_exp = 60,
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(invalid)?;
            let body = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) || body.len() > 4 {
                return Err(invalid());
            }
            decimal_exp += exp.parse::<i32>().map_err(|_| invalid())?;
        }
    }
    // value in nanos = mantissa * 2^binary_exp * 10^(decimal_exp + 9)
    let mut value = mantissa
        .checked_mul(1i128 << binary_exp)
        .ok_or_else(too_large)?;
    let exp10 = decimal_exp + 9;
    if exp10 >= 0 {
        let factor = 10i128.checked_pow(exp10 as u32).ok_or_else(too_large)?;
        value = value.checked_mul(factor).ok_or_else(too_large)?;
    } else {
        // Below a nano: Kubernetes rounds up.
        let divisor = 10i128.checked_pow((-exp10) as u32).unwrap_or(i128::MAX);
        value = value / divisor + i128::from(value % divisor != 0);
    }
    Ok(if negative { -value } else { value })
}

/// Parses a [`Quantity`].
pub fn parse_quantity(q: &Quantity) -> Result<Nanos, QuantityError> {
    parse(&q.0)
}

/// `n` whole units in [`Nanos`].
pub const fn units(n: i128) -> Nanos {
    n * NANOS_PER_UNIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse("1"), Ok(units(1)));
        assert_eq!(parse("500m"), Ok(units(1) / 2));
        assert_eq!(parse("0.5"), Ok(units(1) / 2));
        assert_eq!(parse(".5"), Ok(units(1) / 2));
        assert_eq!(parse("1Gi"), Ok(units(1 << 30)));
        assert_eq!(parse("1.5Gi"), Ok(units(3 << 29)));
        assert_eq!(parse("2G"), Ok(units(2_000_000_000)));
        assert_eq!(parse("1k"), Ok(units(1000)));
        assert_eq!(parse("1e3"), Ok(units(1000)));
        assert_eq!(parse("1E3"), Ok(units(1000)));
        assert_eq!(parse("1E"), Ok(units(1_000_000_000_000_000_000)));
        assert_eq!(parse("+4Mi"), Ok(units(4 << 20)));
        assert_eq!(parse("-1"), Ok(-units(1)));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("100Gi"), Ok(units(100 << 30)));
    }

    #[test]
    fn sub_nano_values_round_up() {
        assert_eq!(parse("1e-12"), Ok(1));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "abc", "1.2.3", "Gi", "1Gb", "1 Gi", "1e", "1e+", "--1", "1ki", ".",
        ] {
            assert!(
                matches!(parse(bad), Err(QuantityError::Invalid(_))),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(parse("1e9999"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            parse("99999999999999999999999999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn compares_across_suffixes() {
        assert!(parse("1Gi").unwrap() > parse("1G").unwrap());
        assert!(parse("2").unwrap() > parse("1500m").unwrap());
        assert_eq!(parse("1024Mi"), parse("1Gi"));
    }
}
