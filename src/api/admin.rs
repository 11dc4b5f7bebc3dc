//! Administration endpoints under `/admin/`: garbage collection and verification on demand,
//! the read-only switch, replication status and syncs.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::parse_duration;
use crate::error::{Code, Error, Result};
use crate::gc::{GcOptions, collect};
use crate::registry::Registry;

fn bad(msg: String) -> Error {
    Error::new(Code::Unsupported, msg).with_status(actix_web::http::StatusCode::BAD_REQUEST)
}

fn flag(req: &HttpRequest, key: &str) -> Result<Option<bool>> {
    match super::query_param(req, key)?.as_deref() {
        None => Ok(None),
        Some("" | "1" | "true") => Ok(Some(true)),
        Some("0" | "false") => Ok(Some(false)),
        Some(v) => Err(bad(format!("{key}={v:?} is not true or false"))),
    }
}

fn duration(req: &HttpRequest, key: &str) -> Result<Option<std::time::Duration>> {
    super::query_param(req, key)?
        .map(|v| parse_duration(&v).map_err(bad))
        .transpose()
}

/// `POST /admin/gc?grace=&upload_max_age=&delete_untagged=&dry_run=`: one collection now;
/// unspecified options take the server's configured values. Replies with the `GcReport`.
pub async fn gc(
    req: HttpRequest,
    reg: web::Data<Registry>,
    defaults: web::Data<GcOptions>,
) -> Result<HttpResponse> {
    let mut opts = defaults.get_ref().clone();
    if let Some(g) = duration(&req, "grace")? {
        opts.grace = g;
    }
    if let Some(a) = duration(&req, "upload_max_age")? {
        opts.upload_max_age = a;
    }
    if let Some(d) = flag(&req, "delete_untagged")? {
        opts.delete_untagged = d;
    }
    if let Some(d) = flag(&req, "dry_run")? {
        opts.dry_run = d;
    }
    let r = reg.get_ref().clone();
    let report = tokio::task::spawn_blocking(move || collect(&r, &opts))
        .await
        .map_err(|e| Error::internal("gc task", e))??;
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /admin/retention?dry_run=`: applies the retention rules now (`policies.retention`),
/// without collecting; replies with a `GcReport` listing each tag (`tag <repo>:<tag>`).
pub async fn retention(req: HttpRequest, reg: web::Data<Registry>) -> Result<HttpResponse> {
    let dry_run = flag(&req, "dry_run")?.unwrap_or(false);
    let r = reg.get_ref().clone();
    let report = tokio::task::spawn_blocking(move || crate::gc::retention::run(&r, dry_run))
        .await
        .map_err(|e| Error::internal("retention task", e))??;
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /admin/fsck`: verifies the live store (no repairs while serving).
pub async fn fsck(reg: web::Data<Registry>) -> Result<HttpResponse> {
    let r = reg.get_ref().clone();
    let report = tokio::task::spawn_blocking(move || crate::fsck::fsck(&r, false, false))
        .await
        .map_err(|e| Error::internal("fsck task", e))??;
    Ok(HttpResponse::Ok().json(report))
}

/// `GET /admin/usage`: the bytes each repository and tracked namespace holds, with quotas.
pub async fn usage(reg: web::Data<Registry>) -> Result<HttpResponse> {
    let r = reg.get_ref().clone();
    let report = tokio::task::spawn_blocking(move || r.usage_report())
        .await
        .map_err(|e| Error::internal("usage task", e))??;
    Ok(HttpResponse::Ok().json(report))
}

/// `GET /admin/read-only`: whether writes are refused; `POST /admin/read-only?enabled=true|false`
/// switches it.
pub async fn read_only(
    req: HttpRequest,
    ro: web::Data<crate::ops::read_only::ReadOnly>,
) -> Result<HttpResponse> {
    if req.method() == actix_web::http::Method::POST {
        let on = flag(&req, "enabled")?
            .ok_or_else(|| bad("POST /admin/read-only needs ?enabled=true|false".into()))?;
        ro.set(on);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "read_only": ro.is_on() })))
}

fn replication(
    rep: Option<web::Data<crate::replication::Replication>>,
) -> Result<web::Data<crate::replication::Replication>> {
    rep.ok_or_else(|| {
        Error::new(Code::Unsupported, "no [replication] is configured")
            .with_status(actix_web::http::StatusCode::NOT_FOUND)
    })
}

/// `GET /admin/replication`: per push target and pull source, what is pending, the last
/// success and the last error.
pub async fn replication_status(
    rep: Option<web::Data<crate::replication::Replication>>,
) -> Result<HttpResponse> {
    let rep = replication(rep)?;
    let report = tokio::task::spawn_blocking(move || rep.report())
        .await
        .map_err(|e| Error::internal("replication status", e))??;
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /admin/replication/sync?source=`: syncs every pull source (or one) now; replies with
/// what each copied.
pub async fn replication_sync(
    req: HttpRequest,
    rep: Option<web::Data<crate::replication::Replication>>,
) -> Result<HttpResponse> {
    let rep = replication(rep)?;
    let only = super::query_param(&req, "source")?;
    let results = rep.sync(only.as_deref()).await.map_err(bad)?;
    Ok(HttpResponse::Ok().json(results))
}

/// `POST /admin/backup?dest=/absolute/dir`: backs the live store up into `dest` (a directory
/// on the server's machine; incremental against a backup already there) and replies with the
/// `BackupReport`. 409 while another backup writes into `dest`.
pub async fn backup(req: HttpRequest, reg: web::Data<Registry>) -> Result<HttpResponse> {
    let dest = super::query_param(&req, "dest")?
        .filter(|d| !d.is_empty())
        .ok_or_else(|| bad("POST /admin/backup needs ?dest=<absolute directory>".into()))?;
    let dest = std::path::PathBuf::from(dest);
    if !dest.is_absolute() {
        return Err(bad(format!(
            "dest {} is not an absolute path",
            dest.display()
        )));
    }
    let r = reg.get_ref().clone();
    let report = tokio::task::spawn_blocking(move || crate::backup::backup(&r, &dest, &|_| {}))
        .await
        .map_err(|e| Error::internal("backup task", e))?
        .map_err(crate::backup::BackupError::into_api_error)?;
    Ok(HttpResponse::Ok().json(report))
}
