//! Manifests through a mirror. By digest: cached for good. By tag: served from the cache while
//! the tag was confirmed upstream less than `tag_ttl` ago, else revalidated with a `HEAD`
//! (digest compared); when the upstream fails, the cached copy is served (stale-if-error).

use super::upstream::{Failure, Fetched};
use super::{Route, metrics};
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::meta::now_secs;
use crate::names::{Reference, RepoName};
use crate::registry::{ManifestContent, Registry};

fn is_unknown(e: &Error) -> bool {
    matches!(e.code, Code::ManifestUnknown | Code::NameUnknown)
}

fn unknown(reference: &Reference, upstream: &str) -> Error {
    Error::new(
        Code::ManifestUnknown,
        format!("manifest {reference} is unknown here and to upstream {upstream}"),
    )
}

/// Looks up manifest `reference` of mirrored repository `repo`, from the cache or upstream.
pub async fn get(
    reg: &Registry,
    route: &Route,
    repo: &RepoName,
    reference: &Reference,
    with_body: bool,
) -> Result<ManifestContent> {
    let m = &route.mirror;
    let name = m.cfg.name.as_str();
    match reg.get_manifest(repo, reference, with_body).await {
        Ok(found) => {
            if let Reference::Tag(tag) = reference {
                let checked = reg.cached_tag_checked(repo, tag)?.unwrap_or(0);
                if now_secs().saturating_sub(checked) >= m.cfg.tag_ttl.as_secs() {
                    return revalidate(reg, route, repo, tag, found, with_body).await;
                }
            }
            metrics::hit(name, "manifest");
            m.pulls.note(repo.as_str(), &found.digest.to_string());
            Ok(found)
        }
        Err(e) if is_unknown(&e) => {
            metrics::miss(name, "manifest");
            let fetched = fetch(route, reference).await?;
            store(reg, route, repo, reference, fetched, with_body).await
        }
        Err(e) => Err(e),
    }
}

/// Fetches `reference` upstream, mapping failures to client errors.
async fn fetch(route: &Route, reference: &Reference) -> Result<Fetched> {
    let m = &route.mirror;
    match m.upstream.manifest(&route.upstream_name, reference).await {
        Ok(f) => Ok(f),
        Err(Failure::NotFound) => Err(unknown(reference, &m.cfg.upstream)),
        Err(Failure::Unavailable(why)) => {
            metrics::upstream_error(&m.cfg.name);
            tracing::warn!(target: "kura::mirror", mirror = %m.cfg.name, %reference, error = %why, "upstream failed");
            Err(m
                .upstream
                .unavailable(&m.cfg.name, &format!("manifest {reference}"), &why))
        }
    }
}

/// Records `fetched` in the cache (under the tag if `reference` is one) and returns it.
async fn store(
    reg: &Registry,
    route: &Route,
    repo: &RepoName,
    reference: &Reference,
    fetched: Fetched,
    with_body: bool,
) -> Result<ManifestContent> {
    let tag = match reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    reg.record_cached_manifest(
        repo,
        tag,
        &fetched.digest,
        Some(&fetched.media_type),
        fetched.bytes.clone(),
    )
    .await?;
    route.mirror.grew.notify_one();
    let size = fetched.bytes.len() as u64;
    Ok(ManifestContent {
        digest: fetched.digest,
        media_type: fetched.media_type,
        size,
        body: with_body.then_some(fetched.bytes),
    })
}

/// Checks cached tag `tag` (now `cached`) against the upstream.
async fn revalidate(
    reg: &Registry,
    route: &Route,
    repo: &RepoName,
    tag: &str,
    cached: ManifestContent,
    with_body: bool,
) -> Result<ManifestContent> {
    let m = &route.mirror;
    let name = m.cfg.name.as_str();
    let reference = Reference::Tag(tag.to_string());
    match m.upstream.tag_digest(&route.upstream_name, tag).await {
        Ok(d) if d == cached.digest => {
            metrics::revalidation(name, "unchanged");
            metrics::hit(name, "manifest");
            reg.confirm_cached_tag(repo, tag).await?;
            m.pulls.note(repo.as_str(), &cached.digest.to_string());
            Ok(cached)
        }
        Ok(d) => {
            metrics::revalidation(name, "changed");
            metrics::miss(name, "manifest");
            let fetched = moved_to(reg, route, repo, &d).await?;
            store(reg, route, repo, &reference, fetched, with_body).await
        }
        Err(Failure::NotFound) => {
            // Upstream deleted the tag: so does the cache.
            metrics::revalidation(name, "changed");
            reg.delete_cached_manifest(repo, &reference).await?;
            Err(unknown(&reference, &m.cfg.upstream))
        }
        Err(Failure::Unavailable(why)) => {
            metrics::revalidation(name, "error");
            metrics::upstream_error(name);
            metrics::hit(name, "manifest");
            tracing::warn!(target: "kura::mirror", mirror = %name, repository = %repo, %tag, error = %why,
                "upstream failed revalidating a tag; serving the cached manifest");
            m.pulls.note(repo.as_str(), &cached.digest.to_string());
            Ok(cached)
        }
    }
}

/// The manifest a moved tag now names: from the cache when that revision is there already.
async fn moved_to(reg: &Registry, route: &Route, repo: &RepoName, d: &Digest) -> Result<Fetched> {
    let by_digest = Reference::Digest(d.clone());
    match reg.get_manifest(repo, &by_digest, true).await {
        Ok(ManifestContent {
            digest,
            media_type,
            body: Some(bytes),
            ..
        }) => Ok(Fetched {
            digest,
            media_type,
            bytes,
        }),
        _ => fetch(route, &by_digest).await,
    }
}
