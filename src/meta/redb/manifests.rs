//! redb: the `manifests` table.

use std::ops::Bound;

use redb::ReadableTable;

use super::{RedbWrite, collect, for_both, has_prefix};
use crate::error::Result;
use crate::meta::rows::{ManifestLookup, ManifestsRead, ManifestsWrite};

for_both!(ManifestsRead {
    fn manifest(&self, repo: &str, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.manifests.get((repo, digest))?.map(|v| v.value().to_vec()))
    }

    fn manifest_lookup(
        &self,
        repo: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<ManifestLookup> {
        let known = self.repos.get(repo)?.is_some();
        let digest = match (tag, digest) {
            (Some(tag), _) => self.tags.get((repo, tag))?.map(|v| v.value().to_string()),
            (None, d) => d.map(str::to_string),
        };
        let record = match &digest {
            Some(d) => self.manifest(repo, d)?,
            None => None,
        };
        Ok(ManifestLookup {
            repo: known,
            digest,
            record,
        })
    }

    fn manifests_page(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, Vec<u8>)>> {
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Included((prefix, "")),
        };
        collect(
            self.manifests.range::<(&str, &str)>((start, Bound::Unbounded))?,
            n,
            |(r, d), v| {
                has_prefix(r, prefix)
                    .then(|| (r.to_string(), d.to_string(), v.to_vec()))
            },
        )
    }
});

impl ManifestsWrite for RedbWrite<'_> {
    fn put_manifest(&mut self, repo: &str, digest: &str, record: &[u8]) -> Result<bool> {
        Ok(self.manifests.insert((repo, digest), record)?.is_none())
    }

    fn remove_manifest(&mut self, repo: &str, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .manifests
            .remove((repo, digest))?
            .map(|v| v.value().to_vec()))
    }
}
