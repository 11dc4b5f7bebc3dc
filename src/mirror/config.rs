//! `[[mirrors]]`: the upstream registries kura caches (pull-through), one entry each.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One mirrored upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// A unique name; containerd's `?ns=<host>` selects the mirror of that name (or whose
    /// upstream host it is).
    pub name: String,
    /// Local repositories under this prefix are the mirror's: `docker.io/library/alpine`
    /// with prefix `docker.io/` is upstream `library/alpine`. Empty: the whole registry.
    pub prefix: String,
    /// The upstream registry's base URL (`https://registry-1.docker.io`).
    pub upstream: String,
    /// Credentials for the upstream (Basic, or the Docker token flow when it asks for one).
    pub username: String,
    pub password: String,
    /// A static bearer token sent to the upstream instead of a username and password.
    pub token: String,
    /// How long a tag's manifest is served before it is revalidated upstream (a HEAD,
    /// digest compared). Manifests by digest never need revalidating.
    #[serde(with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// Size budget of the blobs cached for this mirror in bytes; least recently pulled
    /// images are evicted beyond it. 0: unlimited.
    pub max_bytes: u64,
    /// Allow plain HTTP to an upstream that is not on loopback.
    pub insecure: bool,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            name: String::new(),
            prefix: String::new(),
            upstream: String::new(),
            username: String::new(),
            password: String::new(),
            token: String::new(),
            tag_ttl: Duration::from_secs(300),
            max_bytes: 0,
            insecure: false,
        }
    }
}

/// Hosts that are Docker Hub: single-name images there live under `library/`.
const DOCKER_HUB: &[&str] = &["docker.io", "registry-1.docker.io", "index.docker.io"];

impl MirrorConfig {
    /// The upstream's `host[:port]`, parsed from `upstream`.
    pub fn upstream_host(&self) -> Result<String, String> {
        let url = reqwest::Url::parse(&self.upstream)
            .map_err(|e| format!("mirror {}: upstream {:?}: {e}", self.name, self.upstream))?;
        let host = url.host_str().ok_or_else(|| {
            format!(
                "mirror {}: upstream {:?} has no host",
                self.name, self.upstream
            )
        })?;
        Ok(match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        })
    }

    /// True when the upstream is Docker Hub (single names gain `library/`).
    pub fn is_docker_hub(&self) -> bool {
        self.upstream_host()
            .is_ok_and(|h| DOCKER_HUB.contains(&h.to_ascii_lowercase().as_str()))
    }

    /// Whether `ns` (containerd's `?ns=` value, a registry host) names this mirror.
    pub fn answers_ns(&self, ns: &str) -> bool {
        let ns = ns.to_ascii_lowercase();
        if ns == self.name.to_ascii_lowercase() {
            return true;
        }
        match self.upstream_host() {
            Ok(h) => {
                let h = h.to_ascii_lowercase();
                h == ns || (DOCKER_HUB.contains(&ns.as_str()) && DOCKER_HUB.contains(&h.as_str()))
            }
            Err(_) => false,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("every [[mirrors]] entry needs a name".into());
        }
        if !self.prefix.is_empty() && !self.prefix.ends_with('/') {
            return Err(format!(
                "mirror {}: prefix {:?} must end with '/' (or be empty for a whole-registry mirror)",
                self.name, self.prefix
            ));
        }
        if self.prefix.starts_with('/') || self.prefix.contains("//") {
            return Err(format!(
                "mirror {}: prefix {:?} is not a repository prefix",
                self.name, self.prefix
            ));
        }
        let url = reqwest::Url::parse(&self.upstream)
            .map_err(|e| format!("mirror {}: upstream {:?}: {e}", self.name, self.upstream))?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
            return Err(format!(
                "mirror {}: upstream {:?} must be a registry's base URL, http(s)://host[:port]",
                self.name, self.upstream
            ));
        }
        let host = self.upstream_host()?;
        let loopback = crate::client::reference::is_loopback(&host);
        if url.scheme() == "http" && !loopback && !self.insecure {
            return Err(format!(
                "mirror {}: upstream {} is plain HTTP; set insecure = true to allow it",
                self.name, self.upstream
            ));
        }
        if url.scheme() == "https" && loopback {
            return Err(format!(
                "mirror {}: a loopback upstream is reached over plain HTTP; write http://{host}",
                self.name
            ));
        }
        if !self.token.is_empty() && !self.username.is_empty() {
            return Err(format!(
                "mirror {}: give a token or a username, not both",
                self.name
            ));
        }
        if self.username.is_empty() != self.password.is_empty() {
            return Err(format!(
                "mirror {}: username and password go together",
                self.name
            ));
        }
        if self.tag_ttl.is_zero() {
            return Err(format!("mirror {}: tag_ttl must be at least 1s", self.name));
        }
        Ok(())
    }

    /// A copy with its secrets masked, for printing.
    pub(crate) fn masked(&self) -> MirrorConfig {
        let mask = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                "********".into()
            }
        };
        MirrorConfig {
            password: mask(&self.password),
            token: mask(&self.token),
            ..self.clone()
        }
    }
}

