//! The byte-range header parsers: `Range` on blob reads (RFC 9110) and `Content-Range` on
//! upload chunks (the spec's `^[0-9]+-[0-9]+$`). Pure functions over header text, public so
//! the fuzz targets (`fuzz/`) can drive them directly.

use actix_web::http::StatusCode;

use crate::error::{Code, Error, Result};

/// A decimal number made only of ASCII digits (`u64::from_str` alone would also take `+5`).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `Range: bytes=a-b` (also `a-` and `-suffix`) against a blob of `size` bytes.
/// `Ok(None)` means serve the whole blob (no header or a form we ignore, as RFC 9110 allows).
/// `Ok(Some((start, end)))` is inclusive with `start <= end < size`.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = || {
        Error::new(
            Code::SizeInvalid,
            format!("range {spec:?} is not satisfiable for {size} bytes"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header("Content-Range", format!("bytes */{size}"))
    };
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let num = |s: &str| digits(s.trim()).ok_or_else(unsatisfiable);
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(unsatisfiable()),
        (true, false) => {
            let suffix = num(b)?;
            if suffix == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            (size.saturating_sub(suffix), size - 1)
        }
        (false, true) => (num(a)?, size.saturating_sub(1)),
        (false, false) => (num(a)?, num(b)?.min(size.saturating_sub(1))),
    };
    if start >= size || end < start {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

/// Parses an upload chunk's `Content-Range: <start>-<end>` (inclusive; `bytes ` and a
/// `/<total>` suffix tolerated). Only the syntax is checked here; whether the chunk continues
/// the upload is the session's business.
pub fn parse_content_range(value: &str) -> Result<(u64, u64)> {
    let s = value
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let s = s.split('/').next().unwrap_or("");
    s.split_once('-')
        .and_then(|(a, b)| Some((digits(a)?, digits(b)?)))
        .ok_or_else(|| {
            Error::new(
                Code::BlobUploadInvalid,
                format!("malformed Content-Range {value:?}"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 10).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-4"), 10).unwrap(), Some((0, 4)));
        assert_eq!(parse_range(Some("bytes=5-"), 10).unwrap(), Some((5, 9)));
        assert_eq!(parse_range(Some("bytes=-3"), 10).unwrap(), Some((7, 9)));
        assert_eq!(parse_range(Some("bytes=2-100"), 10).unwrap(), Some((2, 9)));
        assert_eq!(parse_range(Some("items=0-1"), 10).unwrap(), None);
        for bad in ["bytes=10-", "bytes=5-2", "bytes=-0", "bytes=x-1", "bytes=-"] {
            let e = parse_range(Some(bad), 10).unwrap_err();
            assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        }
    }

    #[test]
    fn range_numbers_are_plain_digits() {
        for bad in ["bytes=+1-4", "bytes=1-+4", "bytes=-+3", "bytes=0x1-4"] {
            assert!(parse_range(Some(bad), 10).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_range_is_start_dash_end_of_digits() {
        assert_eq!(parse_content_range("0-9").unwrap(), (0, 9));
        assert_eq!(parse_content_range("bytes 5-9/10").unwrap(), (5, 9));
        assert_eq!(
            parse_content_range("0-18446744073709551615").unwrap(),
            (0, u64::MAX)
        );
        for bad in [
            "",
            "-",
            "5",
            "a-b",
            "+0-+9",
            "0--9",
            "0-18446744073709551616",
            "0 - 9",
        ] {
            let e = parse_content_range(bad).unwrap_err();
            assert_eq!(e.code, Code::BlobUploadInvalid, "{bad}");
        }
    }
}
