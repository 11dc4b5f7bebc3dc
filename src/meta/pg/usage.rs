//! PostgreSQL: the quota tables `usage` and `scope_blobs`.

use super::Tx;
use super::rows_util::{i, u};
use crate::error::Result;
use crate::meta::rows::{UsageRead, UsageWrite};

impl UsageRead for &Tx<'_> {
    fn usage(&self, scope: &str) -> Result<Option<u64>> {
        let r = self.query_opt("SELECT bytes FROM usage WHERE scope = $1", &[&scope])?;
        Ok(r.map(|r| u(&r, 0)))
    }

    fn usages(&self) -> Result<Vec<(String, u64)>> {
        let rows = self.query("SELECT scope, bytes FROM usage ORDER BY scope", &[])?;
        Ok(rows.iter().map(|r| (r.get(0), u(r, 1))).collect())
    }

    fn scope_blob(&self, scope: &str, digest: &str) -> Result<Option<(u64, u64)>> {
        let r = self.query_opt(
            "SELECT holdings, size FROM scope_blobs WHERE scope = $1 AND digest = $2",
            &[&scope, &digest],
        )?;
        Ok(r.map(|r| (u(&r, 0), u(&r, 1))))
    }

    fn scope_blobs(&self, scope: Option<&str>) -> Result<Vec<(String, String, u64, u64)>> {
        let rows = match scope {
            Some(s) => self.query(
                "SELECT scope, digest, holdings, size FROM scope_blobs WHERE scope = $1 \
                 ORDER BY digest",
                &[&s],
            )?,
            None => self.query(
                "SELECT scope, digest, holdings, size FROM scope_blobs ORDER BY scope, digest",
                &[],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), u(r, 2), u(r, 3)))
            .collect())
    }
}

impl UsageWrite for &Tx<'_> {
    fn put_usage(&mut self, scope: &str, bytes: u64) -> Result<()> {
        self.execute(
            "INSERT INTO usage (scope, bytes) VALUES ($1, $2) \
             ON CONFLICT (scope) DO UPDATE SET bytes = EXCLUDED.bytes",
            &[&scope, &i(bytes)?],
        )?;
        Ok(())
    }

    fn remove_usage(&mut self, scope: &str) -> Result<()> {
        self.execute("DELETE FROM usage WHERE scope = $1", &[&scope])?;
        Ok(())
    }

    fn put_scope_blob(&mut self, scope: &str, digest: &str, held: (u64, u64)) -> Result<()> {
        self.execute(
            "INSERT INTO scope_blobs (scope, digest, holdings, size) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, digest) DO UPDATE SET holdings = EXCLUDED.holdings, \
             size = EXCLUDED.size",
            &[&scope, &digest, &i(held.0)?, &i(held.1)?],
        )?;
        Ok(())
    }

    fn remove_scope_blob(&mut self, scope: &str, digest: &str) -> Result<()> {
        self.execute(
            "DELETE FROM scope_blobs WHERE scope = $1 AND digest = $2",
            &[&scope, &digest],
        )?;
        Ok(())
    }

    fn clear_usage(&mut self) -> Result<()> {
        self.execute("DELETE FROM scope_blobs", &[])?;
        self.execute("DELETE FROM usage", &[])?;
        Ok(())
    }
}
