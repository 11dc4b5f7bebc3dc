//! HTTP routes of the OCI Distribution API, one module per resource. Handlers are thin: they
//! parse the request, call `Registry` and shape the reply.

mod admin;
mod base;
mod blobs;
mod catalog;
mod manifests;
pub mod ranges;
pub mod rate_limit;
mod referrers;
pub mod request;
pub mod routes;
mod tags;
mod uploads;

use actix_web::http::header::HeaderMap;
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::names::RepoName;
use crate::registry::Registry;

/// Registers every `/v2/` route and the `/admin/` endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/gc", web::post().to(admin::gc))
            .route("/retention", web::post().to(admin::retention))
            .route("/fsck", web::post().to(admin::fsck))
            .route("/usage", web::get().to(admin::usage))
            .route("/backup", web::post().to(admin::backup))
            .route("/reload", web::post().to(crate::ops::reload::handler))
            .route("/read-only", web::get().to(admin::read_only))
            .route("/read-only", web::post().to(admin::read_only))
            .route("/replication", web::get().to(admin::replication_status))
            .route("/replication/sync", web::post().to(admin::replication_sync)),
    );
    cfg.service(
        web::scope("/v2")
            .wrap(DefaultHeaders::new().add(("Docker-Distribution-Api-Version", "registry/2.0")))
            .default_service(web::to(routes::dispatch)),
    );
}

/// The mirror serving `repo`, when it is under a mirror's prefix (`[[mirrors]]`).
fn mirror_route(req: &HttpRequest, repo: &RepoName) -> Option<crate::mirror::Route> {
    req.app_data::<web::Data<crate::mirror::Mirrors>>()?
        .route(repo.as_str())
}

/// Whether clients may delete manifests and blobs (`[storage] delete`).
#[derive(Debug, Clone, Copy)]
pub struct Deletes(pub bool);

impl Deletes {
    /// Whether deletes are allowed by the app's setting (allowed when it has none).
    pub fn allowed(req: &HttpRequest) -> bool {
        deletes_allowed(req).is_ok()
    }
}

/// Refuses a manifest or blob `DELETE` with 405 `UNSUPPORTED` when deletes are switched off.
fn deletes_allowed(req: &HttpRequest) -> Result<()> {
    match req.app_data::<web::Data<Deletes>>() {
        Some(d) if !d.0 => Err(Error::new(
            Code::Unsupported,
            "deletes are disabled on this registry ([storage] delete = false)",
        )),
        _ => Ok(()),
    }
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

/// Who sends the request, for per-client caps: the authenticated user, else the client's
/// address (`ops::client_ip`: behind a trusted proxy, from `X-Forwarded-For`).
fn client_id(req: &HttpRequest) -> String {
    use actix_web::HttpMessage;
    if let Some(u) = req.extensions().get::<crate::ops::access_log::User>() {
        return format!("user:{}", u.0);
    }
    match crate::ops::client_ip::of(req) {
        Some(ip) => format!("ip:{ip}"),
        None => "ip:unknown".into(),
    }
}

/// The request context of a write's event: the registry queues the event in the write's own
/// transaction (`Registry::with_event`).
fn event_context(req: &HttpRequest) -> crate::events::EventContext {
    use actix_web::HttpMessage;
    let info = req.connection_info();
    crate::events::EventContext {
        request: crate::events::RequestInfo {
            id: uuid::Uuid::new_v4().to_string(),
            addr: req.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            host: info.host().to_string(),
            method: req.method().to_string(),
            useragent: header(req.headers(), "user-agent")
                .unwrap_or("")
                .to_string(),
        },
        actor: req
            .extensions()
            .get::<crate::ops::access_log::User>()
            .map(|u| u.0.clone()),
        base_url: format!("{}://{}", info.scheme(), info.host()),
    }
}

/// The registry handle a write of `req` goes through: it queues the write's event when an
/// outbox (webhooks, replication) is installed.
pub(crate) fn writer(req: &HttpRequest, reg: &Registry) -> Registry {
    match reg.outbox() {
        Some(_) => reg.with_event(Some(event_context(req))),
        None => reg.clone(),
    }
}

/// Emits a pull's webhook event (best-effort, see `ops::notify`) when notifications are
/// configured; `target` is only built then.
fn notify_pull(req: &HttpRequest, target: impl FnOnce() -> crate::ops::notify::Target) {
    let Some(n) = req.app_data::<web::Data<crate::ops::notify::Notifier>>() else {
        return;
    };
    n.emit(event_context(req).event("pull", target()));
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

/// A query parameter, decoded, from the request's one parse (the one authorization read).
fn query_param(req: &HttpRequest, key: &str) -> Result<Option<String>> {
    Ok(request::Parsed::of(req)
        .query()?
        .get(key)
        .map(str::to_string))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses `n` and `last` for paginated listings; `n` defaults to and is capped at `max`.
fn pagination(req: &HttpRequest, max: usize) -> Result<(usize, Option<String>, bool)> {
    let n = match query_param(req, "n")? {
        Some(v) => v.parse::<usize>().map_err(|_| {
            Error::new(Code::Unsupported, format!("n={v:?} is not a number"))
                .with_status(actix_web::http::StatusCode::BAD_REQUEST)
        })?,
        None => max,
    };
    let capped = n > max;
    Ok((n.min(max), query_param(req, "last")?, capped))
}

/// Adds an RFC 5988 `Link: <...>; rel="next"` header for the page after `last`.
fn link_next(res: &mut actix_web::HttpResponseBuilder, path: &str, n: usize, last: &str) {
    let last = percent_encode(last);
    res.insert_header(("Link", format!("<{path}?n={n}&last={last}>; rel=\"next\"")));
}

/// Everything but RFC 3986's unreserved characters is escaped.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// An empty reply with `status`.
fn empty(status: actix_web::http::StatusCode) -> actix_web::HttpResponseBuilder {
    HttpResponse::build(status)
}
