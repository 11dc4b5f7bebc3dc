//! redb: the quota tables `usage` and `scope_blobs`.

use redb::ReadableTable;

use super::{RedbWrite, collect, for_both};
use crate::error::Result;
use crate::meta::rows::{UsageRead, UsageWrite};

for_both!(UsageRead {
    fn usage(&self, scope: &str) -> Result<Option<u64>> {
        Ok(self.usage.get(scope)?.map(|v| v.value()))
    }

    fn usages(&self) -> Result<Vec<(String, u64)>> {
        collect(self.usage.range::<&str>(..)?, usize::MAX, |k, v| {
            Some((k.to_string(), v))
        })
    }

    fn scope_blob(&self, scope: &str, digest: &str) -> Result<Option<(u64, u64)>> {
        Ok(self.scope_blobs.get((scope, digest))?.map(|v| v.value()))
    }

    fn scope_blobs(&self, scope: Option<&str>) -> Result<Vec<(String, String, u64, u64)>> {
        collect(
            self.scope_blobs.range::<(&str, &str)>((scope.unwrap_or(""), "")..)?,
            usize::MAX,
            |(s, d), (held, size)| {
                scope
                    .is_none_or(|want| want == s)
                    .then(|| (s.to_string(), d.to_string(), held, size))
            },
        )
    }
});

impl UsageWrite for RedbWrite<'_> {
    fn put_usage(&mut self, scope: &str, bytes: u64) -> Result<()> {
        self.usage.insert(scope, bytes)?;
        Ok(())
    }

    fn remove_usage(&mut self, scope: &str) -> Result<()> {
        self.usage.remove(scope)?;
        Ok(())
    }

    fn put_scope_blob(&mut self, scope: &str, digest: &str, held: (u64, u64)) -> Result<()> {
        self.scope_blobs.insert((scope, digest), held)?;
        Ok(())
    }

    fn remove_scope_blob(&mut self, scope: &str, digest: &str) -> Result<()> {
        self.scope_blobs.remove((scope, digest))?;
        Ok(())
    }

    fn clear_usage(&mut self) -> Result<()> {
        self.usage.retain(|_, _| false)?;
        self.scope_blobs.retain(|_, _| false)?;
        Ok(())
    }
}
