//! Manifest revisions: (repository, digest) → `ManifestRecord`.

use super::rows::ReadTx;
use super::{ManifestRecord, WriteTables, usage};
use crate::digest::Digest;
use crate::error::Result;
use crate::names::Reference;

/// The revision `digest` of `repo`.
pub fn get(t: &(impl ReadTx + ?Sized), repo: &str, digest: &str) -> Result<Option<ManifestRecord>> {
    match t.manifest(repo, digest)? {
        Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        None => Ok(None),
    }
}

/// What a request for a manifest finds in one repository (`lookup`). Returned once per
/// request and matched at once, so the large variant is not boxed.
#[allow(clippy::large_enum_variant)]
pub enum Found {
    /// The repository does not exist.
    NoRepository,
    /// The repository exists; the tag, or the revision, does not.
    NoManifest,
    /// The revision the reference names, and its record.
    Manifest(Digest, ManifestRecord),
}

/// What a request for `reference` of `repo` finds, in one lookup (a pull's hot path).
pub fn lookup(t: &(impl ReadTx + ?Sized), repo: &str, reference: &Reference) -> Result<Found> {
    let l = match reference {
        Reference::Tag(tag) => t.manifest_lookup(repo, Some(tag), None)?,
        Reference::Digest(d) => t.manifest_lookup(repo, None, Some(&d.to_string()))?,
    };
    if !l.repo {
        return Ok(Found::NoRepository);
    }
    let (Some(d), Some(record)) = (l.digest, l.record) else {
        return Ok(Found::NoManifest);
    };
    // A digest reference is already parsed; only a tag's digest is read from the row.
    let digest = match reference {
        Reference::Digest(given) => given.clone(),
        Reference::Tag(_) => d.parse()?,
    };
    Ok(Found::Manifest(digest, serde_json::from_slice(&record)?))
}

/// True when `repo` has revision `digest`.
pub fn exists(t: &(impl ReadTx + ?Sized), repo: &str, digest: &str) -> Result<bool> {
    Ok(t.manifest(repo, digest)?.is_some())
}

/// Stores a revision (or updates its record); a new one counts toward the repository's usage.
pub fn insert(
    t: &mut WriteTables<'_>,
    repo: &str,
    digest: &str,
    rec: &ManifestRecord,
) -> Result<()> {
    let bytes = serde_json::to_vec(rec)?;
    if t.put_manifest(repo, digest, &bytes)? {
        let size = usage::size_of(t, digest, rec.size)?;
        usage::hold(t, repo, digest, size)?;
    }
    Ok(())
}

/// Removes a revision, returning it.
pub fn remove(t: &mut WriteTables<'_>, repo: &str, digest: &str) -> Result<Option<ManifestRecord>> {
    let rec: Option<ManifestRecord> = match t.remove_manifest(repo, digest)? {
        Some(v) => Some(serde_json::from_slice(&v)?),
        None => None,
    };
    if rec.is_some() {
        usage::release(t, repo, digest)?;
    }
    Ok(rec)
}

/// How many revisions `manifests_page` reads at a time.
const PAGE: usize = 256;

/// Calls `f` with every revision (repository, digest, record) of repositories starting with
/// `prefix`, in order, until `f` returns false.
pub fn scan(
    t: &(impl ReadTx + ?Sized),
    prefix: &str,
    mut f: impl FnMut(&str, &str, ManifestRecord) -> Result<bool>,
) -> Result<()> {
    super::paging::each(
        None,
        PAGE,
        |after: Option<&(String, String)>, n| {
            t.manifests_page(prefix, after.map(|(r, d)| (r.as_str(), d.as_str())), n)
        },
        |(r, d, _)| (r.clone(), d.clone()),
        |(r, d, v)| f(&r, &d, serde_json::from_slice(&v)?),
    )
}

/// Every revision (digest, record) of `repo` itself, in digest order.
pub fn of_repo(t: &(impl ReadTx + ?Sized), repo: &str) -> Result<Vec<(String, ManifestRecord)>> {
    let mut out = Vec::new();
    // The rows of `repo` come first among those of names starting with it.
    scan(t, repo, |r, d, rec| {
        if r != repo {
            return Ok(false);
        }
        out.push((d.to_string(), rec));
        Ok(true)
    })?;
    Ok(out)
}
