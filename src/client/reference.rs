//! Image references as users write them: `host[:port]/name[:tag][@digest]`.
//!
//! The first path component is a registry host when it contains a `.` or a `:` or is
//! `localhost` (Docker's rule); otherwise the reference is on Docker Hub (`docker.io`), where a
//! one-component name means `library/<name>`.

use std::fmt;
use std::net::IpAddr;

use super::error::{Error, Result};
use crate::digest::Digest;
use crate::names::{Reference, RepoName, is_tag};

/// Docker Hub's registry name as users write it.
pub const DOCKER_HUB: &str = "docker.io";
/// The host serving Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry as written (`host` or `host:port`).
    pub registry: String,
    pub repository: RepoName,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// A repository on a registry, without tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub registry: String,
    pub repository: RepoName,
}

fn invalid(s: &str, why: &str) -> Error {
    Error::Invalid(format!("invalid reference {s:?}: {why}"))
}

/// Splits `host/rest` into the registry and the rest, by Docker's rule.
fn split_registry(s: &str) -> (String, &str) {
    match s.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest)
        }
        _ => (DOCKER_HUB.to_string(), s),
    }
}

fn repository(s: &str, registry: &str, name: &str) -> Result<RepoName> {
    let name = if registry == DOCKER_HUB && !name.contains('/') {
        format!("library/{name}")
    } else {
        name.to_string()
    };
    RepoName::parse(&name).map_err(|e| invalid(s, &e.message))
}

impl ImageRef {
    /// Parses `host[:port]/name[:tag][@digest]`.
    pub fn parse(s: &str) -> Result<ImageRef> {
        let (rest, digest) = match s.rsplit_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| invalid(s, &e.message))?),
            ),
            None => (s, None),
        };
        let (registry, path) = split_registry(rest);
        let (name, tag) = match path.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => {
                if !is_tag(t) {
                    return Err(invalid(s, &format!("{t:?} is not a valid tag")));
                }
                (n, Some(t.to_string()))
            }
            _ => (path, None),
        };
        if name.is_empty() {
            return Err(invalid(s, "no repository name"));
        }
        Ok(ImageRef {
            repository: repository(s, &registry, name)?,
            registry,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest if given, else the tag, else `latest`.
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => Reference::Tag("latest".into()),
        }
    }

    /// The repository part of the reference.
    pub fn repo(&self) -> RepoRef {
        RepoRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl RepoRef {
    /// Parses `host[:port]/name` (no tag, no digest).
    pub fn parse(s: &str) -> Result<RepoRef> {
        let r = ImageRef::parse(s)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(invalid(s, "expected a repository without tag or digest"));
        }
        Ok(r.repo())
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Validates a bare registry name (`host` or `host:port`), as `kura catalog` and `kura login`
/// take it. A URL's scheme and path are dropped.
pub fn parse_registry(s: &str) -> Result<String> {
    let host = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    {
        return Err(Error::Invalid(format!("invalid registry {s:?}")));
    }
    Ok(host.to_string())
}

/// The host name of `registry` without its port.
fn host_only(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_only(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host that serves `registry`'s API (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn registry_name_tag_and_digest_are_split() {
        let r = ImageRef::parse(&format!("127.0.0.1:5000/team/app:v1@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository.as_str(), "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/team/app:v1@{D}"));
        assert!(matches!(r.reference(), Reference::Digest(_)));

        let r = ImageRef::parse("localhost/app").unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.reference(), Reference::Tag("latest".into()));

        let r = ImageRef::parse("registry.example.com/a/b/c:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("registry.example.com", "a/b/c")
        );
        let r = ImageRef::parse("[::1]:5000/app:x").unwrap();
        assert_eq!(r.registry, "[::1]:5000");
    }

    #[test]
    fn names_without_a_host_are_on_docker_hub() {
        let r = ImageRef::parse("alpine:3.19").unwrap();
        assert_eq!(r.registry, DOCKER_HUB);
        assert_eq!(r.repository.as_str(), "library/alpine");
        let r = ImageRef::parse("team/app").unwrap();
        assert_eq!(r.repository.as_str(), "team/app");
        assert_eq!(api_host(&r.registry), DOCKER_HUB_API);
    }

    #[test]
    fn malformed_references_are_rejected() {
        for bad in [
            "",
            "host:5000/",
            "host:5000/App",
            "host:5000/app:-x",
            "host:5000/app@sha256:abc",
            "host:5000/app:v1:v2",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        assert!(RepoRef::parse("host:5000/app:v1").is_err());
        assert!(RepoRef::parse("host:5000/app").is_ok());
    }

    #[test]
    fn loopback_registries_are_recognised() {
        for lo in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:80",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(lo), "{lo}");
        }
        for not in [
            "example.com",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback(not), "{not}");
        }
    }

    #[test]
    fn registry_names_drop_scheme_and_path() {
        assert_eq!(
            parse_registry("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert_eq!(parse_registry("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert!(parse_registry("").is_err());
        assert!(parse_registry("a b").is_err());
    }
}
