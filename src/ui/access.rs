//! Who is looking, and what they may do: the session's user as a `Principal`, decided by
//! the same `Auth::authorize` the API's middleware uses (no rule is evaluated here).

use std::sync::Arc;

use actix_web::{HttpRequest, web};

use super::UiState;
use super::session;
use crate::auth::rules::Actions;
use crate::auth::{Auth, CatalogFilter, Decision, Need, Principal};

/// The visitor of one request.
#[derive(Clone)]
pub struct Viewer {
    pub who: Principal,
    /// The session id and CSRF token, when the visitor has a session.
    pub session: Option<String>,
    pub csrf: Option<String>,
    auth: Option<Arc<Auth>>,
}

impl Viewer {
    /// The viewer of `req`: its session's user (anonymous without one).
    pub fn of(req: &HttpRequest, state: &UiState) -> Viewer {
        let auth = req
            .app_data::<web::Data<crate::auth::SharedAuth>>()
            .map(|a| a.current());
        let found = session::cookie_id(req).and_then(|id| state.sessions.get(&id).map(|s| (id, s)));
        let (session, csrf, user) = match found {
            Some((id, s)) => (Some(id), Some(s.csrf), s.user),
            None => (None, None, None),
        };
        let who = match user {
            // A session's user counts only while authentication is on.
            Some(u) if auth.is_some() => Principal::User(u),
            _ => Principal::Anonymous,
        };
        if let Principal::User(u) = &who {
            // For the access log and the webhook events of the user's actions, as on the API.
            use actix_web::HttpMessage;
            req.extensions_mut()
                .insert(crate::ops::access_log::User(u.clone()));
        }
        Viewer {
            who,
            session,
            csrf,
            auth,
        }
    }

    /// Whether the server asks for logins.
    pub fn auth_on(&self) -> bool {
        self.auth.is_some()
    }

    /// The signed-in user's name.
    pub fn user(&self) -> Option<&str> {
        self.who.name()
    }

    fn allowed(&self, need: &Need) -> bool {
        match &self.auth {
            None => true,
            Some(a) => a.authorize(&self.who, need) == Decision::Allow,
        }
    }

    /// Whether the API would let this visitor do `action` on `repo`.
    pub fn may(&self, repo: &str, action: Actions) -> bool {
        self.allowed(&Need::Repo {
            name: repo.to_string(),
            action,
        })
    }

    /// Whether the API would let this visitor use `/admin/` (GC).
    pub fn is_admin(&self) -> bool {
        self.allowed(&Need::Admin)
    }

    /// Whether the visitor may list repositories at all (`_catalog`).
    pub fn may_list(&self) -> bool {
        self.allowed(&Need::Catalog)
    }

    /// The catalog filter of this visitor (`None`: authentication is off, everything shows).
    pub fn catalog(&self) -> Option<CatalogFilter> {
        self.auth
            .as_ref()
            .map(|a| CatalogFilter::new(a.clone(), &self.who))
    }

    /// The authentication state, for signing in.
    pub fn auth(&self) -> Option<&Arc<Auth>> {
        self.auth.as_ref()
    }
}
