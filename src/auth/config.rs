//! The `[auth]` and `[tls]` configuration sections (part of `crate::config::Config`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rules::{ACTIONS, glob_is_valid};

/// Authentication and authorization (`[auth]`). Off unless `htpasswd` or `[auth.token]` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// htpasswd file with bcrypt entries (`htpasswd -B`): the users and their passwords.
    pub htpasswd: Option<PathBuf>,
    /// Anyone, without credentials, may pull every repository.
    pub anonymous_pull: bool,
    /// Named groups of users, for `rules`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Access rules; a request is allowed when one rule grants it (nothing is granted
    /// otherwise).
    pub rules: Vec<RuleConfig>,
    /// Bearer tokens (the Docker token flow). Without this section clients use Basic auth.
    pub token: Option<TokenConfig>,
    /// Failed logins from one client IP within a minute before it is refused with 429.
    pub max_failed_logins: u32,
    /// How long a client IP is refused after too many failed logins.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            htpasswd: None,
            anonymous_pull: false,
            groups: BTreeMap::new(),
            rules: Vec::new(),
            token: None,
            max_failed_logins: 5,
            lockout: Duration::from_secs(60),
        }
    }
}

/// One access rule (`[[auth.rules]]`): who may do what on which repositories.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// User names; `*` is every authenticated user.
    pub users: Vec<String>,
    /// Group names from `[auth.groups]`.
    pub groups: Vec<String>,
    /// Repository patterns: `*` matches any characters, `/` included (`team/*`, `*`).
    pub repositories: Vec<String>,
    /// Any of `pull`, `push`, `delete`, `*` (all three), and `admin` (the `/admin/` endpoints;
    /// only in a rule whose repositories are `["*"]`).
    pub actions: Vec<String>,
}

/// Bearer token settings (`[auth.token]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Where clients fetch tokens (the challenge's realm); default: this server's
    /// `/auth/token`, as the client addressed it.
    pub realm: Option<String>,
    /// The service name: the audience of the tokens.
    pub service: String,
    /// The issuer written into (and required of) the tokens kura issues.
    pub issuer: String,
    /// Lifetime of issued tokens.
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// PEM private key signing tokens (PKCS#8 EC P-256 for ES256, or RSA for RS256); a key is
    /// generated at start when unset (tokens then do not survive a restart).
    pub signing_key: Option<PathBuf>,
    /// Other token servers whose tokens are accepted.
    pub trusted: Vec<TrustedIssuer>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: None,
            service: "kura".into(),
            issuer: "kura".into(),
            lifetime: Duration::from_secs(300),
            signing_key: None,
            trusted: Vec::new(),
        }
    }
}

/// An external token issuer (`[[auth.token.trusted]]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// PEM file with its public key(s) or certificate(s) (EC, RSA or Ed25519).
    pub public_key: PathBuf,
}

/// TLS (`[tls]`): both files, or neither for plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, server certificate first.
    pub cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files when TLS is configured.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }

    /// Checks that both files or neither are set.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("tls needs both cert and key".into());
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.htpasswd.is_some() || self.token.is_some()
    }

    /// Checks rules, groups and token settings.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() && (!self.rules.is_empty() || self.anonymous_pull) {
            return Err("auth rules need auth.htpasswd or [auth.token]".into());
        }
        if self.max_failed_logins == 0 {
            return Err("auth.max_failed_logins must be positive".into());
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("auth.rules[{i}]");
            if r.users.is_empty() && r.groups.is_empty() {
                return Err(format!("{at} names no users or groups"));
            }
            if let Some(g) = r.groups.iter().find(|g| !self.groups.contains_key(*g)) {
                return Err(format!("{at}: unknown group {g:?}"));
            }
            if r.repositories.is_empty() || r.actions.is_empty() {
                return Err(format!("{at} needs repositories and actions"));
            }
            if let Some(p) = r.repositories.iter().find(|p| !glob_is_valid(p)) {
                return Err(format!("{at}: bad repository pattern {p:?}"));
            }
            if let Some(a) = r
                .actions
                .iter()
                .find(|a| !ACTIONS.contains(&a.as_str()) && *a != "*" && *a != "admin")
            {
                return Err(format!("{at}: unknown action {a:?}"));
            }
            if r.actions.iter().any(|a| a == "admin") && r.repositories != ["*"] {
                return Err(format!(
                    "{at}: the admin action needs repositories = [\"*\"]"
                ));
            }
        }
        if let Some(t) = &self.token {
            if t.service.is_empty() || t.issuer.is_empty() {
                return Err("auth.token service and issuer must not be empty".into());
            }
            if t.lifetime < Duration::from_secs(1) {
                return Err("auth.token.lifetime must be at least 1s".into());
            }
            if let Some(x) = t.trusted.iter().find(|x| x.issuer.is_empty()) {
                return Err(format!(
                    "auth.token.trusted {}: issuer must not be empty",
                    x.public_key.display()
                ));
            }
        }
        Ok(())
    }
}

