//! PostgreSQL: the `manifests` table.

use super::Tx;
use super::rows_util::{limit, upper};
use crate::error::Result;
use crate::meta::rows::{ManifestLookup, ManifestsRead, ManifestsWrite};

impl ManifestsRead for &Tx<'_> {
    fn manifest(&self, repo: &str, digest: &str) -> Result<Option<Vec<u8>>> {
        let r = self.query_opt(
            "SELECT record FROM manifests WHERE repo = $1 AND digest = $2",
            &[&repo, &digest],
        )?;
        Ok(r.map(|r| r.get(0)))
    }

    fn manifest_lookup(
        &self,
        repo: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<ManifestLookup> {
        // One statement: the repository, the digest (given, else the tag's), its record.
        let r = self.query_one(
            "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = $1), d.digest,              (SELECT record FROM manifests WHERE repo = $1 AND digest = d.digest)              FROM (SELECT CASE WHEN $2::text IS NULL THEN $3::text              ELSE (SELECT digest FROM tags WHERE repo = $1 AND tag = $2::text) END AS digest) d",
            &[&repo, &tag, &digest],
        )?;
        Ok(ManifestLookup {
            repo: r.get(0),
            digest: r.get(1),
            record: r.get(2),
        })
    }

    fn manifests_page(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, Vec<u8>)>> {
        let (ar, ad) = after.unwrap_or(("", ""));
        let rows = self.query(
            "SELECT repo, digest, record FROM manifests WHERE repo >= $1 AND repo < $2 \
             AND (repo, digest) > ($3, $4) ORDER BY repo, digest LIMIT $5",
            &[&prefix, &upper(prefix), &ar, &ad, &limit(n)],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

impl ManifestsWrite for &Tx<'_> {
    fn put_manifest(&mut self, repo: &str, digest: &str, record: &[u8]) -> Result<bool> {
        // xmax = 0 only on a row this statement inserted (not one it updated).
        let r = self.query_one(
            "INSERT INTO manifests (repo, digest, record) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, digest) DO UPDATE SET record = EXCLUDED.record \
             RETURNING (xmax = 0)",
            &[&repo, &digest, &record],
        )?;
        Ok(r.get(0))
    }

    fn remove_manifest(&mut self, repo: &str, digest: &str) -> Result<Option<Vec<u8>>> {
        let r = self.query_opt(
            "DELETE FROM manifests WHERE repo = $1 AND digest = $2 RETURNING record",
            &[&repo, &digest],
        )?;
        Ok(r.map(|r| r.get(0)))
    }
}
