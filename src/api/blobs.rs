//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single `Range` support (RFC 9110).

use std::io::{Seek, SeekFrom};

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::ranges::parse_range;
use crate::error::{Error, Result};
use crate::registry::Registry;

/// Read size when streaming a blob.
const READ_CHUNK: usize = 256 * 1024;

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
