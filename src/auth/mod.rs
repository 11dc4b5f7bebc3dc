//! Authentication, authorization and TLS.
//!
//! - `htpasswd`: users and bcrypt passwords; `limiter`: failed logins per client IP.
//! - `token`: JWTs of the Docker token flow (kura's own, and trusted external issuers').
//! - `rules`: access rules and scopes; `middleware`: request → required access → decision;
//!   `endpoint`: the token endpoint `GET /auth/token`; `tls`: rustls server configuration.
//!
//! With only an htpasswd file, clients authenticate with Basic on every request
//! (`WWW-Authenticate: Basic realm="kura"`). With `[auth.token]`, the challenge is a Bearer one
//! naming kura's token endpoint (or the configured realm) and the scope the request needs;
//! Basic credentials are still accepted on every request.

pub mod config;
pub mod endpoint;
pub mod htpasswd;
pub mod limiter;
pub mod middleware;
pub mod oauth;
pub mod refresh;
pub mod rules;
pub mod shared;
pub mod tls;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ConnectionInfo;
use actix_web::http::header::HeaderMap;
use actix_web::web;
use base64::Engine as _;

use crate::error::{Code, Error};
pub use config::{AuthConfig, TlsConfig};
use htpasswd::Htpasswd;
use limiter::LoginLimiter;
use rules::{Access, Actions, Rules, granted, grants_registry};
pub use shared::SharedAuth;
use token::{TokenService, Verified};

/// The authentication and authorization state of a server.
pub struct Auth {
    htpasswd: Option<Arc<Htpasswd>>,
    tokens: Option<Arc<TokenService>>,
    rules: Rules,
    limiter: Arc<LoginLimiter>,
    /// The configuration this was built from (a reload keeps what did not change).
    config: AuthConfig,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("htpasswd", &self.htpasswd)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A user authenticated with Basic credentials.
    User(String),
    /// A verified bearer token.
    Token(Verified),
}

impl Principal {
    /// The user name for the access log, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User(u) => Some(u),
            Principal::Token(v) => Some(v.subject.as_str()).filter(|s| !s.is_empty()),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any authenticated client (`/v2/`).
    Login,
    /// An action on a repository.
    Repo { name: String, action: Actions },
    /// The repository listing (filtered to what the caller may pull).
    Catalog,
    /// The `/admin/` endpoints.
    Admin,
}

impl Need {
    /// The token scopes a client should ask for to be allowed.
    pub fn scopes(&self) -> Vec<Access> {
        match self {
            Need::Login => Vec::new(),
            Need::Repo { name, action } => {
                let a = if *action == Actions::PUSH {
                    Actions::PULL.union(Actions::PUSH)
                } else {
                    *action
                };
                vec![Access::repository(name, a)]
            }
            Need::Catalog => vec![Access::registry("catalog")],
            Need::Admin => vec![Access::registry("admin")],
        }
    }
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 401 with a challenge; `error` is `insufficient_scope` when a token lacks the scope.
    Challenge {
        error: Option<&'static str>,
    },
    /// 403 `DENIED`: authenticated, but not allowed.
    Deny,
}

/// Credentials found in an `Authorization` header.
#[derive(Debug)]
pub(crate) enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
    Malformed,
}

impl Credentials {
    /// Reads the `Authorization` header.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Credentials {
        let Some(v) = headers.get("authorization") else {
            return Credentials::None;
        };
        let Ok(v) = v.to_str() else {
            return Credentials::Malformed;
        };
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|s| s.split_once(':')) {
                // Some clients (containers/image) send empty credentials when they have none.
                Some(("", "")) => Credentials::None,
                Some((u, p)) if !u.is_empty() => Credentials::Basic {
                    user: u.to_string(),
                    password: p.to_string(),
                },
                _ => Credentials::Malformed,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Credentials::Bearer(rest.to_string())
        } else {
            Credentials::Malformed
        }
    }
}

/// Why Basic credentials were refused.
#[derive(Debug)]
pub(crate) enum BasicFailure {
    /// Too many failures from this IP: retry after this long.
    Locked(Duration),
    /// Unknown user or wrong password (or no htpasswd file).
    Bad,
}

/// A 401 `UNAUTHORIZED` error with the challenge `challenge`.
pub(crate) fn unauthorized(challenge: String, message: &str) -> Error {
    Error::new(Code::Unauthorized, message).with_header("WWW-Authenticate", challenge)
}

/// A 429 for a locked-out client.
pub(crate) fn locked_out(retry: Duration) -> Error {
    Error::new(
        Code::TooManyRequests,
        "too many failed logins from this address; try again later",
    )
    .with_header("Retry-After", (retry.as_secs() + 1).to_string())
}

