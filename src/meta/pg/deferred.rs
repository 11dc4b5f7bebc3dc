//! PostgreSQL: the `deferred_refs` table.

use super::Tx;
use super::rows_util::limit;
use crate::error::Result;
use crate::meta::rows::{DeferredRead, DeferredWrite};

impl DeferredRead for &Tx<'_> {
    fn deferred_of(&self, digest: &str) -> Result<Vec<(String, String)>> {
        let rows = self.query(
            "SELECT repo, manifest FROM deferred_refs WHERE digest = $1 ORDER BY repo, manifest",
            &[&digest],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn deferred_page(
        &self,
        after: Option<(&str, &str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = match after {
            Some((d, r, m)) => self.query(
                "SELECT digest, repo, manifest FROM deferred_refs \
                 WHERE (digest, repo, manifest) > ($1, $2, $3) \
                 ORDER BY digest, repo, manifest LIMIT $4",
                &[&d, &r, &m, &limit(n)],
            )?,
            None => self.query(
                "SELECT digest, repo, manifest FROM deferred_refs \
                 ORDER BY digest, repo, manifest LIMIT $1",
                &[&limit(n)],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

impl DeferredWrite for &Tx<'_> {
    fn put_deferred(&mut self, digest: &str, repo: &str, manifest: &str) -> Result<()> {
        self.execute(
            "INSERT INTO deferred_refs (digest, repo, manifest) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&digest, &repo, &manifest],
        )?;
        Ok(())
    }

    fn remove_deferred(&mut self, digest: &str, repo: &str, manifest: &str) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM deferred_refs WHERE digest = $1 AND repo = $2 AND manifest = $3",
            &[&digest, &repo, &manifest],
        )? > 0)
    }
}
