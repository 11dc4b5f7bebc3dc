//! Blobs through a mirror: served from the store when the repository has them, else fetched
//! upstream once (`flight`). A blob the store holds for another repository is linked to this
//! one once the upstream confirms it has it (content is addressed by digest, but a repository
//! only serves what its source vouches for).

use super::upstream::Failure;
use super::{Route, metrics};
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::names::RepoName;
use crate::registry::Registry;

pub use super::flight::Pulled;

/// The client error for an upstream that did not give blob `digest` (counted when it failed).
pub(super) fn failed(route: &Route, digest: &Digest, f: Failure) -> Error {
    let m = &route.mirror;
    match f {
        Failure::NotFound => Error::new(
            Code::BlobUnknown,
            format!(
                "blob {digest} is unknown here and to upstream {}",
                m.cfg.upstream
            ),
        ),
        Failure::Unavailable(why) => {
            metrics::upstream_error(&m.cfg.name);
            m.upstream
                .unavailable(&m.cfg.name, &format!("blob {digest}"), &why)
        }
    }
}

/// Asks the upstream for the size of `digest`, mapping failures to client errors.
async fn upstream_size(route: &Route, digest: &Digest) -> Result<u64> {
    route
        .mirror
        .upstream
        .blob_size(&route.upstream_name, digest)
        .await
        .map_err(|f| failed(route, digest, f))
}

/// Links a blob the store already holds to `repo` if upstream has it; true when linked.
async fn adopt(reg: &Registry, route: &Route, repo: &RepoName, digest: &Digest) -> Result<bool> {
    if reg.stored_blob_size(digest)?.is_none() {
        return Ok(false);
    }
    upstream_size(route, digest).await?;
    let linked = reg
        .link_recorded(repo.as_str(), &digest.to_string())
        .await?;
    if linked {
        route.mirror.pulls.note(repo.as_str(), &digest.to_string());
    }
    Ok(linked)
}

/// The size of blob `digest` of mirrored `repo` (`HEAD`): from the store, else upstream's
/// answer (nothing is fetched until a `GET`).
pub async fn head(reg: &Registry, route: &Route, repo: &RepoName, digest: &Digest) -> Result<u64> {
    match reg.stat_blob(repo, digest).await {
        Ok(n) => Ok(n),
        Err(e) if e.code == Code::BlobUnknown => {
            if adopt(reg, route, repo, digest).await? {
                return reg.stat_blob(repo, digest).await;
            }
            upstream_size(route, digest).await
        }
        Err(e) => Err(e),
    }
}

/// Makes blob `digest` of mirrored `repo` servable: `Local` when the store has it for `repo`
/// (now), else the bytes as they arrive from upstream (`stream`: the caller can take them).
pub async fn get(
    reg: &Registry,
    route: &Route,
    repo: &RepoName,
    digest: &Digest,
    stream: bool,
) -> Result<Pulled> {
    let name = route.mirror.cfg.name.as_str();
    if reg.blob_size(repo, digest).is_ok() {
        metrics::hit(name, "blob");
        route.mirror.pulls.note(repo.as_str(), &digest.to_string());
        return Ok(Pulled::Local);
    }
    metrics::miss(name, "blob");
    if adopt(reg, route, repo, digest).await? {
        return Ok(Pulled::Local);
    }
    super::flight::fetch(reg, route, repo, digest, stream).await
}