impl Auth {
    /// The authentication configured in `cfg`; `None` when it is off.
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Arc<Auth>>, String> {
        if !cfg.enabled() {
            return Ok(None);
        }
        Self::build(cfg, None).map(Some)
    }

    /// The authentication of `cfg` replacing this one (a live reload): the htpasswd file is
    /// read again; the token service (and so its signing key, generated or not) and the
    /// failed-login counts are kept when their settings did not change.
    pub fn reloaded(&self, cfg: &AuthConfig) -> Result<Arc<Auth>, String> {
        Self::build(cfg, Some(self))
    }

    fn build(cfg: &AuthConfig, old: Option<&Auth>) -> Result<Arc<Auth>, String> {
        cfg.validate()?;
        let htpasswd = match &cfg.htpasswd {
            Some(p) => {
                let h = Htpasswd::load(p).map_err(|e| format!("htpasswd {}: {e}", p.display()))?;
                if h.is_empty() {
                    tracing::warn!(file = %p.display(), "htpasswd file has no bcrypt entries: nobody can log in");
                }
                tracing::info!(file = %p.display(), users = h.len(), "htpasswd loaded");
                Some(Arc::new(h))
            }
            None => None,
        };
        let tokens = match old {
            Some(o) if o.config.token == cfg.token => o.tokens.clone(),
            _ => cfg
                .token
                .as_ref()
                .map(TokenService::new)
                .transpose()?
                .map(Arc::new),
        };
        let limiter = match old {
            Some(o)
                if o.config.max_failed_logins == cfg.max_failed_logins
                    && o.config.lockout == cfg.lockout =>
            {
                o.limiter.clone()
            }
            _ => Arc::new(LoginLimiter::new(cfg.max_failed_logins, cfg.lockout)),
        };
        let rules = Rules::new(cfg);
        tracing::info!("access policy: {}", rules.describe());
        Ok(Arc::new(Auth {
            htpasswd,
            tokens,
            rules,
            limiter,
            config: cfg.clone(),
        }))
    }

    /// The number of users in the htpasswd file, when there is one.
    pub fn user_count(&self) -> Option<usize> {
        self.htpasswd.as_ref().map(|h| h.len())
    }

    /// The fingerprint of `user`'s htpasswd entry, while the user exists (a refresh token is
    /// honoured only while it matches).
    pub fn user_fingerprint(&self, user: &str) -> Option<String> {
        self.htpasswd.as_ref()?.entry_fingerprint(user)
    }

    /// The token service, when bearer tokens are configured.
    pub fn tokens(&self) -> Option<&TokenService> {
        self.tokens.as_deref()
    }

