//! PostgreSQL: the `repositories` table, and the row counts.

use super::Tx;
use super::rows_util::{i, limit, u, upper};
use crate::error::Result;
use crate::meta::rows::{Counts, ReposRead, ReposWrite};

impl ReposRead for &Tx<'_> {
    fn repo(&self, repo: &str) -> Result<Option<u64>> {
        let row = self.query_opt("SELECT created FROM repositories WHERE name = $1", &[&repo])?;
        Ok(row.map(|r| u(&r, 0)))
    }

    fn repos_page(&self, prefix: &str, after: Option<&str>, n: usize) -> Result<Vec<String>> {
        let from = match after {
            Some(a) if a >= prefix => a,
            _ => "",
        };
        let rows = self.query(
            "SELECT name FROM repositories WHERE name >= $1 AND name < $2 AND name > $3 \
             ORDER BY name LIMIT $4",
            &[&prefix, &upper(prefix), &from, &limit(n)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn counts(&self) -> Result<Counts> {
        // Exact counts (a cluster is sized for this; the gauges are refreshed on scrape).
        let r = self.query_one(
            "SELECT (SELECT count(*) FROM repositories), (SELECT count(*) FROM manifests), \
             (SELECT count(*) FROM blobs), (SELECT count(*) FROM notifications)",
            &[],
        )?;
        Ok(Counts {
            repositories: u(&r, 0),
            manifests: u(&r, 1),
            blobs: u(&r, 2),
            notifications: u(&r, 3),
        })
    }
}

impl ReposWrite for &Tx<'_> {
    fn put_repo(&mut self, repo: &str, created: u64) -> Result<()> {
        self.execute(
            "INSERT INTO repositories (name, created) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET created = EXCLUDED.created",
            &[&repo, &i(created)?],
        )?;
        Ok(())
    }

    fn remove_repo(&mut self, repo: &str) -> Result<bool> {
        Ok(self.execute("DELETE FROM repositories WHERE name = $1", &[&repo])? > 0)
    }
}
