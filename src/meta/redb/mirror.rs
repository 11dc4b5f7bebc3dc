//! redb: the `mirror_pulls` table (a mirror's eviction order).

use redb::ReadableTable;

use super::{RedbWrite, collect, for_both, has_prefix};
use crate::error::Result;
use crate::meta::rows::{MirrorRead, MirrorWrite};

for_both!(MirrorRead {
    fn mirror_pull(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        Ok(self.mirror_pulls.get((repo, digest))?.map(|v| v.value()))
    }

    fn mirror_pulls_under(&self, prefix: &str) -> Result<Vec<(String, String, u64)>> {
        collect(
            self.mirror_pulls.range::<(&str, &str)>((prefix, "")..)?,
            usize::MAX,
            |(r, d), at| has_prefix(r, prefix).then(|| (r.to_string(), d.to_string(), at)),
        )
    }
});

impl MirrorWrite for RedbWrite<'_> {
    fn put_mirror_pull(&mut self, repo: &str, digest: &str, at: u64) -> Result<()> {
        self.mirror_pulls.insert((repo, digest), at)?;
        Ok(())
    }

    fn remove_mirror_pull(&mut self, repo: &str, digest: &str) -> Result<()> {
        self.mirror_pulls.remove((repo, digest))?;
        Ok(())
    }
}
