//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (start, monolithic, mount) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::{Code, Error, Result};
use crate::names::RepoName;
use crate::registry::Registry;
use crate::registry::range_header;

/// The request's `Content-Range`, if any (see `ranges::parse_content_range`).
fn content_range(req: &HttpRequest) -> Result<Option<(u64, u64)>> {
    super::header(req.headers(), "content-range")
        .map(super::ranges::parse_content_range)
        .transpose()
}

fn session_reply(
    req: &HttpRequest,
    status: StatusCode,
    repo: &RepoName,
    id: &str,
    len: u64,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            "Location",
            super::url(req, &format!("/v2/{repo}/blobs/uploads/{id}")),
        ))
        .insert_header(("Docker-Upload-UUID", id))
        .insert_header(("Range", range_header(len)))
        .finish()
}

fn created_reply(
    req: &HttpRequest,
    repo: &RepoName,
    digest: &crate::digest::Digest,
) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((
            "Location",
            super::url(req, &format!("/v2/{repo}/blobs/{digest}")),
        ))
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .finish()
}

pub async fn start(
    req: HttpRequest,
    path: web::Path<String>,
    reg: web::Data<Registry>,
    body: web::Payload,
) -> Result<HttpResponse> {
    let repo = super::repo(&path)?;
    if let Some(mount) = super::query_param(&req, "mount")? {
        let digest = super::digest(&mount)?;
        if let Some(from) = super::query_param(&req, "from")? {
            let from = super::repo(&from)?;
            if super::writer(&req, &reg)
                .mount(&repo, &from, &digest)
                .await?
            {
                return Ok(created_reply(&req, &repo, &digest));
            }
        }
    } else if let Some(d) = super::query_param(&req, "digest")? {
        let digest = super::digest(&d)?;
        let _slot = super::upload_slot(&req)?;
        let body = crate::ops::limits::idle_timeout(body, super::limits(&req).body_idle_timeout);
        super::writer(&req, &reg)
            .put_blob(&repo, &digest, body)
            .await?;
        return Ok(created_reply(&req, &repo, &digest));
    }
    let id = reg.start_upload(&repo, &super::client_id(&req)).await?;
    Ok(session_reply(&req, StatusCode::ACCEPTED, &repo, &id, 0))
}

pub async fn status(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let repo = super::repo(&path.0)?;
    let len = reg.upload_status(&repo, &path.1).await?;
    Ok(session_reply(
        &req,
        StatusCode::NO_CONTENT,
        &repo,
        &path.1,
        len,
    ))
}

pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
    body: web::Payload,
) -> Result<HttpResponse> {
    let repo = super::repo(&path.0)?;
    let range = content_range(&req)?;
    let _slot = super::upload_slot(&req)?;
    let body = crate::ops::limits::idle_timeout(body, super::limits(&req).body_idle_timeout);
    let len = reg.append(&repo, &path.1, range, body).await?;
    Ok(session_reply(
        &req,
        StatusCode::ACCEPTED,
        &repo,
        &path.1,
        len,
    ))
}

pub async fn put(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
    body: web::Payload,
) -> Result<HttpResponse> {
    let repo = super::repo(&path.0)?;
    let digest = super::query_param(&req, "digest")?
        .ok_or_else(|| Error::new(Code::DigestInvalid, "the closing PUT needs ?digest="))?;
    let digest = super::digest(&digest)?;
    let range = content_range(&req)?;
    let _slot = super::upload_slot(&req)?;
    let body = crate::ops::limits::idle_timeout(body, super::limits(&req).body_idle_timeout);
    super::writer(&req, &reg)
        .finish_upload(&repo, &path.1, &digest, range, body)
        .await?;
    Ok(created_reply(&req, &repo, &digest))
}

pub async fn cancel(
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    let repo = super::repo(&path.0)?;
    reg.cancel_upload(&repo, &path.1).await?;
    Ok(super::empty(StatusCode::NO_CONTENT).finish())
}
