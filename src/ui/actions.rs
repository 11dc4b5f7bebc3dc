//! The actions: delete a tag, delete a manifest, run GC. Each has a confirmation page (GET,
//! a form; works without JS) and the action itself (POST), which checks the CSRF token first,
//! then the very access the API request would need (`DELETE /v2/<name>/manifests/<ref>`:
//! delete; `POST /admin/gc`: admin), `[storage] delete` and read-only mode, like the API.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, SET_COOKIE};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::UiState;
use super::access::Viewer;
use super::csrf;
use super::format::{q, size};
use super::views::{self, ConfirmPage, GcPage, Nav};
use crate::auth::rules::Actions;
use crate::gc::GcOptions;
use crate::names::{Reference, RepoName};
use crate::ops::read_only::ReadOnly;
use crate::registry::Registry;

/// Gives a visitor without a session an anonymous one (so the page's form has a CSRF token);
/// returns the cookie to set.
pub fn ensure_session(v: &mut Viewer, state: &UiState) -> Option<String> {
    if v.csrf.is_some() {
        return None;
    }
    let (id, s) = state.sessions.create(None);
    v.csrf = Some(s.csrf);
    v.session = Some(id.clone());
    Some(super::session::set_cookie(&id, state.secure))
}

/// Adds `Set-Cookie: cookie` to `res`.
pub fn with_cookie(res: &mut HttpResponse, cookie: Option<String>) {
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().append(SET_COOKIE, c);
    }
}

/// Answers with confirmation page `page` (its `nav` filled in here, after the visitor has a
/// session and so a CSRF token).
fn confirm(mut v: Viewer, state: &UiState, mut page: ConfirmPage) -> HttpResponse {
    let cookie = ensure_session(&mut v, state);
    page.nav = Nav::of(&v);
    let mut res = views::html(StatusCode::OK, &page);
    with_cookie(&mut res, cookie);
    res
}

/// A confirmation page posting `fields` to `action`.
fn confirm_page(
    title: &str,
    text: String,
    action: &str,
    fields: Vec<(String, String)>,
    cancel_href: String,
) -> ConfirmPage {
    ConfirmPage {
        nav: Nav::default(),
        title: title.into(),
        text,
        action: action.into(),
        fields,
        button: title.into(),
        cancel_href,
    }
}

#[derive(Deserialize)]
pub struct TagQuery {
    name: String,
    tag: String,
}

#[derive(Deserialize)]
pub struct ManifestQuery {
    name: String,
    digest: String,
}

/// Why a delete may not go ahead, as a refusal page; `None` when it may.
fn delete_refused(req: &HttpRequest, v: &Viewer, repo: &str) -> Option<HttpResponse> {
    if !v.may(repo, Actions::DELETE) {
        return Some(views::refused(v));
    }
    if !crate::api::Deletes::allowed(req) {
        return Some(views::message(
            StatusCode::METHOD_NOT_ALLOWED,
            v,
            "Deletes are off",
            "Deletes are disabled on this registry ([storage] delete = false).",
        ));
    }
    // A mirrored repository is read-only, as in the API (`DENIED`).
    let mirrors = req.app_data::<web::Data<crate::mirror::Mirrors>>();
    if let Some(Err(e)) = mirrors.map(|m| m.refuse_write(repo)) {
        return Some(views::message(
            StatusCode::FORBIDDEN,
            v,
            "Refused",
            &e.message,
        ));
    }
    None
}

/// `GET /ui/delete-tag?name=&tag=`.
pub async fn confirm_tag(
    req: HttpRequest,
    state: web::Data<UiState>,
    query: web::Query<TagQuery>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    let TagQuery { name, tag } = query.into_inner();
    if let Some(r) = delete_refused(&req, &v, &name) {
        return r;
    }
    let text = format!(
        "Delete tag {name}:{tag}? The manifest it points at stays (other tags and digests still reach it)."
    );
    let cancel = format!("/ui/repo?name={}", q(&name));
    let fields = vec![("name".into(), name), ("tag".into(), tag)];
    confirm(
        v,
        &state,
        confirm_page("Delete tag", text, "/ui/delete-tag", fields, cancel),
    )
}

/// `GET /ui/delete-manifest?name=&digest=`.
pub async fn confirm_manifest(
    req: HttpRequest,
    state: web::Data<UiState>,
    query: web::Query<ManifestQuery>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    let ManifestQuery { name, digest } = query.into_inner();
    if let Some(r) = delete_refused(&req, &v, &name) {
        return r;
    }
    let text = format!(
        "Delete manifest {name}@{digest} and every tag pointing at it? Its blobs are freed by the next GC if nothing else uses them."
    );
    let cancel = format!("/ui/manifest?name={}&ref={}", q(&name), q(&digest));
    let fields = vec![("name".into(), name), ("digest".into(), digest)];
    confirm(
        v,
        &state,
        confirm_page(
            "Delete manifest",
            text,
            "/ui/delete-manifest",
            fields,
            cancel,
        ),
    )
}

