//! PostgreSQL: the `mirror_pulls` table (a mirror's eviction order).

use super::Tx;
use super::rows_util::{i, u, upper};
use crate::error::Result;
use crate::meta::rows::{MirrorRead, MirrorWrite};

impl MirrorRead for &Tx<'_> {
    fn mirror_pull(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        let r = self.query_opt(
            "SELECT at FROM mirror_pulls WHERE repo = $1 AND digest = $2",
            &[&repo, &digest],
        )?;
        Ok(r.map(|r| u(&r, 0)))
    }

    fn mirror_pulls_under(&self, prefix: &str) -> Result<Vec<(String, String, u64)>> {
        let rows = self.query(
            "SELECT repo, digest, at FROM mirror_pulls WHERE repo >= $1 AND repo < $2 \
             ORDER BY repo, digest",
            &[&prefix, &upper(prefix)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), u(r, 2))).collect())
    }
}

impl MirrorWrite for &Tx<'_> {
    fn put_mirror_pull(&mut self, repo: &str, digest: &str, at: u64) -> Result<()> {
        self.execute(
            "INSERT INTO mirror_pulls (repo, digest, at) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, digest) DO UPDATE SET at = EXCLUDED.at",
            &[&repo, &digest, &i(at)?],
        )?;
        Ok(())
    }

    fn remove_mirror_pull(&mut self, repo: &str, digest: &str) -> Result<()> {
        self.execute(
            "DELETE FROM mirror_pulls WHERE repo = $1 AND digest = $2",
            &[&repo, &digest],
        )?;
        Ok(())
    }
}
