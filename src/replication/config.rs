//! The `[replication]` section: push targets (`[[replication.push]]`) this registry copies its
//! pushes and deletes to, and pull sources (`[[replication.pull]]`) it copies tags from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[replication]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    pub push: Vec<PushTarget>,
    pub pull: Vec<PullSource>,
}

/// A registry that every push and delete of matching repositories is replicated to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushTarget {
    /// Unique; pending events are queued under `replication:<name>`.
    pub name: String,
    /// The target registry, e.g. `https://dr.example.com`.
    pub url: String,
    /// Glob patterns (`*`, `?`) of local repositories replicated (all when empty).
    pub repositories: Vec<String>,
    /// Prepended to the local repository name to name the target repository.
    pub prefix: String,
    /// Basic credentials (also used for the Docker token flow). Masked when printed.
    pub username: String,
    pub password: String,
    /// A static bearer token, instead of `username`/`password`. Masked when printed.
    pub token: String,
    /// Allow plain `http://` to a host that is not loopback.
    pub insecure: bool,
    /// First retry delay after a failed replication; doubles up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

/// An upstream registry whose tags are copied into this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PullSource {
    /// Unique; names the source in `kura sync --source` and the status.
    pub name: String,
    /// The upstream registry, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// Upstream repository names copied.
    pub repositories: Vec<String>,
    /// Glob patterns of the tags copied (all when empty).
    pub tags: Vec<String>,
    /// Prepended to the upstream name to name the local repository.
    pub prefix: String,
    /// Basic credentials (also used for the Docker token flow). Masked when printed.
    pub username: String,
    pub password: String,
    /// A static bearer token, instead of `username`/`password`. Masked when printed.
    pub token: String,
    /// Allow plain `http://` to a host that is not loopback.
    pub insecure: bool,
    /// How often the server syncs; `0s` only on `kura sync`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// How to reach a remote registry: its URL, credentials, and whether plain HTTP is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    pub url: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub token: &'a str,
    pub insecure: bool,
}

impl Default for PushTarget {
    fn default() -> Self {
        PushTarget {
            name: String::new(),
            url: String::new(),
            repositories: Vec::new(),
            prefix: String::new(),
            username: String::new(),
            password: String::new(),
            token: String::new(),
            insecure: false,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl Default for PullSource {
    fn default() -> Self {
        PullSource {
            name: String::new(),
            url: String::new(),
            repositories: Vec::new(),
            tags: Vec::new(),
            prefix: String::new(),
            username: String::new(),
            password: String::new(),
            token: String::new(),
            insecure: false,
            interval: Duration::ZERO,
        }
    }
}

/// Whether `name` matches one of the glob `patterns` (all names when there are none).
pub fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|p| wildmatch::WildMatch::new(p).matches(name))
}

impl Remote<'_> {
    fn validate(&self, what: &str) -> Result<(), String> {
        let url = self.url;
        if self.username.is_empty() != self.password.is_empty() {
            return Err(format!("{what}: username and password go together"));
        }
        if !self.token.is_empty() && !self.username.is_empty() {
            return Err(format!(
                "{what}: token and username/password exclude each other"
            ));
        }
        let host = host_of(url)
            .ok_or_else(|| format!("{what}: url {url:?} is not http(s)://host[:port]"))?;
        if url.starts_with("http://")
            && !crate::client::reference::is_loopback(host)
            && !self.insecure
        {
            return Err(format!(
                "{what}: plain http:// to {host} needs insecure = true"
            ));
        }
        Ok(())
    }
}

fn mask(secrets: [&mut String; 2]) {
    for s in secrets {
        if !s.is_empty() {
            *s = "********".into();
        }
    }
}

impl PushTarget {
    /// How to reach the target.
    pub fn remote(&self) -> Remote<'_> {
        Remote {
            url: &self.url,
            username: &self.username,
            password: &self.password,
            token: &self.token,
            insecure: self.insecure,
        }
    }
}

impl PullSource {
    /// How to reach the upstream.
    pub fn remote(&self) -> Remote<'_> {
        Remote {
            url: &self.url,
            username: &self.username,
            password: &self.password,
            token: &self.token,
            insecure: self.insecure,
        }
    }
}

/// `host[:port]` of an `http(s)://host[:port][/]` URL.
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.trim_end_matches('/');
    (!host.is_empty() && !host.contains('/') && !host.contains('@')).then_some(host)
}

impl ReplicationConfig {
    /// Checks names are unique and non-empty, URLs and credentials usable, patterns given,
    /// that no webhook endpoint's queue is named like a target's (`replication:<name>`), and
    /// that no pull source writes into a mirror's prefix (the cache's content, evicted at will).
    pub fn validate(
        &self,
        webhooks: &[crate::config::EndpointConfig],
        mirrors: &[crate::mirror::config::MirrorConfig],
    ) -> Result<(), String> {
        if let Some(e) = webhooks.iter().find(|e| e.name.starts_with("replication:")) {
            return Err(format!(
                "notification endpoint {:?}: names starting with replication: are reserved",
                e.name
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.push {
            let what = format!("replication.push {:?}", t.name);
            if t.name.is_empty() || !names.insert(("push", t.name.as_str())) {
                return Err(format!("{what}: names must be unique and non-empty"));
            }
            t.remote().validate(&what)?;
            if t.backoff.is_zero() || t.max_backoff < t.backoff {
                return Err(format!(
                    "{what}: backoff must be positive and at most max_backoff"
                ));
            }
        }
        for s in &self.pull {
            let what = format!("replication.pull {:?}", s.name);
            if s.name.is_empty() || !names.insert(("pull", s.name.as_str())) {
                return Err(format!("{what}: names must be unique and non-empty"));
            }
            s.remote().validate(&what)?;
            if s.repositories.is_empty() {
                return Err(format!("{what}: list the upstream repositories to copy"));
            }
            for r in &s.repositories {
                let local = format!("{}{r}", s.prefix);
                crate::names::RepoName::parse(&local)
                    .map_err(|e| format!("{what}: {local}: {e}"))?;
                if let Some(m) = mirrors.iter().find(|m| local.starts_with(&m.prefix)) {
                    return Err(format!(
                        "{what}: {local} is under the prefix {:?} of mirror {:?}; choose another prefix",
                        m.prefix, m.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Masks passwords and tokens (for `kura config check`).
    pub fn mask(&mut self) {
        for t in &mut self.push {
            mask([&mut t.password, &mut t.token]);
        }
        for s in &mut self.pull {
            mask([&mut s.password, &mut s.token]);
        }
    }
}
