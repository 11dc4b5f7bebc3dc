//! The authentication middleware: maps a request to what it needs (`Need`), authenticates
//! the caller (Basic or Bearer), decides, and either passes the request on with the user in
//! its extensions or answers 401 (with the challenge), 403 `DENIED` or 429.
//!
//! `/v2/<name>/...`: `pull` for GET/HEAD, `push` for POST/PUT/PATCH and for every upload
//! session request, `delete` for DELETE of manifests and blobs; `/v2/` needs any login;
//! `/v2/_catalog` is filtered to what the caller may pull; `/admin/*` needs the admin right.
//! Everything else (`/healthz`, `/readyz`, `/metrics`, `/auth/token`) is open.
//! A mount (`POST ...?mount=&from=`) without pull on `from` becomes a plain upload.
//! Everything here reads the request's one parse (`api::request::Parsed`), which the handlers
//! read too; the plain-upload fallback changes that parse, not the URI.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use super::rules::Actions;
use super::{
    Auth, BasicFailure, CatalogFilter, Credentials, Decision, Need, Principal, SharedAuth,
};
use crate::api::request::Parsed;
use crate::api::routes::Route;
use crate::error::{Code, Error};
use crate::ops::access_log::User;

/// What a request to `path` with `method` needs; `None` for open paths.
pub fn need(method: &Method, path: &str) -> Option<Need> {
    if path == "/admin" || path.starts_with("/admin/") {
        return Some(Need::Admin);
    }
    if path != "/v2" && !path.starts_with("/v2/") {
        return None;
    }
    let by_method = if matches!(*method, Method::GET | Method::HEAD) {
        Actions::PULL
    } else if *method == Method::DELETE {
        Actions::DELETE
    } else {
        Actions::PUSH
    };
    // The router's own parse, so what is authorized is what gets routed.
    let (name, action) = match Route::parse(path) {
        None | Some(Route::Base) => return Some(Need::Login),
        Some(Route::Catalog) => return Some(Need::Catalog),
        Some(Route::UploadStart { name } | Route::Upload { name, .. }) => (name, Actions::PUSH),
        Some(
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::Referrers { name, .. },
        ) => (name, by_method),
    };
    Some(Need::Repo {
        name: name.to_string(),
        action,
    })
}

async fn authenticate(auth: &Arc<Auth>, req: &ServiceRequest) -> Result<Principal, Error> {
    let conn = req.connection_info().clone();
    let bad = |msg: &str, error: Option<&str>| {
        Err(super::unauthorized(auth.challenge(&conn, &[], error), msg))
    };
    match Credentials::from_headers(req.headers()) {
        Credentials::None => Ok(Principal::Anonymous),
        Credentials::Malformed => bad("malformed Authorization header", None),
        Credentials::Basic { user, password } => {
            let ip = crate::ops::client_ip::of(req.request());
            match auth.verify_basic(ip, user, password).await {
                Ok(u) => Ok(Principal::User(u)),
                Err(BasicFailure::Locked(retry)) => Err(super::locked_out(retry)),
                Err(BasicFailure::Bad) => bad("invalid username or password", None),
            }
        }
        Credentials::Bearer(token) => {
            let Some(t) = auth.tokens() else {
                return bad("bearer tokens are not accepted here", None);
            };
            match t.verify(&token) {
                Ok(v) => Ok(Principal::Token(v)),
                Err(e) => bad(&e.to_string(), Some("invalid_token")),
            }
        }
    }
}

