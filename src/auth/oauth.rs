//! The OAuth2 form of the token endpoint, `POST /auth/token` with an
//! `application/x-www-form-urlencoded` body, as Docker's clients send it (Docker's token spec,
//! "oauth.md"; RFC 6749 §4.3 and §6):
//!
//! - `grant_type=password` with `username`, `password`, `service`, `client_id`, `scope`, and
//!   `access_type=offline` to get a refresh token too;
//! - `grant_type=refresh_token` with `refresh_token`, `service`, `client_id`, `scope`.
//!
//! The answer is `{access_token, token, expires_in, issued_at, scope[, refresh_token]}`; a
//! refusal is `400` with an OAuth2 error (`{"error": "invalid_grant", "error_description":
//! ...}`), `429` for a locked-out client.

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde_json::json;

use super::rules::Access;
use super::{BasicFailure, SharedAuth, refresh};
use crate::ops::access_log::User;

/// An OAuth2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"error": error, "error_description": description.into()}))
}

fn invalid(error: &str, description: impl Into<String>) -> HttpResponse {
    oauth_error(StatusCode::BAD_REQUEST, error, description)
}

/// `POST /auth/token`.
pub async fn token(
    req: HttpRequest,
    body: web::Bytes,
    auth: web::Data<SharedAuth>,
) -> HttpResponse {
    let auth = auth.current();
    let Some(tokens) = auth.tokens() else {
        return oauth_error(
            StatusCode::NOT_FOUND,
            "unsupported_grant_type",
            "bearer tokens are not configured",
        );
    };
    let form_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return invalid(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return invalid("invalid_request", "the body is not UTF-8");
    };
    let form = match web::Query::<Vec<(String, String)>>::from_query(text) {
        Ok(f) => f.into_inner(),
        Err(e) => return invalid("invalid_request", format!("bad form: {e}")),
    };
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    match field("service") {
        Some(s) if s == tokens.service => {}
        Some(s) => return invalid("invalid_request", format!("unknown service {s:?}")),
        None => return invalid("invalid_request", "service is required"),
    }
    let Some(client_id) = field("client_id").filter(|c| !c.is_empty()) else {
        return invalid("invalid_request", "client_id is required");
    };
    let mut requested = Vec::new();
    for s in form
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace())
    {
        match Access::parse_scope(s) {
            Some(a) => requested.push(a),
            None => return invalid("invalid_scope", format!("bad scope {s:?}")),
        }
    }
    let (user, refresh_token) = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return invalid("invalid_request", "username and password are required");
            };
            let ip = crate::ops::client_ip::of(&req);
            let user = match auth
                .verify_basic(ip, user.to_string(), password.to_string())
                .await
            {
                Ok(u) => u,
                Err(BasicFailure::Locked(retry)) => {
                    let mut r = oauth_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "invalid_grant",
                        "too many failed logins from this address; try again later",
                    );
                    if let Ok(v) = (retry.as_secs() + 1).to_string().parse() {
                        r.headers_mut()
                            .insert(actix_web::http::header::RETRY_AFTER, v);
                    }
                    return r;
                }
                Err(BasicFailure::Bad) => {
                    return invalid("invalid_grant", "invalid username or password");
                }
            };
            let refresh = if field("access_type") == Some("offline") {
                match refresh::issue(&auth, &user, client_id) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e);
                    }
                }
            } else {
                None
            };
            (user, refresh)
        }
        Some("refresh_token") => {
            let Some(t) = field("refresh_token") else {
                return invalid("invalid_request", "refresh_token is required");
            };
            match refresh::verify(&auth, t, client_id) {
                Ok(user) => (user, None),
                Err(why) => {
                    tracing::warn!(why, "refresh token refused");
                    return invalid("invalid_grant", why);
                }
            }
        }
        Some(other) => {
            return invalid(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not password or refresh_token"),
            );
        }
        None => return invalid("invalid_request", "grant_type is required"),
    };
    req.extensions_mut().insert(User(user.clone()));
    if let Err(r) =
        crate::api::rate_limit::admit_user(&req, crate::policy::rate_limit::Class::Token, &user)
    {
        return actix_web::ResponseError::error_response(&crate::api::rate_limit::too_many(&r));
    }
    let access = auth.grant(Some(&user), &requested);
    let issued = match tokens.issue(&user, &access) {
        Ok(i) => i,
        Err(e) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e),
    };
    let scope: Vec<String> = access.iter().map(Access::scope).collect();
    let mut answer = json!({
        "access_token": issued.token,
        "token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": humantime::format_rfc3339_seconds(issued.issued_at).to_string(),
        "scope": scope.join(" "),
    });
    if let Some(r) = refresh_token {
        answer["refresh_token"] = json!(r);
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(answer)
}
