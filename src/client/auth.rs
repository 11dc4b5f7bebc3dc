//! Credentials and authentication: `~/.docker/config.json` (read, and written by `kura login`),
//! `WWW-Authenticate` challenges, and the Docker token flow (fetch a bearer token from the
//! challenge's realm with basic credentials, cache it per scope until it expires).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::cred_helper::Helper;
use super::error::{Error, Result, read_limited};
use super::reference::{DOCKER_HUB, DOCKER_HUB_API};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

/// The user name meaning "the secret is an identity token" (credential helpers' convention).
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credentials {
    /// The identity token (an OAuth2 refresh token), when these credentials are one.
    pub fn identity_token(&self) -> Option<&str> {
        (self.username == IDENTITY_TOKEN_USER).then_some(self.password.as_str())
    }

    /// The `Authorization: Basic` header value.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// Docker's client configuration file: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`. Credentials come from the credential helper named for a registry
/// (`credHelpers`), else the default one (`credsStore`), else the `auths` entries (`auth`,
/// `username`/`password`, `identitytoken`); only `auths` entries are written (by `kura login`
/// when no helper is configured); every other field is kept as it was.
pub struct DockerConfig {
    path: PathBuf,
    value: Value,
}

/// The key Docker Hub credentials are stored under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry name an `auths` key stands for (scheme and path dropped, Docker Hub aliases
/// folded into `docker.io`).
fn normalize_key(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    match host {
        "index.docker.io" | DOCKER_HUB_API | DOCKER_HUB => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

impl DockerConfig {
    /// Where the configuration file is.
    pub fn default_path() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Ok(PathBuf::from(dir).join("config.json"));
        }
        let home = std::env::var_os("HOME")
            .ok_or_else(|| Error::Invalid("neither DOCKER_CONFIG nor HOME is set".into()))?;
        Ok(PathBuf::from(home).join(".docker/config.json"))
    }

    /// Loads the file at its default place; a missing file is an empty configuration.
    pub fn load() -> Result<DockerConfig> {
        Self::load_from(&Self::default_path()?)
    }

    /// Loads the file at `path`; a missing file is an empty configuration.
    pub fn load_from(path: &Path) -> Result<DockerConfig> {
        let value = match std::fs::read(path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => json!({}),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Invalid(format!("{} is not valid JSON: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        if !value.is_object() {
            return Err(Error::Invalid(format!(
                "{} is not a JSON object",
                path.display()
            )));
        }
        Ok(DockerConfig {
            path: path.to_path_buf(),
            value,
        })
    }

    /// The file this configuration is read from and saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper configured for `registry`: its `credHelpers` entry, else
    /// `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<Helper> {
        let want = normalize_key(registry);
        let named = self
            .value
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.iter().find(|(k, _)| normalize_key(k) == want))
            .and_then(|(_, v)| v.as_str());
        let store = self.value.get("credsStore").and_then(Value::as_str);
        named.or(store).filter(|n| !n.is_empty()).map(|n| Helper {
            name: n.to_string(),
        })
    }

    /// The server URL a helper keys `registry`'s credentials by (as Docker passes it).
    fn server_url(registry: &str) -> String {
        match normalize_key(registry) {
            h if h == DOCKER_HUB => DOCKER_HUB_KEY.to_string(),
            h => h,
        }
    }

    /// The credentials for `registry` (`host[:port]`): from its credential helper when one is
    /// configured (an error when the helper cannot be run), else from `auths`.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(h) = self.helper_for(registry)
            && let Some(c) = h.get(&Self::server_url(registry))?
        {
            return Ok(Some(c));
        }
        Ok(self.stored_credentials(registry))
    }

    /// Stores `creds` for `registry`: through its credential helper when one is configured
    /// (then any `auths` entry for it is dropped; the file must be saved), else in `auths`.
    /// Returns the helper's name when one stored them.
    pub fn store_credentials(
        &mut self,
        registry: &str,
        creds: &Credentials,
    ) -> Result<Option<String>> {
        match self.helper_for(registry) {
            Some(h) => {
                h.store(&Self::server_url(registry), creds)?;
                self.remove_credentials(registry);
                Ok(Some(h.name))
            }
            None => {
                self.set_credentials(registry, creds);
                Ok(None)
            }
        }
    }

    /// Erases the credentials of `registry` from its helper (if one is configured) and from
    /// `auths`; false when neither held any.
    pub fn erase_credentials(&mut self, registry: &str) -> Result<bool> {
        let erased = match self.helper_for(registry) {
            Some(h) => h.erase(&Self::server_url(registry))?,
            None => false,
        };
        Ok(self.remove_credentials(registry) || erased)
    }

    /// The credentials in the `auths` entry for `registry`, if any.
    fn stored_credentials(&self, registry: &str) -> Option<Credentials> {
        let want = normalize_key(registry);
        let auths = self.value.get("auths")?.as_object()?;
        let entry = auths
            .iter()
            .find(|(k, _)| normalize_key(k) == want)
            .map(|(_, v)| v)?;
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let decoded = BASE64.decode(auth.trim()).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (u, p) = decoded.split_once(':')?;
            return Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
        if let Some(t) = entry
            .get("identitytoken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            return Some(Credentials {
                username: IDENTITY_TOKEN_USER.to_string(),
                password: t.to_string(),
            });
        }
        let username = entry.get("username")?.as_str()?;
        let password = entry.get("password")?.as_str()?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    fn auths_mut(&mut self) -> &mut serde_json::Map<String, Value> {
        let obj = self.value.as_object_mut().expect("checked at load");
        let auths = obj.entry("auths").or_insert_with(|| json!({}));
        if !auths.is_object() {
            *auths = json!({});
        }
        auths.as_object_mut().expect("just made an object")
    }

    /// Stores `creds` for `registry`, replacing any entry for the same registry.
    pub fn set_credentials(&mut self, registry: &str, creds: &Credentials) {
        let want = normalize_key(registry);
        let auths = self.auths_mut();
        auths.retain(|k, _| normalize_key(k) != want);
        let key = if want == DOCKER_HUB {
            DOCKER_HUB_KEY.to_string()
        } else {
            want
        };
        let auth = BASE64.encode(format!("{}:{}", creds.username, creds.password));
        auths.insert(key, json!({ "auth": auth }));
    }

    /// Removes the entries for `registry`; false when there was none.
    pub fn remove_credentials(&mut self, registry: &str) -> bool {
        let want = normalize_key(registry);
        let auths = self.auths_mut();
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != want);
        auths.len() != before
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        std::fs::create_dir_all(dir).map_err(|e| Error::io(ctx("creating the directory of"), e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(dir)
            .map_err(|e| Error::io(ctx("writing"), e))?;
        let mut body = serde_json::to_vec_pretty(&self.value).expect("JSON value");
        body.push(b'\n');
        std::io::Write::write_all(&mut tmp, &body).map_err(|e| Error::io(ctx("writing"), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(ctx("writing"), e))?;
        }
        tmp.persist(&self.path)
            .map_err(|e| Error::io(ctx("writing"), e.error))?;
        Ok(())
    }
}

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
                self.tokens.lock().expect("tokens lock").push(CachedToken {
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

    #[test]
    fn docker_config_round_trips_credentials_and_keeps_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}},"psFormat":"x"}"#,
        )
        .unwrap();
        let mut c = DockerConfig::load_from(&path).unwrap();
        assert_eq!(c.credentials("docker.io").unwrap().unwrap().username, "u");
        let creds = Credentials {
            username: "alice".into(),
            password: "s:ecret".into(),
        };
        c.set_credentials("127.0.0.1:5000", &creds);
        c.save().unwrap();
        let c = DockerConfig::load_from(&path).unwrap();
        assert_eq!(c.credentials("127.0.0.1:5000").unwrap(), Some(creds));
        assert_eq!(c.value["psFormat"], "x");
        let mut c = c;
        assert!(c.remove_credentials("http://127.0.0.1:5000/v2/"));
        assert!(!c.remove_credentials("127.0.0.1:5000"));
        assert!(c.credentials("127.0.0.1:5000").unwrap().is_none());
    }
}