/// Reads an `--auth-config` file: TOML with the `[auth]` keys, either at the top level or
/// under an `[auth]` table. Returns `{"auth": ...}` to merge into the configuration.
pub fn read_auth_file(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("auth config {}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("auth config {}: {e}", path.display()))?;
    let inner = match table.get("auth") {
        Some(toml::Value::Table(t)) if table.len() == 1 => t.clone(),
        _ => table,
    };
    let mut out = toml::Table::new();
    out.insert("auth".into(), toml::Value::Table(inner));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn auth_is_off_by_default_and_an_empty_token_table_turns_tokens_on() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(None, serde_json::json!({})).unwrap();
        assert!(!c.auth.enabled());
        assert!(c.tls.files().is_none());
        let f = write(dir.path(), "k.toml", "[auth.token]\n");
        let c = Config::load(Some(&f), serde_json::json!({})).unwrap();
        assert_eq!(c.auth.token.unwrap().service, "kura");
    }

    #[test]
    fn an_auth_file_is_merged_with_or_without_its_auth_table() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "kura.toml", "[auth]\nhtpasswd = \"/etc/h\"\n");
        for text in [
            "anonymous_pull = true\n[token]\nrealm = \"https://r/t\"\n",
            "[auth]\nanonymous_pull = true\n[auth.token]\nrealm = \"https://r/t\"\n",
        ] {
            let a = write(dir.path(), "auth.toml", text);
            let c = Config::load_with_auth(Some(&main), Some(&a), serde_json::json!({})).unwrap();
            assert_eq!(
                c.auth.htpasswd.as_deref(),
                Some(std::path::Path::new("/etc/h"))
            );
            assert!(c.auth.anonymous_pull);
            assert_eq!(c.auth.token.unwrap().realm.as_deref(), Some("https://r/t"));
        }
        let bad = write(dir.path(), "bad.toml", "htpasswd = \"/h\"\nunknown = 1\n");
        assert!(Config::load_with_auth(None, Some(&bad), serde_json::json!({})).is_err());
    }

    #[test]
    fn tls_needs_both_files_and_rules_need_auth() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "t.toml", "[tls]\ncert = \"/c.pem\"\n");
        assert!(Config::load(Some(&f), serde_json::json!({})).is_err());
        let f = write(dir.path(), "r.toml", "[auth]\nanonymous_pull = true\n");
        assert!(Config::load(Some(&f), serde_json::json!({})).is_err());
    }

    #[test]
    fn the_printed_configuration_round_trips_and_masks_realm_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "k.toml",
            "[auth]\nhtpasswd = \"/h\"\n[auth.groups]\ndevs = [\"bob\"]\n\
             [[auth.rules]]\ngroups = [\"devs\"]\nrepositories = [\"team/*\"]\nactions = [\"pull\"]\n\
             [auth.token]\nrealm = \"https://user:secret@auth.example/token\"\n\
             signing_key = \"/k.pem\"\n[tls]\ncert = \"/c\"\nkey = \"/k\"\n",
        );
        let c = Config::load(Some(&f), serde_json::json!({})).unwrap();
        let printed = c.to_masked_toml();
        assert!(!printed.contains("user:secret"), "{printed}");
        assert!(
            printed.contains("https://********@auth.example/token"),
            "{printed}"
        );
        let back = write(dir.path(), "back.toml", &printed);
        let again = Config::load(Some(&back), serde_json::json!({})).unwrap();
        assert_eq!(again.auth.rules, c.auth.rules);
        assert_eq!(again.tls, c.tls);
    }

    #[test]
    fn the_printed_configuration_masks_the_storage_secret_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "k.toml",
            "[storage]\nkind = \"s3\"\nbucket = \"b\"\naccess_key_id = \"AKID\"\n\
             secret_access_key = \"wJalrXUtnFEMIK7MDENG\"\n",
        );
        let c = Config::load(Some(&f), serde_json::json!({})).unwrap();
        assert_eq!(c.storage.secret_access_key, "wJalrXUtnFEMIK7MDENG");
        let printed = c.to_masked_toml();
        assert!(!printed.contains("wJalrXUtnFEMIK7MDENG"), "{printed}");
        assert!(
            printed.contains("secret_access_key = \"********\""),
            "{printed}"
        );
    }
}
