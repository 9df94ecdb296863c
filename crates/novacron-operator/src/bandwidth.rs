//! Migration bandwidth limits written the way the document does (`"10Gbps"`),
//! turned into the bytes per second QEMU's `max-bandwidth` takes.

use thiserror::Error;

/// The grammar accepted at admission (CEL) and by [`parse`]: a decimal number
/// and a unit, without spaces.
pub const BANDWIDTH_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?([kKMGT]?bps|[KMGT]?B/s|[KMGT]iB/s)$";

/// The user-facing description of the grammar, used in messages.
pub const BANDWIDTH_HELP: &str =
    "a rate like 10Gbps, 500Mbps (bits per second), 200MB/s or 100MiB/s (bytes per second)";

/// A bandwidth value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bandwidth {value:?} is invalid ({reason}); expected {BANDWIDTH_HELP}")]
pub struct BandwidthError {
    /// The rejected text.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Bytes per second for each unit, as a fraction (numerator, denominator).
fn unit_factor(unit: &str) -> Option<(u128, u128)> {
    Some(match unit {
        "bps" => (1, 8),
        "kbps" | "Kbps" => (1_000, 8),
        "Mbps" => (1_000_000, 8),
        "Gbps" => (1_000_000_000, 8),
        "Tbps" => (1_000_000_000_000, 8),
        "B/s" => (1, 1),
        "KB/s" => (1_000, 1),
        "MB/s" => (1_000_000, 1),
        "GB/s" => (1_000_000_000, 1),
        "TB/s" => (1_000_000_000_000, 1),
        "KiB/s" => (1 << 10, 1),
        "MiB/s" => (1 << 20, 1),
        "GiB/s" => (1 << 30, 1),
        "TiB/s" => (1 << 40, 1),
        _ => return None,
    })
}

/// Parses `"10Gbps"` style values into bytes per second (rounded down). Zero
/// and values below one byte per second are rejected: a limit of nothing
/// would stall the migration (leave `bandwidth` unset for no limit).
pub fn parse(value: &str) -> Result<u64, BandwidthError> {
    let err = |reason| BandwidthError {
        value: value.to_owned(),
        reason,
    };
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit"))?;
    let (number, unit) = value.split_at(split);
    let (num, den) = unit_factor(unit).ok_or_else(|| err("unknown unit"))?;
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty()
        || (number.contains('.') && frac_part.is_empty())
        || frac_part.contains('.')
    {
        return Err(err("malformed number"));
    }
    if int_part.len() + frac_part.len() > 24 {
        return Err(err("too many digits"));
    }
    let mantissa: u128 = format!("{int_part}{frac_part}")
        .parse()
        .map_err(|_| err("malformed number"))?;
    let scale = 10u128.pow(frac_part.len() as u32);
    let bytes = mantissa.checked_mul(num).ok_or_else(|| err("too large"))? / (den * scale);
    if bytes == 0 {
        return Err(err("must be at least one byte per second"));
    }
    u64::try_from(bytes).map_err(|_| err("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bits_and_bytes() {
        let cases = [
            ("10Gbps", 1_250_000_000),
            ("1Gbps", 125_000_000),
            ("500Mbps", 62_500_000),
            ("2.5Gbps", 312_500_000),
            ("800kbps", 100_000),
            ("64bps", 8),
            ("100MiB/s", 100 << 20),
            ("1GB/s", 1_000_000_000),
            ("1.5KiB/s", 1536),
            ("3B/s", 3),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "",
            "10",
            "Gbps",
            "10 Gbps",
            "10gbps",
            "10GBps",
            "10G",
            "0Gbps",
            "1bps",
            "1.Gbps",
            ".5Gbps",
            "1.2.3Gbps",
            "-1Gbps",
            "10Gb/s",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("expected a rate like 10Gbps"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn pattern_agrees_with_parser_on_examples() {
        let re = regex::Regex::new(BANDWIDTH_PATTERN).unwrap();
        for ok in [
            "10Gbps", "2.5Gbps", "100MiB/s", "1GB/s", "3B/s", "800kbps", "1TiB/s",
        ] {
            assert!(re.is_match(ok), "{ok}");
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10", "10 Gbps", "10gbps", "10G", "1.Gbps", "10Gb/s", ".5Gbps",
        ] {
            assert!(!re.is_match(bad), "{bad}");
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
