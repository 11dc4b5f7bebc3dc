//! The size budget of a mirror (`max_bytes`): when the content cached under its prefix
//! outgrows it, the least recently pulled items go first, one at a time until it fits — a manifest revision with its tags,
//! or a repository's link to a blob — and a blob left with no reference and no link anywhere
//! is deleted at once (the collector's protocol: row removed in a transaction that re-checks
//! it, then the file under the digest's lock unless a writer recorded it again). Content a
//! repository outside the mirror links or references is never freed.

use crate::policy::immutable::ImmutableTags;
use std::collections::{BTreeMap, BTreeSet};

use super::{Mirror, metrics};
use crate::digest::Digest;
use crate::error::Result;
use crate::meta::{blobs, manifests, mirror};
use crate::registry::Registry;

/// Items evicted per upkeep pass, at most (each is one transaction and one measurement).
const MAX_PER_PASS: usize = 10_000;

/// Bytes of the distinct blobs and manifests cached under `prefix`: linked to a repository
/// there, a revision there, or named by one.
fn usage(reg: &Registry, prefix: &str) -> Result<u64> {
    reg.meta().read(|t| {
        let mut digests = BTreeSet::new();
        blobs::scan_links(t, prefix, |_, d| {
            digests.insert(d.to_string());
            Ok(true)
        })?;
        manifests::scan(t, prefix, |_, d, rec| {
            digests.insert(d.to_string());
            digests.extend(rec.blobs.into_iter().chain(rec.manifests));
            Ok(true)
        })?;
        let mut total = 0;
        for d in &digests {
            total += blobs::get(t, d)?.map_or(0, |r| r.size);
        }
        Ok(total)
    })
}

/// Evicts from `m` until its cached bytes fit its budget; updates the gauge.
pub async fn keep_budget(reg: &Registry, m: &Mirror) -> Result<()> {
    let (reg, prefix, max, name) = (
        reg.clone(),
        m.cfg.prefix.clone(),
        m.cfg.max_bytes,
        m.cfg.name.clone(),
    );
    tokio::task::spawn_blocking(move || evict(&reg, &prefix, max, &name))
        .await
        .map_err(|e| crate::error::Error::internal("eviction task", e))?
}

fn evict(reg: &Registry, prefix: &str, max: u64, name: &str) -> Result<()> {
    let mut used = usage(reg, prefix)?;
    if max > 0 && used > max {
        let mut order = reg.meta().read(|t| mirror::pulls_under(t, prefix))?;
        order.sort_by_key(|(_, _, at)| *at);
        // One item at a time, measured after each: what an item frees depends on the rest
        // (a blob link frees nothing while a cached manifest names the blob; a manifest frees
        // the blobs only it kept), so no estimate taken beforehand is right both ways.
        for item in order.iter().take(MAX_PER_PASS) {
            let (evicted, freed) = evict_batch(reg, std::slice::from_ref(item))?;
            metrics::evicted(name, evicted);
            for chunk in freed.chunks(100) {
                crate::gc::blobs::remove_unless_recorded(reg, chunk)?;
            }
            used = usage(reg, prefix)?;
            if used <= max {
                break;
            }
        }
    }
    metrics::cached_bytes(name, used);
    Ok(())
}

/// Evicts `batch` in one transaction; returns how many items went and the blobs whose rows
/// were removed (their files are deleted after the commit).
fn evict_batch(reg: &Registry, batch: &[(String, String, u64)]) -> Result<(u64, Vec<Digest>)> {
    reg.meta().write(|t| {
        let mut evicted = 0;
        // Blobs that may have lost their last reference or link.
        let mut touched: BTreeMap<String, ()> = BTreeMap::new();
        for (repo, d, _) in batch {
            if let Some(rec) = crate::meta::manifests::get(t, repo, d)? {
                crate::registry::remove_revision(t, &ImmutableTags::NONE, repo, d)?;
                touched.insert(d.clone(), ());
                for r in rec.blobs.iter().chain(&rec.manifests) {
                    touched.insert(r.clone(), ());
                }
                evicted += 1;
            } else if blobs::unlink(t, repo, d)? {
                touched.insert(d.clone(), ());
                evicted += 1;
            }
            mirror::forget_pulled(t, repo, d)?;
        }
        let mut freed = Vec::new();
        for d in touched.keys() {
            let Some(row) = blobs::get(t, d)? else {
                continue;
            };
            if row.refs == 0 && blobs::links_of(t, d)?.is_empty() {
                blobs::remove(t, d)?;
                freed.push(d.parse::<Digest>()?);
            }
        }
        Ok((evicted, freed))
    })
}
