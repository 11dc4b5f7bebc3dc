//! Authentication: `WWW-Authenticate` challenges and the Docker token flow (fetch a bearer
//! token from the challenge's realm with basic credentials, or by the OAuth2 refresh grant with
//! an identity token; cache it per scope until it expires). The credentials come from
//! `docker_config` (re-exported here).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use super::docker_config::{Credentials, DockerConfig, IDENTITY_TOKEN_USER};
use super::error::{Error, Result, read_limited};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// The challenge's scopes (space-separated in the header).
        scopes: Vec<String>,
    },
}

/// Parses `Basic realm=".."` or `Bearer realm="..",service="..",scope=".."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scopes: get("scope")
            .map(|s| {
                s.split(' ')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// `k=v, k="quoted, with \"escapes\""` → pairs.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

/// The set of `type:name:action` items a scope string (space-separated scopes, comma-separated
/// actions) grants or needs.
fn scope_items(scopes: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in scopes {
        let Some((prefix, actions)) = s.rsplit_once(':') else {
            continue;
        };
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            out.insert(format!("{prefix}:{a}"));
        }
    }
    out
}

struct CachedToken {
    items: BTreeSet<String>,
    token: String,
    expires: Instant,
}

/// One registry's authentication state: its credentials, whether it asked for basic auth, and
/// the bearer tokens fetched for it.
pub struct AuthState {
    registry: String,
    creds: Option<Credentials>,
    /// A bearer token given by configuration, sent with every request (no challenge needed).
    fixed_bearer: Option<String>,
    basic: Mutex<bool>,
    tokens: Mutex<Vec<CachedToken>>,
    /// Held while a challenge is answered, so parallel requests fetch one token, not one each.
    answering: tokio::sync::Mutex<()>,
}

impl AuthState {
    /// State for `registry` with optional credentials.
    pub fn new(registry: &str, creds: Option<Credentials>) -> AuthState {
        AuthState {
            registry: registry.to_string(),
            creds,
            fixed_bearer: None,
            basic: Mutex::new(false),
            tokens: Mutex::new(Vec::new()),
            answering: tokio::sync::Mutex::new(()),
        }
    }

    /// State for `registry` that sends the bearer `token` with every request.
    pub fn with_bearer(registry: &str, token: &str) -> AuthState {
        AuthState {
            fixed_bearer: Some(token.to_string()),
            ..AuthState::new(registry, None)
        }
    }

    /// The `Authorization` header for a request needing `scopes`, if one is known.
    pub fn header_for(&self, scopes: &[String]) -> Option<String> {
        if let Some(t) = &self.fixed_bearer {
            return Some(format!("Bearer {t}"));
        }
        let need = scope_items(scopes);
        let now = Instant::now();
        let mut tokens = self.tokens.lock().expect("tokens lock");
        tokens.retain(|t| t.expires > now);
        if let Some(t) = tokens.iter().find(|t| t.items.is_superset(&need)) {
            return Some(format!("Bearer {}", t.token));
        }
        drop(tokens);
        if *self.basic.lock().expect("basic lock") {
            return self.creds.as_ref().map(Credentials::basic_header);
        }
        None
    }

    /// Answers a challenge to a request sent with the `used` header, so the next
    /// `header_for(scopes)` has a header; false when it cannot be answered (basic auth without
    /// credentials). When a parallel request answered it meanwhile, nothing is fetched.
    pub async fn answer(
        &self,
        http: &reqwest::Client,
        challenge: &Challenge,
        scopes: &[String],
        used: Option<&str>,
    ) -> Result<bool> {
        let _answering = self.answering.lock().await;
        if let Some(h) = self.header_for(scopes)
            && used != Some(h.as_str())
        {
            return Ok(true);
        }
        match challenge {
            Challenge::Basic => {
                // An identity token is only good at a token endpoint.
                if self
                    .creds
                    .as_ref()
                    .is_none_or(|c| c.identity_token().is_some())
                {
                    return Ok(false);
                }
                *self.basic.lock().expect("basic lock") = true;
                Ok(true)
            }
            Challenge::Bearer {
                realm,
                service,
                scopes: asked,
            } => {
                let mut all: Vec<String> = asked.clone();
                for s in scopes {
                    if !all.contains(s) {
                        all.push(s.clone());
                    }
                }
                let (token, ttl) = self
                    .fetch_token(http, realm, service.as_deref(), &all)
                    .await?;
                let mut items = scope_items(&all);
                // A token is good for what we asked; the registry decides what it grants.
                items.extend(scope_items(scopes));
                let mut tokens = self.tokens.lock().expect("tokens lock");
                // The token just refused (e.g. signed with a key the registry rotated) must not
                // be found again before the new one.
                tokens.retain(|t| used != Some(format!("Bearer {}", t.token).as_str()));
                tokens.push(CachedToken {
                    items,
                    token,
                    expires: Instant::now() + ttl,
                });
                Ok(true)
            }
        }
    }

    /// GETs `realm?service=..&scope=..` with basic credentials if there are any.
    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration)> {
        let auth_err = |message: String| Error::Auth {
            host: self.registry.clone(),
            message,
        };
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| auth_err(format!("token realm {realm:?} is not a URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        if let Some(token) = self.creds.as_ref().and_then(Credentials::identity_token) {
            return self
                .refresh_grant(http, realm, service, scopes, token)
                .await;
        }
        let mut req = http.get(url.clone());
        if let Some(c) = &self.creds {
            if !super::transport::may_carry_basic(&url) {
                return Err(auth_err(format!(
                    "refusing to send a password over plain HTTP to the token realm {realm}; \
                     use HTTPS"
                )));
            }
            req = req.header(reqwest::header::AUTHORIZATION, c.basic_header());
        }
        self.token_answer(req, realm).await
    }

    /// The OAuth2 form (Docker's "oauth.md"): `POST realm` with `grant_type=refresh_token`,
    /// for credentials that are an identity token.
    async fn refresh_grant(
        &self,
        http: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        token: &str,
    ) -> Result<(String, Duration)> {
        let url = reqwest::Url::parse(realm).map_err(|e| Error::Auth {
            host: self.registry.clone(),
            message: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        if !super::transport::may_carry_basic(&url) {
            return Err(Error::Auth {
                host: self.registry.clone(),
                message: format!(
                    "refusing to send an identity token over plain HTTP to the token realm {realm}; use HTTPS"
                ),
            });
        }
        // A URL's query serializer writes application/x-www-form-urlencoded.
        let mut encoder = reqwest::Url::parse("form:").expect("static URL");
        encoder
            .query_pairs_mut()
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", token)
            .append_pair("service", service.unwrap_or(""))
            .append_pair("client_id", "kura")
            .append_pair("scope", &scopes.join(" "));
        let form = encoder.query().unwrap_or_default().to_string();
        let req = http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        self.token_answer(req, realm).await
    }

    /// Sends a token request and reads the token and its lifetime from the answer.
    async fn token_answer(
        &self,
        req: reqwest::RequestBuilder,
        realm: &str,
    ) -> Result<(String, Duration)> {
        let auth_err = |message: String| Error::Auth {
            host: self.registry.clone(),
            message,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Error::http(format!("fetching a token from {realm}"), e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = read_limited(resp, 4096).await.unwrap_or_default();
            return Err(auth_err(format!(
                "the token server {realm} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        let body = read_limited(resp, 1 << 20).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| auth_err(format!("token response is not JSON: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err("token response has no token".into()))?;
        // The spec's default lifetime is 60 s; keep a margin so a token never expires in use.
        let secs = v["expires_in"].as_u64().unwrap_or(60).max(10);
        Ok((token.to_string(), Duration::from_secs(secs - 5)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_give_realm_service_and_scopes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push repository:c:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scopes: vec![
                    "repository:a/b:pull,push".into(),
                    "repository:c:pull".into()
                ],
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="kura""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn scopes_are_compared_action_by_action() {
        let have = scope_items(&["repository:a:pull,push".into()]);
        assert!(have.is_superset(&scope_items(&["repository:a:push".into()])));
        assert!(!have.is_superset(&scope_items(&["repository:b:pull".into()])));
    }
}
