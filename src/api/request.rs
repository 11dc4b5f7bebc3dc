//! The one parse of a request that authorization and the handlers both act on.
//!
//! `Parsed::of` reads the routed path and decodes the query once, and keeps the result in the
//! request's extensions: the auth middleware, the `/v2/` dispatcher and every handler get the
//! same value. When the middleware turns a mount into a plain upload it changes that value
//! (`Parsed::without_mount`), never the URI, so there is no second reading that could differ.
//!
//! Query rules, the same for everyone: keys and values are percent-decoded (`+` is a space, as
//! in HTML forms and Go's `url.ParseQuery`), so `m%6Funt` *is* `mount`; a key given twice (after
//! decoding) is refused with 400; a key without `=` has the empty value; empty pairs (`&&`)
//! are skipped. An empty value is a value: `?digest=` is an invalid digest, not a missing one.

use std::rc::Rc;

use actix_web::HttpMessage;
use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use percent_encoding::percent_decode_str;

use super::routes::Route;
use crate::error::{Code, Error, Result};

/// The decoded query parameters of a request, each key at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Decodes one query component: `+` is a space, `%XX` a byte; invalid UTF-8 is replaced.
fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// A query key given more than once (after decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey(pub String);

impl From<&DuplicateKey> for Error {
    fn from(d: &DuplicateKey) -> Error {
        Error::new(
            code_for(&d.0),
            format!("query parameter {:?} is given more than once", d.0),
        )
        .with_status(StatusCode::BAD_REQUEST)
    }
}

/// The error code a malformed value of `key` is reported with.
fn code_for(key: &str) -> Code {
    match key {
        "digest" | "mount" => Code::DigestInvalid,
        "from" => Code::NameInvalid,
        _ => Code::Unsupported,
    }
}

impl Query {
    /// Decodes a raw query string; a key that occurs twice is a 400.
    pub fn parse(raw: &str) -> std::result::Result<Query, DuplicateKey> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (k, v) = (decode_component(k), decode_component(v));
            if pairs.iter().any(|(have, _)| *have == k) {
                return Err(DuplicateKey(k));
            }
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    /// The decoded value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn remove(&mut self, key: &str) {
        self.pairs.retain(|(k, _)| k != key);
    }
}

/// A request as kura understands it: the routed path and the decoded query.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The path as the router sees it (actix decodes escapes other than `%2F`, `%25`, `+`).
    path: String,
    query: std::result::Result<Query, DuplicateKey>,
}

impl Parsed {
    /// The request's parse, made on first use and kept in its extensions.
    pub fn of(req: &HttpRequest) -> Rc<Parsed> {
        if let Some(p) = req.extensions().get::<Rc<Parsed>>() {
            return p.clone();
        }
        let query = Query::parse(req.query_string());
        let path = req.match_info().as_str();
        let path = match &query {
            Ok(q) => ns_path(req, path, q).unwrap_or_else(|| path.to_string()),
            Err(_) => path.to_string(),
        };
        let p = Rc::new(Parsed { path, query });
        req.extensions_mut().insert(p.clone());
        p
    }

    /// The routed path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `/v2/` route the path addresses.
    pub fn route(&self) -> Option<Route<'_>> {
        Route::parse(&self.path)
    }

    /// The decoded query; 400 when a key is given twice.
    pub fn query(&self) -> Result<&Query> {
        self.query.as_ref().map_err(Error::from)
    }

    /// The source repository of a cross-repository mount (`POST .../uploads/?mount=&from=`).
    pub fn mount_from(&self, method: &actix_web::http::Method) -> Result<Option<&str>> {
        let start = matches!(self.route(), Some(Route::UploadStart { .. }));
        if *method != actix_web::http::Method::POST || !start {
            return Ok(None);
        }
        let q = self.query()?;
        Ok(q.get("mount").and(q.get("from")))
    }

    /// Makes the request a plain upload start: the handler sees no `mount` and no `from`.
    pub fn without_mount(req: &HttpRequest) {
        let mut p = Parsed::of(req).as_ref().clone();
        if let Ok(q) = &mut p.query {
            q.remove("mount");
            q.remove("from");
        }
        req.extensions_mut().insert(Rc::new(p));
    }
}

/// The path a containerd mirror request (`?ns=<registry>`) addresses: upstream name `name`
/// becomes the local repository of the mirror answering to `ns` (`<prefix><name>`). Rewritten
/// here, in the one parse, so authorization and the handler see the same repository.
fn ns_path(req: &HttpRequest, path: &str, q: &Query) -> Option<String> {
    let ns = q.get("ns")?;
    let mirrors = req.app_data::<actix_web::web::Data<crate::mirror::Mirrors>>()?;
    let name = Route::parse(path)?.name()?;
    let local = mirrors.ns_repository(ns, name)?;
    let rest = path.strip_prefix("/v2/")?.strip_prefix(name)?;
    Some(format!("/v2/{local}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_keys_and_values_decode_to_the_same_parameter() {
        let q = Query::parse("m%6Funt=sha256%3Aab&fr%6Fm=other%2Fsecret&a+b=c+d").unwrap();
        assert_eq!(q.get("mount"), Some("sha256:ab"));
        assert_eq!(q.get("from"), Some("other/secret"));
        assert_eq!(q.get("a b"), Some("c d"));
        assert_eq!(q.get("m%6Funt"), None);
    }

    #[test]
    fn a_key_given_twice_is_refused_whatever_its_spelling() {
        for raw in [
            "from=a&from=b",
            "mount=x&m%6Funt=y",
            "digest=sha256:a&digest=sha256:a",
            "n=1&n=2",
        ] {
            let err = Error::from(&Query::parse(raw).unwrap_err());
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{raw}");
        }
        assert_eq!(
            Error::from(&Query::parse("from=a&from=b").unwrap_err()).code,
            Code::NameInvalid
        );
        assert_eq!(
            Error::from(&Query::parse("mount=a&mount=b").unwrap_err()).code,
            Code::DigestInvalid
        );
        assert_eq!(
            Error::from(&Query::parse("digest=a&digest=b").unwrap_err()).code,
            Code::DigestInvalid
        );
    }

    #[test]
    fn empty_values_are_values_and_empty_pairs_are_skipped() {
        let q = Query::parse("&mount&from=&&n=3&").unwrap();
        assert_eq!(q.get("mount"), Some(""));
        assert_eq!(q.get("from"), Some(""));
        assert_eq!(q.get("n"), Some("3"));
        assert_eq!(Query::parse("").unwrap(), Query::default());
    }

    #[test]
    fn bad_escapes_are_kept_and_invalid_utf8_is_replaced() {
        let q = Query::parse("a=%2&b=%zz&c=%FF").unwrap();
        assert_eq!(q.get("a"), Some("%2"));
        assert_eq!(q.get("b"), Some("%zz"));
        assert_eq!(q.get("c"), Some("\u{FFFD}"));
    }
}
