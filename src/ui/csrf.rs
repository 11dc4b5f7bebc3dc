//! CSRF protection of the web interface's actions: every `POST` form carries the session's
//! random token (`session::Session::csrf`) in a hidden field, compared in constant time. A
//! request without a session, without the field or with another value is refused with 403
//! before anything is done. The cookie's `SameSite=Strict` is a second line, not the first.

use subtle::ConstantTimeEq;

use super::access::Viewer;

/// Why a token was refused.
pub const REFUSED: &str = "the form's security token is missing or does not match your session; \
    reload the page and try again";

/// True when `submitted` is the viewer's session token.
pub fn valid(viewer: &Viewer, submitted: Option<&str>) -> bool {
    match (viewer.csrf.as_deref(), submitted) {
        (Some(expected), Some(got)) if !got.is_empty() => {
            expected.len() == got.len() && bool::from(expected.as_bytes().ct_eq(got.as_bytes()))
        }
        _ => false,
    }
}
