//! redb: the `blobs` table and the link pair `repo_blobs` / `blob_links` (its reverse index).

use std::collections::BTreeSet;
use std::ops::Bound;

use redb::ReadableTable;

use super::{RedbWrite, collect, collect_keys, for_both, has_prefix};
use crate::error::Result;
use crate::meta::blobs::BlobRow;
use crate::meta::rows::{BlobsRead, BlobsWrite};

fn row((size, refs, touched): (u64, u64, u64)) -> BlobRow {
    BlobRow {
        size,
        refs,
        touched,
    }
}

for_both!(BlobsRead {
    fn blob(&self, digest: &str) -> Result<Option<BlobRow>> {
        Ok(self.blobs.get(digest)?.map(|v| row(v.value())))
    }

    fn blobs_page(&self, after: Option<&str>, n: usize) -> Result<Vec<(String, BlobRow)>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        collect(self.blobs.range::<&str>((start, Bound::Unbounded))?, n, |k, v| {
            Some((k.to_string(), row(v)))
        })
    }

    fn link(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        Ok(self.repo_blobs.get((repo, digest))?.map(|v| v.value()))
    }

    fn links_of(&self, digest: &str) -> Result<Vec<String>> {
        collect_keys(
            self.blob_links.range::<(&str, &str)>((digest, "")..)?, usize::MAX, |(d, repo)| (d == digest).then(|| repo.to_string()),
        )
    }

    fn links_page(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String)>> {
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Included((prefix, "")),
        };
        collect_keys(
            self.repo_blobs.range::<(&str, &str)>((start, Bound::Unbounded))?, n, |(r, d)| has_prefix(r, prefix).then(|| (r.to_string(), d.to_string())),
        )
    }

    fn asymmetric_links(&self) -> Result<Vec<(String, String)>> {
        let mut forward = BTreeSet::new();
        for e in self.repo_blobs.iter()? {
            let (k, _) = e?;
            let (r, d) = k.value();
            forward.insert((r.to_string(), d.to_string()));
        }
        let mut reverse = BTreeSet::new();
        for e in self.blob_links.iter()? {
            let (k, _) = e?;
            let (d, r) = k.value();
            reverse.insert((r.to_string(), d.to_string()));
        }
        Ok(forward.symmetric_difference(&reverse).cloned().collect())
    }
});

impl BlobsWrite for RedbWrite<'_> {
    fn put_blob(&mut self, digest: &str, r: BlobRow) -> Result<Option<BlobRow>> {
        Ok(self
            .blobs
            .insert(digest, (r.size, r.refs, r.touched))?
            .map(|v| row(v.value())))
    }

    fn remove_blob(&mut self, digest: &str) -> Result<Option<BlobRow>> {
        Ok(self.blobs.remove(digest)?.map(|v| row(v.value())))
    }

    fn put_link(&mut self, repo: &str, digest: &str, at: u64) -> Result<bool> {
        self.blob_links.insert((digest, repo), ())?;
        Ok(self.repo_blobs.insert((repo, digest), at)?.is_none())
    }

    fn remove_link(&mut self, repo: &str, digest: &str) -> Result<bool> {
        self.blob_links.remove((digest, repo))?;
        Ok(self.repo_blobs.remove((repo, digest))?.is_some())
    }
}
