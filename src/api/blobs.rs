//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single `Range` support (RFC 9110).

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::ranges::parse_range;
use crate::error::{Error, Result};
use crate::registry::Registry;

fn parse(path: &(String, String)) -> Result<(crate::names::RepoName, crate::digest::Digest)> {
    Ok((super::repo(&path.0)?, super::digest(&path.1)?))
}

pub async fn head(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let (repo, digest) = parse(&path)?;
    let size = match super::mirror_route(&req, &repo) {
        Some(route) => crate::mirror::blobs::head(&reg, &route, &repo, &digest).await?,
        None => reg.stat_blob(&repo, &digest).await?,
    };
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
    if let Some(route) = super::mirror_route(&req, &repo) {
        let whole = super::header(req.headers(), "range").is_none();
        let pulled = crate::mirror::blobs::get(&reg, &route, &repo, &digest, whole).await?;
        if let crate::mirror::blobs::Pulled::Stream { len, body } = pulled {
            // The first client of an uncached blob gets it as it arrives from upstream.
            let body = futures_util::stream::unfold(body, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            super::notify_pull(&req, || super::blob_target(&req, &repo, &digest, len));
            return Ok(HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header(("Docker-Content-Digest", digest.to_string()))
                .insert_header(("ETag", format!("\"{digest}\"")))
                .body(SizedStream::new(len, body)));
        }
    }
    let size = reg.stat_blob(&repo, &digest).await?;
    if let Some(url) = reg.store().redirect_url(&digest).await? {
        // The bytes come from the object store: the client follows with no credentials of ours.
        super::notify_pull(&req, || super::blob_target(&req, &repo, &digest, size));
        return Ok(HttpResponse::TemporaryRedirect()
            .insert_header(("Location", url))
            .insert_header(("Docker-Content-Digest", digest.to_string()))
            .finish());
    }
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
    let stream = reg
        .blob_body(&repo, &digest, start, len)
        .await?
        .map(|r| r.map_err(Error::from));
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
