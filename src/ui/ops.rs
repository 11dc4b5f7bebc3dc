//! The operations page: store figures read at constant cost (redb table lengths and the
//! `stats` counter, as `/metrics` reads them), the last GC runs, the read-only switch.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::access::Viewer;
use super::format::{size, time};
use super::views::{self, Nav, OpsPage, RunView};
use super::{UiState, actions};
use crate::ops::read_only::ReadOnly;
use crate::registry::Registry;

/// The store's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFigures {
    pub blob_bytes: u64,
    pub blobs: u64,
    pub manifests: u64,
    pub repositories: u64,
    pub pending_events: u64,
}

/// Reads the figures from one snapshot, reading no table's rows.
pub fn figures(reg: &Registry) -> crate::error::Result<StoreFigures> {
    reg.meta().read(|t| {
        let counts = t.counts()?;
        Ok(StoreFigures {
            blob_bytes: crate::meta::stats::get(t, crate::meta::stats::BLOB_BYTES)?,
            blobs: counts.blobs,
            manifests: counts.manifests,
            repositories: counts.repositories,
            pending_events: counts.notifications,
        })
    })
}

/// `GET /ui/ops` (admin only, as `/admin/`).
pub async fn page(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
) -> HttpResponse {
    let mut v = Viewer::of(&req, &state);
    if !v.is_admin() {
        return views::refused(&v);
    }
    let cookie = actions::ensure_session(&mut v, &state);
    let r = reg.get_ref().clone();
    let f = match tokio::task::spawn_blocking(move || figures(&r)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            return views::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                &v,
                "Error",
                &e.to_string(),
            );
        }
        Err(e) => {
            return views::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                &v,
                "Error",
                &e.to_string(),
            );
        }
    };
    let read_only = req
        .app_data::<web::Data<ReadOnly>>()
        .is_some_and(|ro| ro.is_on());
    let runs = crate::ops::gc_history::recent()
        .into_iter()
        .map(|r| RunView {
            when: time(r.finished),
            kind: if r.report.dry_run {
                "dry run"
            } else {
                "collection"
            }
            .into(),
            manifests: r.report.manifests_removed,
            blobs: r.report.blobs_removed,
            freed: size(r.report.bytes_freed),
            uploads: r.report.uploads_purged,
            duration_ms: r.report.duration_ms,
        })
        .collect();
    let mut res = views::html(
        StatusCode::OK,
        &OpsPage {
            nav: Nav::of(&v),
            storage: size(f.blob_bytes),
            blobs: f.blobs,
            manifests: f.manifests,
            repositories: f.repositories,
            uploads: reg.session_count() as u64,
            pending_events: f.pending_events,
            read_only,
            runs,
        },
    );
    actions::with_cookie(&mut res, cookie);
    res
}
