//! Sign-in sessions of the web interface, held in memory.
//!
//! A session id is 256 random bits (aws-lc-rs's generator), sent only in the `kura_ui` cookie
//! (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, `Secure` under TLS); the server keeps the
//! session (user, CSRF token, expiry) in a map, so nothing a client holds names a user or can
//! be forged without guessing an id. Sessions end after `TTL`, at logout, or when the process
//! restarts. Visitors without a login get a session too (no user) when a page shows a form,
//! so every action carries a CSRF token. At most `MAX` sessions are kept; beyond it, expired
//! ones are dropped first, then the oldest of
//! the visitors who never signed in, then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

/// The cookie's name.
pub const COOKIE: &str = "kura_ui";
/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most.
pub const MAX: usize = 10_000;

/// What a session holds.
#[derive(Debug, Clone)]
pub struct Session {
    /// The signed-in user; `None` for a visitor who has not signed in.
    pub user: Option<String>,
    /// The token every form of this session must send back.
    pub csrf: String,
    created: Instant,
}

/// The sessions of one server.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 256 random bits as hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).expect("system random generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// The live session `id`, if any.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.created.elapsed() < TTL => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Starts a session for `user`; returns its id and the session.
    pub fn create(&self, user: Option<String>) -> (String, Session) {
        let id = random_token();
        let s = Session {
            user,
            csrf: random_token(),
            created: Instant::now(),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX {
            map.retain(|_, s| s.created.elapsed() < TTL);
        }
        if map.len() >= MAX {
            // Visitors who never signed in go first, so a flood of them signs nobody out.
            let oldest = |anonymous_only: bool| {
                map.iter()
                    .filter(|(_, s)| !anonymous_only || s.user.is_none())
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone())
            };
            if let Some(k) = oldest(true).or_else(|| oldest(false)) {
                map.remove(&k);
            }
        }
        map.insert(id.clone(), s.clone());
        (id, s)
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in the request's `Cookie` header.
pub fn cookie_id(req: &HttpRequest) -> Option<String> {
    for h in req.headers().get_all(actix_web::http::header::COOKIE) {
        let Ok(v) = h.to_str() else { continue };
        for part in v.split(';') {
            if let Some((k, val)) = part.trim().split_once('=')
                && k == COOKIE
                && val.len() == 64
                && val.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Some(val.to_string());
            }
        }
    }
    None
}

/// The `Set-Cookie` value carrying session `id`.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        TTL.as_secs()
    )
}

/// The `Set-Cookie` value removing the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_have_distinct_random_ids_and_end_at_logout() {
        let s = Sessions::default();
        let (a, sa) = s.create(Some("alice".into()));
        let (b, sb) = s.create(None);
        assert_ne!(a, b);
        assert_ne!(sa.csrf, sb.csrf);
        assert_eq!(a.len(), 64);
        assert_eq!(s.get(&a).unwrap().user.as_deref(), Some("alice"));
        s.remove(&a);
        assert!(s.get(&a).is_none());
        assert!(s.get(&b).is_some());
    }

    #[test]
    fn a_flood_of_anonymous_sessions_signs_nobody_out() {
        let s = Sessions::default();
        let (user, _) = s.create(Some("alice".into()));
        for _ in 0..MAX + 10 {
            s.create(None);
        }
        assert_eq!(s.len(), MAX);
        assert!(s.get(&user).is_some());
    }

    #[test]
    fn session_cookie_is_httponly_strict_and_secure_under_tls() {
        let c = set_cookie("ab", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("ab", false).contains("Secure"));
    }
}