/// Checks the mirrors together: unique names, and no repository claimed by two of them.
pub(crate) fn validate_all(mirrors: &[MirrorConfig]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for m in mirrors {
        m.validate()?;
        if !names.insert(m.name.as_str()) {
            return Err(format!("two mirrors are named {:?}", m.name));
        }
    }
    for (i, a) in mirrors.iter().enumerate() {
        for b in &mirrors[i + 1..] {
            if a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix) {
                return Err(format!(
                    "mirrors {} and {} overlap (prefixes {:?} and {:?}): a repository must belong to one",
                    a.name, b.name, a.prefix, b.prefix
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, prefix: &str, upstream: &str) -> MirrorConfig {
        MirrorConfig {
            name: name.into(),
            prefix: prefix.into(),
            upstream: upstream.into(),
            ..MirrorConfig::default()
        }
    }

    #[test]
    fn overlapping_prefixes_and_duplicate_names_are_refused() {
        let hub = m("docker.io", "docker.io/", "https://registry-1.docker.io");
        let ghcr = m("ghcr.io", "ghcr.io/", "https://ghcr.io");
        assert!(validate_all(&[hub.clone(), ghcr.clone()]).is_ok());
        assert!(validate_all(&[hub.clone(), m("docker.io", "x/", "https://x.io")]).is_err());
        assert!(validate_all(&[hub.clone(), m("all", "", "https://x.io")]).is_err());
        assert!(validate_all(&[hub, m("sub", "docker.io/library/", "https://x.io")]).is_err());
    }

    #[test]
    fn plain_http_needs_loopback_or_insecure_and_prefixes_end_with_a_slash() {
        assert!(m("a", "a/", "http://127.0.0.1:5000").validate().is_ok());
        assert!(m("a", "a/", "http://example.com").validate().is_err());
        let mut insecure = m("a", "a/", "http://example.com");
        insecure.insecure = true;
        assert!(insecure.validate().is_ok());
        assert!(m("a", "a", "https://example.com").validate().is_err());
        assert!(m("a", "a/", "https://example.com/v2/").validate().is_err());
    }

    #[test]
    fn ns_names_the_mirror_by_name_or_upstream_host_and_docker_hub_by_any_alias() {
        let hub = m("hub", "docker.io/", "https://registry-1.docker.io");
        assert!(hub.answers_ns("docker.io"));
        assert!(hub.answers_ns("hub"));
        assert!(hub.is_docker_hub());
        let q = m("quay", "quay.io/", "https://quay.io");
        assert!(q.answers_ns("quay.io"));
        assert!(!q.answers_ns("docker.io"));
        assert!(!q.is_docker_hub());
    }
}
