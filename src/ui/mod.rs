//! The web interface at `/ui/` (`[ui] enabled`, on by default): server-rendered pages from
//! askama templates (`templates/ui/`), one small script that only adds copy buttons.
//!
//! ```text
//! GET  /ui/                 repositories (prefix / substring search, paginated)   pages.rs
//! GET  /ui/repo?name=       a repository's tags                                   pages.rs
//! GET  /ui/manifest?name=&ref=  a manifest or index, config, referrers            pages.rs
//! GET  /ui/ops              store figures, GC runs, GC dry run / run              ops.rs
//! GET  /ui/delete-tag, /ui/delete-manifest, /ui/gc: confirmation pages          actions.rs
//! POST the same paths: the actions (CSRF token required)                        actions.rs
//! GET/POST /ui/login, POST /ui/logout                                           login.rs
//! ```
//!
//! The API's auth middleware leaves `/ui/` alone; the UI authenticates with its own session
//! cookie (`session.rs`) and decides every access with `Auth::authorize`, the API's own
//! decision (`access.rs`): a page or action needs exactly what the matching API request
//! needs (pull to see a repository, delete to delete a tag or manifest, admin for GC).

mod access;
mod actions;
pub mod csrf;
pub mod data;
pub mod detail;
mod format;
mod login;
mod ops;
mod pages;
pub mod session;
mod views;

use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, web};

/// The web interface's state: its sessions, and whether cookies must be `Secure`.
#[derive(Debug)]
pub struct UiState {
    pub sessions: session::Sessions,
    pub secure: bool,
}

impl UiState {
    /// The state of a server; `tls` makes cookies `Secure`.
    pub fn new(tls: bool) -> UiState {
        UiState {
            sessions: session::Sessions::default(),
            secure: tls,
        }
    }
}

const CSS: &str = include_str!("static/ui.css");
const JS: &str = include_str!("static/ui.js");

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "max-age=3600"))
        .body(CSS)
}

async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "max-age=3600"))
        .body(JS)
}

/// Registers the `/ui` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(|| async { views::redirect("/ui/") }));
    cfg.service(
        web::scope("/ui")
            .wrap(
                DefaultHeaders::new()
                    .add(("Cache-Control", "no-store"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "same-origin"))
                    .add((
                        "Content-Security-Policy",
                        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                    )),
            )
            .route("/", web::get().to(pages::repositories))
            .route("/repo", web::get().to(pages::repository))
            .route("/manifest", web::get().to(pages::manifest))
            .route("/ops", web::get().to(ops::page))
            .route("/static/ui.css", web::get().to(css))
            .route("/static/ui.js", web::get().to(js))
            .route("/login", web::get().to(login::form))
            .route("/login", web::post().to(login::submit))
            .route("/logout", web::post().to(login::logout))
            .route("/delete-tag", web::get().to(actions::confirm_tag))
            .route("/delete-tag", web::post().to(actions::delete_tag))
            .route("/delete-manifest", web::get().to(actions::confirm_manifest))
            .route("/delete-manifest", web::post().to(actions::delete_manifest))
            .route("/gc", web::get().to(actions::confirm_gc))
            .route("/gc", web::post().to(actions::run_gc)),
    );
}
