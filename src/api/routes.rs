//! The `/v2/` router. Repository names contain slashes, so a route is found from the path's
//! end (`.../manifests/<reference>`, `.../blobs/<digest>`, ...) by plain string matching; the
//! regular expressions a `{name:.+}` route pattern needs cost a seventh of a manifest GET.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::{Code, Error, Result};
use crate::registry::Registry;

/// What a path under `/v2` addresses; names and references are as written in the path.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: &'a str },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: &'a str, reference: &'a str },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: &'a str },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: &'a str, id: &'a str },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: &'a str, digest: &'a str },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: &'a str, digest: &'a str },
}

impl<'a> Route<'a> {
    /// Parses a request path; `None` when it addresses nothing.
    pub fn parse(path: &'a str) -> Option<Route<'a>> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Route::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Route::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return named(name).map(|name| Route::Tags { name });
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return named(name).map(|name| Route::UploadStart { name });
        }
        let (head, last) = rest.rsplit_once('/')?;
        if last.is_empty() {
            return None;
        }
        if let Some(name) = head.strip_suffix("/manifests") {
            return named(name).map(|name| Route::Manifest {
                name,
                reference: last,
            });
        }
        if let Some(name) = head.strip_suffix("/blobs/uploads") {
            return named(name).map(|name| Route::Upload { name, id: last });
        }
        if let Some(name) = head.strip_suffix("/blobs") {
            return named(name).map(|name| Route::Blob { name, digest: last });
        }
        if let Some(name) = head.strip_suffix("/referrers") {
            return named(name).map(|name| Route::Referrers { name, digest: last });
        }
        None
    }

    /// The repository named in the path, if the route has one.
    pub fn name(&self) -> Option<&'a str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Blob { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    /// The route as a metrics and log label, e.g. `/v2/<name>/blobs/<digest>`.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "/v2/",
            Route::Catalog => "/v2/_catalog",
            Route::Tags { .. } => "/v2/<name>/tags/list",
            Route::Manifest { .. } => "/v2/<name>/manifests/<reference>",
            Route::UploadStart { .. } => "/v2/<name>/blobs/uploads/",
            Route::Upload { .. } => "/v2/<name>/blobs/uploads/<id>",
            Route::Blob { .. } => "/v2/<name>/blobs/<digest>",
            Route::Referrers { .. } => "/v2/<name>/referrers/<digest>",
        }
    }
}

fn named(name: &str) -> Option<&str> {
    (!name.is_empty()).then_some(name)
}

fn pair(a: &str, b: &str) -> web::Path<(String, String)> {
    web::Path::from((a.to_string(), b.to_string()))
}

/// Sends a `/v2/...` request to its handler.
pub async fn dispatch(
    req: HttpRequest,
    reg: web::Data<Registry>,
    body: web::Payload,
) -> Result<HttpResponse> {
    // The parse the auth middleware acted on (made here when there is none).
    let parsed = super::request::Parsed::of(&req);
    let Some(route) = parsed.route() else {
        return Err(Error::new(
            Code::NameUnknown,
            format!("no route for {}", req.path()),
        ));
    };
    let m = req.method().clone();
    if let (Some(name), Some(mirrors)) = (
        route.name(),
        req.app_data::<web::Data<crate::mirror::Mirrors>>(),
    ) && matches!(
        m,
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) {
        mirrors.refuse_write(name)?;
    }
    use super::{base, blobs, catalog, manifests, referrers, tags, uploads};
    match route {
        Route::Base if m == Method::GET || m == Method::HEAD => Ok(base::get().await),
        Route::Catalog if m == Method::GET => catalog::get(req, reg).await,
        Route::Tags { name } if m == Method::GET => {
            tags::list(req, web::Path::from(name.to_string()), reg).await
        }
        Route::Manifest { name, reference } => {
            let p = pair(name, reference);
            match m {
                Method::GET => manifests::get(req, p, reg).await,
                Method::HEAD => manifests::head(req, p, reg).await,
                Method::PUT => manifests::put(req, p, reg, body).await,
                Method::DELETE => manifests::delete(req, p, reg).await,
                _ => unsupported(),
            }
        }
        Route::UploadStart { name } if m == Method::POST => {
            uploads::start(req, web::Path::from(name.to_string()), reg, body).await
        }
        Route::Upload { name, id } => {
            let p = pair(name, id);
            match m {
                Method::GET => uploads::status(req, p, reg).await,
                Method::PATCH => uploads::patch(req, p, reg, body).await,
                Method::PUT => uploads::put(req, p, reg, body).await,
                Method::DELETE => uploads::cancel(p, reg).await,
                _ => unsupported(),
            }
        }
        Route::Blob { name, digest } => {
            let p = pair(name, digest);
            match m {
                Method::GET => blobs::get(req, p, reg).await,
                Method::HEAD => blobs::head(req, p, reg).await,
                Method::DELETE => blobs::delete(req, p, reg).await,
                _ => unsupported(),
            }
        }
        Route::Referrers { name, digest } if m == Method::GET => {
            referrers::get(req, pair(name, digest), reg).await
        }
        _ => unsupported(),
    }
}

fn unsupported() -> Result<HttpResponse> {
    Err(Error::new(
        Code::Unsupported,
        "method not allowed on this endpoint",
    ))
}

#[cfg(test)]
mod tests {
    use super::Route::{self, *};

    #[test]
    fn routes_are_found_from_the_end_of_the_path() {
        let cases = [
            ("/v2", Some(Base)),
            ("/v2/", Some(Base)),
            ("/v2/_catalog", Some(Catalog)),
            ("/v2/a/b/tags/list", Some(Tags { name: "a/b" })),
            (
                "/v2/a/manifests/b/manifests/latest",
                Some(Manifest {
                    name: "a/manifests/b",
                    reference: "latest",
                }),
            ),
            ("/v2/a/blobs/uploads/", Some(UploadStart { name: "a" })),
            ("/v2/a/blobs/uploads", Some(UploadStart { name: "a" })),
            (
                "/v2/a/blobs/uploads/x1",
                Some(Upload {
                    name: "a",
                    id: "x1",
                }),
            ),
            (
                "/v2/a/blobs/sha256:00",
                Some(Blob {
                    name: "a",
                    digest: "sha256:00",
                }),
            ),
            (
                "/v2/a/referrers/sha256:00",
                Some(Referrers {
                    name: "a",
                    digest: "sha256:00",
                }),
            ),
            ("/v2/manifests/x", None),
            ("/v2/a/manifests/", None),
            ("/v2/a/unknown/x", None),
            ("/v3/a/manifests/x", None),
            ("/v2x", None),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path), want, "{path}");
        }
    }
}
