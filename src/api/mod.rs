//! HTTP routes of the OCI Distribution API, one module per resource. Handlers are thin: they
//! parse the request, call `Registry` and shape the reply.

mod admin;
mod base;
mod blobs;
mod catalog;
mod manifests;
pub mod ranges;
mod referrers;
pub mod routes;
mod tags;
mod uploads;

use actix_web::http::header::HeaderMap;
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::names::RepoName;

/// Registers every `/v2/` route and the `/admin/` endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/gc", web::post().to(admin::gc))
            .route("/fsck", web::post().to(admin::fsck))
            .route("/read-only", web::get().to(admin::read_only))
            .route("/read-only", web::post().to(admin::read_only)),
    );
    cfg.service(
        web::scope("/v2")
            .wrap(DefaultHeaders::new().add(("Docker-Distribution-Api-Version", "registry/2.0")))
            .default_service(web::to(routes::dispatch)),
    );
}

/// The configured request limits (defaults when the app has none).
fn limits(req: &HttpRequest) -> crate::config::LimitsConfig {
    req.app_data::<web::Data<crate::config::LimitsConfig>>()
        .map(|l| l.get_ref().clone())
        .unwrap_or_default()
}

/// Takes an upload slot when the app limits concurrent uploads.
fn upload_slot(req: &HttpRequest) -> Result<Option<tokio::sync::OwnedSemaphorePermit>> {
    req.app_data::<web::Data<crate::ops::limits::UploadSlots>>()
        .map(|s| s.acquire())
        .transpose()
}

/// Who sends the request, for per-client caps: the authenticated user, else the peer's
/// address (behind a reverse proxy every client shares the proxy's address).
fn client_id(req: &HttpRequest) -> String {
    use actix_web::HttpMessage;
    if let Some(u) = req.extensions().get::<crate::ops::access_log::User>() {
        return format!("user:{}", u.0);
    }
    match req.peer_addr() {
        Some(a) => format!("ip:{}", a.ip()),
        None => "ip:unknown".into(),
    }
}

/// Emits a webhook event when notifications are configured; `target` is only built then.
fn notify(req: &HttpRequest, action: &str, target: impl FnOnce() -> crate::ops::notify::Target) {
    use actix_web::HttpMessage;
    let Some(n) = req.app_data::<web::Data<crate::ops::notify::Notifier>>() else {
        return;
    };
    let info = crate::ops::notify::RequestInfo {
        id: uuid::Uuid::new_v4().to_string(),
        addr: req.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        host: req.connection_info().host().to_string(),
        method: req.method().to_string(),
        useragent: header(req.headers(), "user-agent")
            .unwrap_or("")
            .to_string(),
    };
    let actor = req
        .extensions()
        .get::<crate::ops::access_log::User>()
        .map(|u| u.0.clone());
    n.emit(crate::ops::notify::Event::new(
        action,
        target(),
        info,
        actor,
    ));
}

/// The event target of blob `digest` of `repo`.
fn blob_target(
    req: &HttpRequest,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
) -> crate::ops::notify::Target {
    crate::ops::notify::Target {
        media_type: "application/octet-stream".into(),
        size,
        digest: digest.to_string(),
        length: size,
        repository: repo.to_string(),
        url: url(req, &format!("/v2/{repo}/blobs/{digest}")),
        tag: None,
    }
}

/// Validates a repository name from the path.
fn repo(name: &str) -> Result<RepoName> {
    RepoName::parse(name)
}

/// Validates a digest from the path or query.
fn digest(s: &str) -> Result<Digest> {
    s.parse()
}

/// The absolute URL of `path` on the host the client addressed.
fn url(req: &HttpRequest, path: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), path)
}

/// A query parameter, percent-decoded.
fn query_param(req: &HttpRequest, key: &str) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses `n` and `last` for paginated listings; `n` defaults to and is capped at `max`.
fn pagination(req: &HttpRequest, max: usize) -> Result<(usize, Option<String>, bool)> {
    let n = match query_param(req, "n") {
        Some(v) => v.parse::<usize>().map_err(|_| {
            Error::new(Code::Unsupported, format!("n={v:?} is not a number"))
                .with_status(actix_web::http::StatusCode::BAD_REQUEST)
        })?,
        None => max,
    };
    let capped = n > max;
    Ok((n.min(max), query_param(req, "last"), capped))
}

/// Adds an RFC 5988 `Link: <...>; rel="next"` header for the page after `last`.
fn link_next(res: &mut actix_web::HttpResponseBuilder, path: &str, n: usize, last: &str) {
    let last = percent_encode(last);
    res.insert_header(("Link", format!("<{path}?n={n}&last={last}>; rel=\"next\"")));
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An empty reply with `status`.
fn empty(status: actix_web::http::StatusCode) -> actix_web::HttpResponseBuilder {
    HttpResponse::build(status)
}
