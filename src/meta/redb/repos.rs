//! redb: the `repositories` table, and the row counts redb keeps in each table's header.

use std::ops::Bound;

use redb::{ReadableTable, ReadableTableMetadata};

use super::{RedbWrite, collect_keys, for_both, has_prefix};
use crate::error::Result;
use crate::meta::rows::{Counts, ReposRead, ReposWrite};

for_both!(ReposRead {
    fn repo(&self, repo: &str) -> Result<Option<u64>> {
        Ok(self.repos.get(repo)?.map(|v| v.value()))
    }

    fn repos_page(&self, prefix: &str, after: Option<&str>, n: usize) -> Result<Vec<String>> {
        let start = match after {
            Some(l) if l >= prefix => Bound::Excluded(l),
            _ => Bound::Included(prefix),
        };
        collect_keys(self.repos.range::<&str>((start, Bound::Unbounded))?, n, |k| {
            has_prefix(k, prefix).then(|| k.to_string())
        })
    }

    fn counts(&self) -> Result<Counts> {
        Ok(Counts {
            repositories: self.repos.len()?,
            manifests: self.manifests.len()?,
            blobs: self.blobs.len()?,
            notifications: self.notifications.len()?,
        })
    }
});

impl ReposWrite for RedbWrite<'_> {
    fn put_repo(&mut self, repo: &str, created: u64) -> Result<()> {
        self.repos.insert(repo, created)?;
        Ok(())
    }

    fn remove_repo(&mut self, repo: &str) -> Result<bool> {
        Ok(self.repos.remove(repo)?.is_some())
    }
}
