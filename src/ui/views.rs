//! The pages' templates (askama, checked at compile time against these structs) and the
//! helpers that answer with them. Every value reaches the HTML through askama's escaping.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use askama::Template;

use super::access::Viewer;

/// The header of every page.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub user: Option<String>,
    pub auth_on: bool,
    pub csrf: String,
    pub admin: bool,
}

impl Nav {
    pub fn of(v: &Viewer) -> Nav {
        Nav {
            user: v.user().map(str::to_string),
            auth_on: v.auth_on(),
            csrf: v.csrf.clone().unwrap_or_default(),
            admin: v.is_admin(),
        }
    }
}

/// A repository row as shown.
pub struct RepoView {
    pub name: String,
    pub href: String,
    pub tags: String,
    pub last_push: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "ui/repos.html")]
pub struct ReposPage {
    pub nav: Nav,
    pub q: String,
    pub prefix: String,
    pub rows: Vec<RepoView>,
    pub next_href: Option<String>,
}

/// A tag row as shown.
pub struct TagView {
    pub tag: String,
    pub digest: String,
    pub short: String,
    pub href: String,
    pub pushed: String,
    pub size: String,
    pub platforms: String,
    pub media_type: String,
    pub delete_href: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/repo.html")]
pub struct RepoPage {
    pub nav: Nav,
    pub name: String,
    pub q: String,
    pub sort: String,
    pub rows: Vec<TagView>,
    pub next_href: Option<String>,
    pub pull_prefix: String,
}

/// A descriptor as shown.
pub struct DescView {
    pub digest: String,
    pub short: String,
    pub href: Option<String>,
    pub media_type: String,
    pub size: String,
    pub bytes: u64,
    pub platform: String,
}

/// A group of referrers of one artifact type.
pub struct RefGroup {
    pub artifact_type: String,
    pub items: Vec<DescView>,
}

#[derive(Template)]
#[template(path = "ui/manifest.html")]
pub struct ManifestPage {
    pub nav: Nav,
    pub name: String,
    pub name_q: String,
    pub digest: String,
    pub media_type: String,
    pub size: String,
    pub artifact_type: String,
    pub subject_href: Option<String>,
    pub is_index: bool,
    pub config: Option<DescView>,
    pub platform: String,
    pub env: Vec<String>,
    pub entrypoint: String,
    pub cmd: String,
    pub labels: Vec<(String, String)>,
    pub history: Vec<String>,
    pub layers: Vec<DescView>,
    pub total: String,
    pub children: Vec<DescView>,
    pub annotations: Vec<(String, String)>,
    pub referrers: Vec<RefGroup>,
    pub referrers_more: bool,
    pub delete_href: Option<String>,
    pub pull: String,
    pub raw: String,
}

/// One GC run as shown.
pub struct RunView {
    pub when: String,
    pub kind: String,
    pub manifests: u64,
    pub blobs: u64,
    pub freed: String,
    pub uploads: u64,
    pub duration_ms: u64,
}

#[derive(Template)]
#[template(path = "ui/ops.html")]
pub struct OpsPage {
    pub nav: Nav,
    pub storage: String,
    pub blobs: u64,
    pub manifests: u64,
    pub repositories: u64,
    pub uploads: u64,
    pub pending_events: u64,
    pub read_only: bool,
    pub runs: Vec<RunView>,
}

#[derive(Template)]
#[template(path = "ui/confirm.html")]
pub struct ConfirmPage {
    pub nav: Nav,
    pub title: String,
    pub text: String,
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub button: String,
    pub cancel_href: String,
}

#[derive(Template)]
#[template(path = "ui/gc.html")]
pub struct GcPage {
    pub nav: Nav,
    pub dry_run: bool,
    pub summary: String,
    pub freed: String,
    pub items: Vec<String>,
    pub items_more: usize,
}

#[derive(Template)]
#[template(path = "ui/login.html")]
pub struct LoginPage {
    pub nav: Nav,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/message.html")]
pub struct MessagePage {
    pub nav: Nav,
    pub title: String,
    pub text: String,
    pub back: String,
}

/// Answers `status` with `page`.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "ui template");
            HttpResponse::InternalServerError().body("template error")
        }
    }
}

/// A page saying `text`, with `status`.
pub fn message(status: StatusCode, v: &Viewer, title: &str, text: &str) -> HttpResponse {
    html(
        status,
        &MessagePage {
            nav: Nav::of(v),
            title: title.into(),
            text: text.into(),
            back: "/ui/".into(),
        },
    )
}

/// See-other to `to`.
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", to))
        .finish()
}

/// The answer to a viewer who may not see something: the sign-in page for an anonymous
/// visitor when logins exist, else 403.
pub fn refused(v: &Viewer) -> HttpResponse {
    if v.auth_on() && v.user().is_none() {
        return redirect("/ui/login");
    }
    message(
        StatusCode::FORBIDDEN,
        v,
        "Not allowed",
        "You are not allowed to do this.",
    )
}
