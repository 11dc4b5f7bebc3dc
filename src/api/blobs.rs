//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single `Range` support (RFC 9110).

use std::io::{Seek, SeekFrom};

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::error::{Code, Error, Result};
use crate::registry::Registry;

/// Read size when streaming a blob.
const READ_CHUNK: usize = 256 * 1024;

/// Parses `Range: bytes=a-b` (also `a-` and `-suffix`) against a blob of `size` bytes.
/// `Ok(None)` means serve the whole blob (no header or a form we ignore, as RFC 9110 allows).
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
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| unsatisfiable());
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

fn parse(path: &(String, String)) -> Result<(crate::names::RepoName, crate::digest::Digest)> {
    Ok((super::repo(&path.0)?, super::digest(&path.1)?))
}

pub async fn head(
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let (repo, digest) = parse(&path)?;
    let size = reg.stat_blob(&repo, &digest).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header(("ETag", format!("\"{digest}\"")))
        .insert_header(("Accept-Ranges", "bytes"))
        .body(SizedStream::new(
            size,
            futures_util::stream::empty::<Result<bytes::Bytes>>(),
        )))
}

pub async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let (repo, digest) = parse(&path)?;
    let (mut file, size) = reg.open_blob(&repo, &digest).await?;
    let range = parse_range(super::header(req.headers(), "range"), size)?;
    let mut res = match range {
        Some((start, end)) => {
            file.seek(SeekFrom::Start(start))?;
            let mut r = HttpResponse::build(StatusCode::PARTIAL_CONTENT);
            r.insert_header(("Content-Range", format!("bytes {start}-{end}/{size}")));
            r
        }
        None => HttpResponse::Ok(),
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    let reader = tokio::fs::File::from_std(file).take(len);
    let stream = ReaderStream::with_capacity(reader, READ_CHUNK).map(|r| r.map_err(Error::from));
    Ok(res
        .content_type("application/octet-stream")
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header(("ETag", format!("\"{digest}\"")))
        .insert_header(("Accept-Ranges", "bytes"))
        .body(SizedStream::new(len, stream)))
}

pub async fn delete(
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let (repo, digest) = parse(&path)?;
    reg.delete_blob(&repo, &digest).await?;
    Ok(super::empty(StatusCode::ACCEPTED).finish())
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
}
