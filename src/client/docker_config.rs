//! `~/.docker/config.json` (read, and written by `kura login`): credentials per registry from
//! a credential helper (`credHelpers`, `credsStore`; `cred_helper`) or the `auths` entries.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::cred_helper::Helper;
use super::error::{Error, Result};
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

#[cfg(test)]
mod tests {
    use super::*;

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
