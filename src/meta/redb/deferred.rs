//! redb: the `deferred_refs` table.

use std::ops::Bound;

use redb::ReadableTable;

use super::{RedbWrite, collect_keys, for_both};
use crate::error::Result;
use crate::meta::rows::{DeferredRead, DeferredWrite};

for_both!(DeferredRead {
    fn deferred_of(&self, digest: &str) -> Result<Vec<(String, String)>> {
        collect_keys(
            self.deferred_refs.range::<(&str, &str, &str)>((digest, "", "")..)?, usize::MAX, |(d, r, m)| (d == digest).then(|| (r.to_string(), m.to_string())),
        )
    }

    fn deferred_page(
        &self,
        after: Option<(&str, &str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        collect_keys(
            self.deferred_refs.range::<(&str, &str, &str)>((start, Bound::Unbounded))?, n, |(d, r, m)| Some((d.to_string(), r.to_string(), m.to_string())),
        )
    }
});

impl DeferredWrite for RedbWrite<'_> {
    fn put_deferred(&mut self, digest: &str, repo: &str, manifest: &str) -> Result<()> {
        self.deferred_refs.insert((digest, repo, manifest), ())?;
        Ok(())
    }

    fn remove_deferred(&mut self, digest: &str, repo: &str, manifest: &str) -> Result<bool> {
        Ok(self
            .deferred_refs
            .remove((digest, repo, manifest))?
            .is_some())
    }
}
