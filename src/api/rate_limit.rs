//! Rate limits in front of the handlers (`crate::policy::rate_limit`). Two middlewares: `per_ip`
//! runs before authentication (so unauthenticated floods are limited too), `per_user` after it
//! (it needs the user). The token endpoint authenticates by itself and calls `admit_user`.
//! A refusal is 429 `TOOMANYREQUESTS` with `Retry-After`.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, ResponseError, web};

use super::routes::Route;
use crate::error::{Code, Error};
use crate::ops::access_log::User;
use crate::policy::rate_limit::{Class, Key, KeyKind, RateLimiter, Refusal};

/// The class of a request: manifest and blob `GET`/`HEAD` are pulls; upload sessions and
/// every other method on manifests and blobs are pushes; `/auth/token` is the token endpoint.
/// Everything else (`/v2/`, tags, referrers, the catalog, `/admin`, the UI) is not limited.
pub fn classify(method: &Method, path: &str) -> Option<Class> {
    if path == "/auth/token" {
        return Some(Class::Token);
    }
    let read = matches!(*method, Method::GET | Method::HEAD);
    match Route::parse(path)? {
        Route::Manifest { .. } | Route::Blob { .. } if read => Some(Class::Pull),
        Route::Manifest { .. }
        | Route::Blob { .. }
        | Route::UploadStart { .. }
        | Route::Upload { .. } => Some(Class::Push),
        _ => None,
    }
}

/// The 429 of `refusal`.
pub fn too_many(refusal: &Refusal) -> Error {
    Error::new(Code::TooManyRequests, refusal.to_string())
        .with_header("Retry-After", refusal.retry_after.to_string())
        .with_detail(serde_json::json!({
            "class": refusal.class.name(),
            "by": refusal.key.kind().name(),
            "retry_after": refusal.retry_after,
        }))
}

fn limiter(req: &HttpRequest) -> Option<&web::Data<RateLimiter>> {
    req.app_data::<web::Data<RateLimiter>>()
}

/// Takes a token of `class` from `user`'s bucket (for handlers that authenticate by
/// themselves: the token endpoint).
pub fn admit_user(req: &HttpRequest, class: Class, user: &str) -> Result<(), Refusal> {
    match limiter(req) {
        Some(l) => l.check(class, Key::User(user.to_string())),
        None => Ok(()),
    }
}

/// Passes `req` on unless `kind`'s limit of its class refuses it; the key is only worked out
/// when there is such a limit.
async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
    kind: KeyKind,
    key: impl FnOnce(&ServiceRequest) -> Option<Key>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The path the router and the authorization act on (escapes decoded, `?ns=` applied), so
    // every spelling of a request is classed alike.
    let path = crate::api::request::Parsed::of(req.request())
        .path()
        .to_string();
    let refusal = match (limiter(req.request()), classify(req.method(), &path)) {
        (Some(l), Some(class)) if l.limits().limit(class, kind).is_some() => {
            key(&req).and_then(|k| l.check(class, k).err())
        }
        _ => None,
    };
    match refusal {
        Some(r) => {
            tracing::debug!(refusal = %r, "rate limited");
            let (req, _) = req.into_parts();
            let res = too_many(&r).error_response();
            Ok(ServiceResponse::new(req, res).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// Applies the per-IP limits (the client IP of `ops::client_ip`).
pub async fn per_ip(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    admit(req, next, KeyKind::Ip, |r| {
        crate::ops::client_ip::of(r.request()).map(Key::Ip)
    })
    .await
}

/// Applies the per-user limits to authenticated requests.
pub async fn per_user(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    admit(req, next, KeyKind::User, |r| {
        r.extensions().get::<User>().map(|u| Key::User(u.0.clone()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classed_as_pull_push_or_token() {
        let c = |m: Method, p: &str| classify(&m, p);
        assert_eq!(c(Method::GET, "/v2/a/b/manifests/v1"), Some(Class::Pull));
        assert_eq!(c(Method::HEAD, "/v2/a/blobs/sha256:00"), Some(Class::Pull));
        assert_eq!(c(Method::PUT, "/v2/a/manifests/v1"), Some(Class::Push));
        assert_eq!(
            c(Method::DELETE, "/v2/a/manifests/sha256:00"),
            Some(Class::Push)
        );
        assert_eq!(
            c(Method::DELETE, "/v2/a/blobs/sha256:00"),
            Some(Class::Push)
        );
        assert_eq!(c(Method::POST, "/v2/a/blobs/uploads/"), Some(Class::Push));
        assert_eq!(
            c(Method::PATCH, "/v2/a/blobs/uploads/0f2c"),
            Some(Class::Push)
        );
        assert_eq!(
            c(Method::PUT, "/v2/a/blobs/uploads/0f2c"),
            Some(Class::Push)
        );
        assert_eq!(
            c(Method::GET, "/v2/a/blobs/uploads/0f2c"),
            Some(Class::Push)
        );
        assert_eq!(c(Method::GET, "/auth/token"), Some(Class::Token));
        assert_eq!(c(Method::POST, "/auth/token"), Some(Class::Token));
        for p in [
            "/v2/",
            "/v2/_catalog",
            "/v2/a/tags/list",
            "/v2/a/referrers/sha256:00",
        ] {
            assert_eq!(c(Method::GET, p), None, "{p}");
        }
        assert_eq!(c(Method::POST, "/admin/gc"), None);
        assert_eq!(c(Method::GET, "/ui/"), None);
    }
}