/// Authenticates and authorizes every request when the app has `web::Data<SharedAuth>` (with
/// the `Auth` in force when the request starts); passes everything through otherwise.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(auth) = req.app_data::<web::Data<SharedAuth>>().map(|d| d.current()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let refuse = |req: ServiceRequest, err: Error| {
        let (r, _) = req.into_parts();
        Ok(ServiceResponse::new(r, err.error_response()).map_into_right_body())
    };
    // The one parse the handler will act on too.
    let parsed = Parsed::of(req.request());
    let Some(need) = need(req.method(), parsed.path()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let who = match authenticate(&auth, &req).await {
        Ok(p) => p,
        Err(e) => return refuse(req, e),
    };
    if let Some(name) = who.name() {
        req.extensions_mut().insert(User(name.to_string()));
    }
    let mut scopes = need.scopes();
    let from = match parsed.mount_from(req.method()) {
        Ok(from) => from,
        Err(e) => return refuse(req, e),
    };
    if let Some(from) = from {
        if auth.may_pull(&who, from) {
            scopes.push(super::rules::Access::repository(from, Actions::PULL));
        } else {
            tracing::debug!(%from, "mount source not readable by the caller: plain upload instead");
            Parsed::without_mount(req.request());
        }
    }
    match auth.authorize(&who, &need) {
        Decision::Allow => {
            if need == Need::Catalog {
                req.extensions_mut()
                    .insert(CatalogFilter::new(auth.clone(), &who));
            }
            Ok(next.call(req).await?.map_into_left_body())
        }
        Decision::Challenge { error } => {
            let conn = req.connection_info().clone();
            let msg = if matches!(who, Principal::Anonymous) {
                "authentication required"
            } else {
                "the token does not grant this access"
            };
            let err = super::unauthorized(auth.challenge(&conn, &scopes, error), msg);
            refuse(req, err)
        }
        Decision::Deny => {
            let err = Error::new(Code::Denied, "requested access to the resource is denied");
            refuse(req, err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, action: Actions) -> Option<Need> {
        Some(Need::Repo {
            name: name.into(),
            action,
        })
    }

    #[test]
    fn paths_map_to_the_repository_and_action_they_need() {
        let get = Method::GET;
        assert_eq!(need(&get, "/healthz"), None);
        assert_eq!(need(&get, "/auth/token"), None);
        // The web interface decides access itself, with `Auth::authorize` (src/ui/access.rs).
        assert_eq!(need(&get, "/ui/"), None);
        assert_eq!(need(&Method::POST, "/ui/delete-tag"), None);
        assert_eq!(need(&get, "/v2/"), Some(Need::Login));
        assert_eq!(need(&get, "/v2"), Some(Need::Login));
        assert_eq!(need(&get, "/v2/_catalog"), Some(Need::Catalog));
        assert_eq!(need(&Method::POST, "/admin/gc"), Some(Need::Admin));
        assert_eq!(
            need(&get, "/v2/team/app/manifests/v1"),
            repo("team/app", Actions::PULL)
        );
        assert_eq!(
            need(&Method::HEAD, "/v2/a/blobs/sha256:00"),
            repo("a", Actions::PULL)
        );
        assert_eq!(
            need(&Method::PUT, "/v2/a/b/manifests/v1"),
            repo("a/b", Actions::PUSH)
        );
        assert_eq!(
            need(&Method::DELETE, "/v2/a/manifests/sha256:00"),
            repo("a", Actions::DELETE)
        );
        assert_eq!(
            need(&Method::POST, "/v2/a/blobs/uploads/"),
            repo("a", Actions::PUSH)
        );
        assert_eq!(
            need(&Method::POST, "/v2/a/blobs/uploads"),
            repo("a", Actions::PUSH)
        );
        // Upload sessions: status (GET) and cancel (DELETE) are push too.
        assert_eq!(
            need(&Method::GET, "/v2/a/blobs/uploads/0f2c"),
            repo("a", Actions::PUSH)
        );
        assert_eq!(
            need(&Method::DELETE, "/v2/a/blobs/uploads/0f2c"),
            repo("a", Actions::PUSH)
        );
        assert_eq!(
            need(&get, "/v2/a/blobs/b/tags/list"),
            repo("a/blobs/b", Actions::PULL)
        );
        assert_eq!(
            need(&get, "/v2/a/referrers/sha256:00"),
            repo("a", Actions::PULL)
        );
        // The name as routed, as the handler sees it: `%2F` is not a separator to either.
        assert_eq!(
            need(&get, "/v2/team%2Fapp/tags/list"),
            repo("team%2Fapp", Actions::PULL)
        );
        assert_eq!(need(&get, "/v2/unknown"), Some(Need::Login));
        assert_eq!(need(&get, "/v2x"), None);
    }
}