    /// The access rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The `WWW-Authenticate` value asking for `scopes`.
    pub fn challenge(
        &self,
        conn: &ConnectionInfo,
        scopes: &[Access],
        error: Option<&str>,
    ) -> String {
        let Some(t) = &self.tokens else {
            return "Basic realm=\"kura\"".into();
        };
        let realm = t
            .realm
            .clone()
            .unwrap_or_else(|| format!("{}://{}/auth/token", conn.scheme(), conn.host()));
        let mut c = format!("Bearer realm=\"{realm}\",service=\"{}\"", t.service);
        if !scopes.is_empty() {
            let s: Vec<String> = scopes.iter().map(Access::scope).collect();
            c.push_str(&format!(",scope=\"{}\"", s.join(" ")));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }

    /// Checks Basic credentials (bcrypt on a blocking thread unless recently verified),
    /// counting failures per client IP.
    pub(crate) async fn verify_basic(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        user: String,
        password: String,
    ) -> Result<String, BasicFailure> {
        self.limiter.check(ip).map_err(BasicFailure::Locked)?;
        let Some(h) = self.htpasswd.clone() else {
            return Err(BasicFailure::Bad);
        };
        if h.recently_verified(&user, &password) {
            return Ok(user);
        }
        // Counted before bcrypt runs, so a burst cannot outrun the lockout.
        let attempt = self.limiter.begin(ip).await.map_err(BasicFailure::Locked)?;
        let ok = h.recently_verified(&user, &password) || {
            let u = user.clone();
            web::block(move || h.verify(&u, &password))
                .await
                .unwrap_or(false)
        };
        if ok {
            attempt.succeeded();
            Ok(user)
        } else {
            attempt.failed();
            tracing::warn!(%user, ip = ?ip, "failed login");
            Err(BasicFailure::Bad)
        }
    }

    /// Decides whether `who` may do what `need` names.
    pub fn authorize(&self, who: &Principal, need: &Need) -> Decision {
        let challenge = Decision::Challenge { error: None };
        let insufficient = Decision::Challenge {
            error: Some("insufficient_scope"),
        };
        match (need, who) {
            (Need::Login, Principal::Anonymous) => challenge,
            (Need::Login, _) => Decision::Allow,
            (Need::Repo { name, action }, Principal::Anonymous) => {
                if self.rules.allowed(None, name).contains(*action) {
                    Decision::Allow
                } else {
                    challenge
                }
            }
            (Need::Repo { name, action }, Principal::User(u)) => {
                if self.rules.allowed(Some(u), name).contains(*action) {
                    Decision::Allow
                } else {
                    Decision::Deny
                }
            }
            (Need::Repo { name, action }, Principal::Token(v)) => {
                if granted(&v.access, name).contains(*action) {
                    Decision::Allow
                } else if v.own
                    && !v.subject.is_empty()
                    && !self.rules.allowed(Some(&v.subject), name).contains(*action)
                {
                    Decision::Deny
                } else {
                    insufficient
                }
            }
            (Need::Catalog, Principal::Anonymous) => {
                if self.rules.anonymous_pull() {
                    Decision::Allow
                } else {
                    challenge
                }
            }
            (Need::Catalog, Principal::User(_)) => Decision::Allow,
            (Need::Catalog, Principal::Token(v)) => {
                if grants_registry(&v.access, "catalog") {
                    Decision::Allow
                } else {
                    insufficient
                }
            }
            (Need::Admin, Principal::Anonymous) => challenge,
            (Need::Admin, Principal::User(u)) => {
                if self.rules.is_admin(Some(u)) {
                    Decision::Allow
                } else {
                    Decision::Deny
                }
            }
            (Need::Admin, Principal::Token(v)) => {
                if grants_registry(&v.access, "admin") {
                    Decision::Allow
                } else if v.own && !v.subject.is_empty() && !self.rules.is_admin(Some(&v.subject)) {
                    Decision::Deny
                } else {
                    insufficient
                }
            }
        }
    }

    /// Whether `who` may pull `repo` (for mounts, where refusal falls back to an upload).
    pub fn may_pull(&self, who: &Principal, repo: &str) -> bool {
        let need = Need::Repo {
            name: repo.to_string(),
            action: Actions::PULL,
        };
        self.authorize(who, &need) == Decision::Allow
    }

    /// The access a token for `user` (`None`: anonymous) gets for the requested scopes: the
    /// intersection of what was asked and what the rules grant.
    pub fn grant(&self, user: Option<&str>, requested: &[Access]) -> Vec<Access> {
        let mut out: Vec<Access> = Vec::new();
        for r in requested {
            match (r.kind.as_str(), r.name.as_str()) {
                ("repository", name) => {
                    let asked = Actions::from_names(&r.actions);
                    let a = asked.intersect(self.rules.allowed(user, name));
                    if !a.is_empty() {
                        out.push(Access::repository(name, a));
                    }
                }
                ("registry", "catalog") if user.is_some() || self.rules.anonymous_pull() => {
                    out.push(Access::registry("catalog"));
                }
                ("registry", "admin") if self.rules.is_admin(user) => {
                    out.push(Access::registry("admin"));
                }
                _ => {}
            }
        }
        out
    }
}

/// Put in a `_catalog` request's extensions: which repositories the caller may see.
#[derive(Clone)]
pub struct CatalogFilter {
    auth: Arc<Auth>,
    /// `None`: everything (a token of an external issuer granting the catalog).
    user: Option<Option<String>>,
}

impl CatalogFilter {
    /// The filter for `who`.
    pub fn new(auth: Arc<Auth>, who: &Principal) -> CatalogFilter {
        let user = match who {
            Principal::Anonymous => Some(None),
            Principal::User(u) => Some(Some(u.clone())),
            Principal::Token(v) if v.own => Some(Some(v.subject.clone()).filter(|s| !s.is_empty())),
            Principal::Token(_) => None,
        };
        CatalogFilter { auth, user }
    }

    /// Literal prefixes covering every repository the caller may see (`Rules::pull_prefixes`);
    /// `None` when they do not narrow the catalog.
    pub fn prefixes(&self) -> Option<Vec<String>> {
        match &self.user {
            None => None,
            Some(u) => self.auth.rules.pull_prefixes(u.as_deref()),
        }
    }

    /// Whether the caller may pull (and so see) `repo`.
    pub fn allows(&self, repo: &str) -> bool {
        match &self.user {
            None => true,
            Some(u) => self
                .auth
                .rules
                .allowed(u.as_deref(), repo)
                .contains(Actions::PULL),
        }
    }
}
