//! The token endpoint of the Docker token flow: `GET /auth/token?service=&scope=&scope=`.
//! Basic credentials (or none, when anonymous pull is on) are checked and a short-lived JWT is
//! returned granting the intersection of the requested scopes and the access rules.

use std::sync::Arc;

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde_json::json;

use super::rules::Access;
use super::{Auth, BasicFailure, Credentials, SharedAuth};
use crate::error::{Code, Error};
use crate::ops::access_log::User;

/// Registers `GET /auth/token` and its OAuth2 form, `POST /auth/token` (`super::oauth`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/token", web::get().to(token))
        .route("/auth/token", web::post().to(super::oauth::token));
}

fn bad_request(msg: String) -> Error {
    Error::new(Code::Unsupported, msg).with_status(actix_web::http::StatusCode::BAD_REQUEST)
}

/// Issues a token.
async fn token(req: HttpRequest, auth: web::Data<SharedAuth>) -> Result<HttpResponse, Error> {
    let auth: Arc<Auth> = auth.current();
    let Some(tokens) = auth.tokens() else {
        return Err(
            Error::new(Code::Unsupported, "bearer tokens are not configured")
                .with_status(actix_web::http::StatusCode::NOT_FOUND),
        );
    };
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| bad_request(format!("bad query: {e}")))?
        .into_inner();
    if let Some((_, s)) = query.iter().find(|(k, _)| k == "service")
        && *s != tokens.service
    {
        return Err(bad_request(format!("unknown service {s:?}")));
    }
    let mut requested = Vec::new();
    for (_, v) in query.iter().filter(|(k, _)| k == "scope") {
        for s in v.split_whitespace() {
            requested.push(
                Access::parse_scope(s).ok_or_else(|| bad_request(format!("bad scope {s:?}")))?,
            );
        }
    }
    let basic_challenge = || "Basic realm=\"kura\"".to_string();
    let user = match Credentials::from_headers(req.headers()) {
        Credentials::None if auth.rules().anonymous_pull() => None,
        Credentials::None => {
            return Err(super::unauthorized(
                basic_challenge(),
                "credentials required",
            ));
        }
        Credentials::Basic { user, password } => {
            let ip = crate::ops::client_ip::of(&req);
            match auth.verify_basic(ip, user, password).await {
                Ok(u) => Some(u),
                Err(BasicFailure::Locked(retry)) => return Err(super::locked_out(retry)),
                Err(BasicFailure::Bad) => {
                    return Err(super::unauthorized(
                        basic_challenge(),
                        "invalid username or password",
                    ));
                }
            }
        }
        Credentials::Bearer(_) | Credentials::Malformed => {
            return Err(super::unauthorized(
                basic_challenge(),
                "the token endpoint takes Basic credentials",
            ));
        }
    };
    if let Some(u) = &user {
        req.extensions_mut().insert(User(u.clone()));
        crate::api::rate_limit::admit_user(&req, crate::policy::rate_limit::Class::Token, u)
            .map_err(|r| crate::api::rate_limit::too_many(&r))?;
    }
    let access = auth.grant(user.as_deref(), &requested);
    let issued = tokens
        .issue(user.as_deref().unwrap_or(""), &access)
        .map_err(|e| Error::internal("token", e))?;
    // `offline_token=true`: a refresh token too (Docker's token spec), for a user.
    let offline = query
        .iter()
        .any(|(k, v)| k == "offline_token" && v == "true");
    let refresh_token = match (&user, offline) {
        (Some(u), true) => {
            let client = query
                .iter()
                .find(|(k, _)| k == "client_id")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            Some(super::refresh::issue(&auth, u, client).map_err(|e| Error::internal("token", e))?)
        }
        _ => None,
    };
    tracing::debug!(user = user.as_deref().unwrap_or("-"), scopes = ?access.iter().map(Access::scope).collect::<Vec<_>>(), "token issued");
    let mut answer = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": humantime::format_rfc3339_seconds(issued.issued_at).to_string(),
    });
    if let Some(r) = refresh_token {
        answer["refresh_token"] = json!(r);
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(answer))
}
