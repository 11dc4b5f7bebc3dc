//! Display helpers: sizes and times as people read them.

use std::time::{Duration, UNIX_EPOCH};

/// `1536` → `1.5 KiB`; bytes below 1 KiB as they are.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Unix seconds as an RFC 3339 UTC time; `-` for 0 (unknown).
pub fn time(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// A count read up to a bound: `1000+` when the bound was reached.
pub fn bounded(value: u64, more: bool) -> String {
    if more {
        format!("{value}+")
    } else {
        value.to_string()
    }
}

/// The first 12 hex digits of a digest (`sha256:0123456789ab`), for tables.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => d.to_string(),
    }
}

/// `a b` → `a%20b`: a value placed in a query string.
pub fn q(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_with_one_decimal() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn times_are_rfc3339_and_zero_is_unknown() {
        assert_eq!(time(0), "-");
        assert_eq!(time(86_400), "1970-01-02T00:00:00Z");
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(q("a/b c"), "a%2Fb%20c");
    }
}
