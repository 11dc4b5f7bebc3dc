//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use crate::error::{Code, Error, Result};
use crate::names::{Reference, RepoName};
use crate::registry::Registry;

/// The repository and reference of a manifest to store.
fn parse(path: &(String, String)) -> Result<(RepoName, Reference)> {
    Ok((super::repo(&path.0)?, Reference::parse(&path.1)?))
}

/// The repository and reference of a manifest to look up or delete (see
/// `Reference::parse_lookup`: an invalid tag names nothing, so 404).
fn parse_lookup(path: &(String, String)) -> Result<(RepoName, Reference)> {
    Ok((super::repo(&path.0)?, Reference::parse_lookup(&path.1)?))
}

/// The event target of manifest `digest` of `repo`.
fn target(
    req: &HttpRequest,
    repo: &RepoName,
    reference: &Reference,
    digest: &crate::digest::Digest,
    media_type: &str,
    size: u64,
) -> crate::ops::notify::Target {
    crate::ops::notify::Target {
        media_type: media_type.into(),
        size,
        digest: digest.to_string(),
        length: size,
        repository: repo.to_string(),
        url: super::url(req, &format!("/v2/{repo}/manifests/{digest}")),
        tag: match reference {
            Reference::Tag(t) => Some(t.clone()),
            Reference::Digest(_) => None,
        },
    }
}

async fn fetch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
    with_body: bool,
) -> Result<HttpResponse> {
    let (repo, reference) = parse_lookup(&path)?;
    let m = match super::mirror_route(&req, &repo) {
        Some(route) => {
            crate::mirror::manifests::get(&reg, &route, &repo, &reference, with_body).await?
        }
        None => reg.get_manifest(&repo, &reference, with_body).await?,
    };
    // Required signatures apply to pulls by tag only (`policy::signatures`).
    if let Reference::Tag(tag) = &reference {
        crate::policy::signatures::check_pull(&reg, repo.as_str(), tag, &m.digest, m.size).await?;
    }
    if with_body {
        super::notify_pull(&req, || {
            target(&req, &repo, &reference, &m.digest, &m.media_type, m.size)
        });
    }
    let mut res = HttpResponse::Ok();
    res.content_type(m.media_type.as_str())
        .insert_header(("Docker-Content-Digest", m.digest.to_string()))
        .insert_header(("ETag", format!("\"{}\"", m.digest)));
    Ok(match m.body {
        Some(b) => res.body(b),
        None => res.body(actix_web::body::SizedStream::new(
            m.size,
            futures_util::stream::empty::<Result<bytes::Bytes>>(),
        )),
    })
}

pub async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    fetch(req, path, reg, true).await
}

pub async fn head(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    fetch(req, path, reg, false).await
}

pub async fn put(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let (repo, reference) = parse(&path)?;
    let limits = super::limits(&req);
    let max = limits.max_manifest_size;
    // How much of an oversized manifest is read and discarded before replying 413.
    let drain_limit = max.saturating_mul(4);
    let too_large = || {
        Error::new(
            Code::ManifestInvalid,
            format!("manifest exceeds {max} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let mut payload = crate::ops::limits::idle_timeout(payload, limits.body_idle_timeout);
    let mut body = bytes::BytesMut::with_capacity(4096);
    let mut seen = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| Error::new(Code::ManifestInvalid, format!("reading manifest: {e}")))?;
        seen += chunk.len();
        if seen > max {
            // Drain (up to a bound) so the client reads our 413 instead of a reset connection.
            if seen > drain_limit {
                break;
            }
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    if seen > max {
        return Err(too_large());
    }
    let content_type = super::header(req.headers(), "content-type");
    let out = super::writer(&req, &reg)
        .put_manifest(&repo, &reference, content_type, body.freeze())
        .await?;
    let mut res = HttpResponse::Created();
    res.insert_header((
        "Location",
        super::url(&req, &format!("/v2/{repo}/manifests/{}", out.digest)),
    ))
    .insert_header(("Docker-Content-Digest", out.digest.to_string()));
    if let Some(s) = &out.subject {
        res.insert_header(("OCI-Subject", s.to_string()));
    }
    Ok(res.finish())
}

pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    reg: web::Data<Registry>,
) -> Result<HttpResponse> {
    super::deletes_allowed(&req)?;
    let (repo, reference) = parse_lookup(&path)?;
    super::writer(&req, &reg)
        .delete_manifest(&repo, &reference)
        .await?;
    Ok(super::empty(StatusCode::ACCEPTED).finish())
}
