//! Signing in and out. The form posts the user and password (never in the URL) with the
//! CSRF token of the visitor's anonymous session; the password is checked by the same
//! htpasswd verification and failed-login limiter as Basic auth on the API
//! (`Auth::verify_basic`). A successful sign-in starts a new session (the old id is dropped, so
//! an id planted before sign-in is worthless) and sets its cookie.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::access::Viewer;
use super::actions::{ensure_session, with_cookie};
use super::views::{self, LoginPage, Nav};
use super::{UiState, csrf, session};
use crate::auth::BasicFailure;

fn login_page(v: &Viewer, status: StatusCode, error: Option<String>) -> HttpResponse {
    views::html(
        status,
        &LoginPage {
            nav: Nav::of(v),
            error,
        },
    )
}

/// `GET /ui/login`.
pub async fn form(req: HttpRequest, state: web::Data<UiState>) -> HttpResponse {
    let mut v = Viewer::of(&req, &state);
    if !v.auth_on() {
        return views::message(
            StatusCode::OK,
            &v,
            "No sign-in needed",
            "Authentication is off on this registry: everyone may browse and act.",
        );
    }
    if v.user().is_some() {
        return views::redirect("/ui/");
    }
    let cookie = ensure_session(&mut v, &state);
    let mut res = login_page(&v, StatusCode::OK, None);
    with_cookie(&mut res, cookie);
    res
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: Option<String>,
    user: String,
    password: String,
}

/// `POST /ui/login`.
pub async fn submit(
    req: HttpRequest,
    state: web::Data<UiState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    let Some(auth) = v.auth().cloned() else {
        return views::redirect("/ui/");
    };
    if !csrf::valid(&v, form.csrf.as_deref()) {
        return views::message(StatusCode::FORBIDDEN, &v, "Refused", csrf::REFUSED);
    }
    let LoginForm { user, password, .. } = form.into_inner();
    let ip = crate::ops::client_ip::of(&req);
    match auth.verify_basic(ip, user, password).await {
        Ok(user) => {
            if let Some(old) = &v.session {
                state.sessions.remove(old);
            }
            let (id, _) = state.sessions.create(Some(user));
            let mut res = views::redirect("/ui/");
            with_cookie(&mut res, Some(session::set_cookie(&id, state.secure)));
            res
        }
        Err(BasicFailure::Locked(retry)) => login_page(
            &v,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed sign-ins from this address; try again in {} s.",
                retry.as_secs() + 1
            )),
        ),
        Err(BasicFailure::Bad) => login_page(
            &v,
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password.".into()),
        ),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /ui/logout`.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<UiState>,
    form: web::Form<LogoutForm>,
) -> HttpResponse {
    let v = Viewer::of(&req, &state);
    if !csrf::valid(&v, form.csrf.as_deref()) {
        return views::message(StatusCode::FORBIDDEN, &v, "Refused", csrf::REFUSED);
    }
    if let Some(id) = &v.session {
        state.sessions.remove(id);
    }
    let mut res = views::redirect(if v.auth_on() { "/ui/login" } else { "/ui/" });
    with_cookie(&mut res, Some(session::clear_cookie(state.secure)));
    res
}