#[derive(Deserialize)]
pub struct DeleteForm {
    csrf: Option<String>,
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

async fn delete(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
    form: DeleteForm,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    if !csrf::valid(&v, form.csrf.as_deref()) {
        return views::message(StatusCode::FORBIDDEN, &v, "Refused", csrf::REFUSED);
    }
    if let Some(r) = delete_refused(&req, &v, &form.name) {
        return r;
    }
    if req
        .app_data::<web::Data<ReadOnly>>()
        .is_some_and(|ro| ro.is_on())
    {
        return views::message(
            StatusCode::METHOD_NOT_ALLOWED,
            &v,
            "Read-only",
            "The registry is in read-only mode; writes are refused.",
        );
    }
    let reference = match (&form.tag, &form.digest) {
        (Some(t), None) => Reference::parse_lookup(t),
        (None, Some(d)) => d.parse().map(Reference::Digest),
        _ => {
            return views::message(
                StatusCode::BAD_REQUEST,
                &v,
                "Bad request",
                "Give a tag or a digest.",
            );
        }
    };
    let (Ok(repo), Ok(reference)) = (RepoName::parse(&form.name), reference) else {
        return views::message(
            StatusCode::BAD_REQUEST,
            &v,
            "Bad request",
            "Not a repository name, tag or digest.",
        );
    };
    match crate::api::writer(&req, &reg)
        .delete_manifest(&repo, &reference)
        .await
    {
        Ok(()) => {
            tracing::info!(user = v.user().unwrap_or("-"), repo = %repo, reference = ?form.tag.as_ref().or(form.digest.as_ref()), "deleted from the web UI");
            views::redirect(&format!("/ui/repo?name={}", q(repo.as_str())))
        }
        Err(e) => views::message(
            actix_web::ResponseError::status_code(&e),
            &v,
            "Not deleted",
            &e.to_string(),
        ),
    }
}

/// `POST /ui/delete-tag` (name, tag, csrf).
pub async fn delete_tag(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
    form: web::Form<DeleteForm>,
) -> HttpResponse {
    let mut f = form.into_inner();
    f.digest = None;
    if f.tag.is_none() {
        f.tag = Some(String::new());
    }
    delete(req, state, reg, f).await
}

/// `POST /ui/delete-manifest` (name, digest, csrf).
pub async fn delete_manifest(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
    form: web::Form<DeleteForm>,
) -> HttpResponse {
    let mut f = form.into_inner();
    f.tag = None;
    if f.digest.is_none() {
        f.digest = Some(String::new());
    }
    delete(req, state, reg, f).await
}

/// `GET /ui/gc`: confirm a collection.
pub async fn confirm_gc(req: HttpRequest, state: web::Data<UiState>) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    if !v.is_admin() {
        return views::refused(&v);
    }
    let text = "Run garbage collection now with the server's settings? It removes what nothing references any more once its grace period is over.".to_string();
    let fields = vec![("dry_run".into(), "false".into())];
    confirm(
        v,
        &state,
        confirm_page("Run GC", text, "/ui/gc", fields, "/ui/ops".into()),
    )
}

#[derive(Deserialize)]
pub struct GcForm {
    csrf: Option<String>,
    dry_run: Option<String>,
}

/// Items listed at most on the result page.
const GC_ITEMS: usize = 200;

/// `POST /ui/gc` (csrf, dry_run=true|false).
pub async fn run_gc(
    req: HttpRequest,
    state: web::Data<UiState>,
    reg: web::Data<Registry>,
    defaults: web::Data<GcOptions>,
    form: web::Form<GcForm>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    if !csrf::valid(&v, form.csrf.as_deref()) {
        return views::message(StatusCode::FORBIDDEN, &v, "Refused", csrf::REFUSED);
    }
    if !v.is_admin() {
        return views::refused(&v);
    }
    let mut opts = defaults.get_ref().clone();
    opts.dry_run = form.dry_run.as_deref() != Some("false");
    let r = reg.get_ref().clone();
    let report = match tokio::task::spawn_blocking(move || crate::gc::collect(&r, &opts)).await {
        Ok(Ok(rep)) => rep,
        Ok(Err(e)) => {
            return views::message(
                actix_web::ResponseError::status_code(&e),
                &v,
                "GC failed",
                &e.to_string(),
            );
        }
        Err(e) => {
            return views::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                &v,
                "GC failed",
                &e.to_string(),
            );
        }
    };
    tracing::info!(user = v.user().unwrap_or("-"), %report, "GC from the web UI");
    let items_more = report.items.len().saturating_sub(GC_ITEMS);
    views::html(
        StatusCode::OK,
        &GcPage {
            nav: Nav::of(&v),
            dry_run: report.dry_run,
            summary: report.to_string(),
            freed: size(report.bytes_freed),
            items: report.items.iter().take(GC_ITEMS).cloned().collect(),
            items_more,
        },
    )
}
