//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single `Range` support (RFC 9110).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{Stream, StreamExt};

use super::ranges::parse_range;
use crate::error::{Error, Result};
use crate::registry::Registry;

/// Read size when streaming a blob.
const READ_CHUNK: u64 = 1024 * 1024;

/// Reads prepared ahead of the socket.
const READ_AHEAD: usize = 2;

/// Streams `len` bytes of `file` from `start`: positional reads of `READ_CHUNK` on the blocking
/// pool, `READ_AHEAD` of them in flight while earlier chunks are sent.
fn file_stream(
    file: std::fs::File,
    start: u64,
    len: u64,
) -> impl Stream<Item = Result<bytes::Bytes>> {
    let file = Arc::new(file);
    let chunks = (0..len.div_ceil(READ_CHUNK)).map(move |i| {
        let pos = start + i * READ_CHUNK;
        let n = READ_CHUNK.min(start + len - pos) as usize;
        (pos, n)
    });
    futures_util::stream::iter(chunks)
        .map(move |(pos, n)| {
            let f = file.clone();
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, pos)?;
                Ok::<_, std::io::Error>(bytes::Bytes::from(buf))
            })
        })
        .buffered(READ_AHEAD)
        .map(|r| match r {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(e) => Err(Error::internal("blob read task", e)),
        })
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
    let (file, size) = reg.open_blob(&repo, &digest).await?;
    let range = parse_range(super::header(req.headers(), "range"), size)?;
    let mut res = match range {
        Some((start, end)) => {
            let mut r = HttpResponse::build(StatusCode::PARTIAL_CONTENT);
            r.insert_header(("Content-Range", format!("bytes {start}-{end}/{size}")));
            r
        }
        None => HttpResponse::Ok(),
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    let stream = file_stream(file, start, len);
    super::notify_pull(&req, || super::blob_target(&req, &repo, &digest, size));
    Ok(res
        .content_type("application/octet-stream")
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header(("ETag", format!("\"{digest}\"")))
        .insert_header(("Accept-Ranges", "bytes"))
        .body(SizedStream::new(len, stream)))
}

pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    super::deletes_allowed(&req)?;
    let (repo, digest) = parse(&path)?;
    super::writer(&req, &reg)
        .delete_blob(&repo, &digest)
        .await?;
    Ok(super::empty(StatusCode::ACCEPTED).finish())
}
