//! PostgreSQL: the `blobs` table and the link pair `repo_blobs` / `blob_links`.

use tokio_postgres::Row;

use super::Tx;
use super::rows_util::{i, limit, u, upper};
use crate::error::Result;
use crate::meta::blobs::BlobRow;
use crate::meta::rows::{BlobsRead, BlobsWrite};

fn row(r: &Row, at: usize) -> BlobRow {
    BlobRow {
        size: u(r, at),
        refs: u(r, at + 1),
        touched: u(r, at + 2),
    }
}

impl BlobsRead for &Tx<'_> {
    fn blob(&self, digest: &str) -> Result<Option<BlobRow>> {
        let r = self.query_opt(
            "SELECT size, refs, touched FROM blobs WHERE digest = $1",
            &[&digest],
        )?;
        Ok(r.map(|r| row(&r, 0)))
    }

    fn blobs_page(&self, after: Option<&str>, n: usize) -> Result<Vec<(String, BlobRow)>> {
        let rows = self.query(
            "SELECT digest, size, refs, touched FROM blobs WHERE digest > $1 \
             ORDER BY digest LIMIT $2",
            &[&after.unwrap_or(""), &limit(n)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), row(r, 1))).collect())
    }

    fn link(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        let r = self.query_opt(
            "SELECT linked_at FROM repo_blobs WHERE repo = $1 AND digest = $2",
            &[&repo, &digest],
        )?;
        Ok(r.map(|r| u(&r, 0)))
    }

    fn links_of(&self, digest: &str) -> Result<Vec<String>> {
        let rows = self.query(
            "SELECT repo FROM blob_links WHERE digest = $1 ORDER BY repo",
            &[&digest],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn links_page(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String)>> {
        let (ar, ad) = after.unwrap_or(("", ""));
        let rows = self.query(
            "SELECT repo, digest FROM repo_blobs WHERE repo >= $1 AND repo < $2 \
             AND (repo, digest) > ($3, $4) ORDER BY repo, digest LIMIT $5",
            &[&prefix, &upper(prefix), &ar, &ad, &limit(n)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn asymmetric_links(&self) -> Result<Vec<(String, String)>> {
        let rows = self.query(
            "SELECT coalesce(f.repo, r.repo), coalesce(f.digest, r.digest) \
             FROM repo_blobs f FULL JOIN blob_links r ON f.repo = r.repo AND f.digest = r.digest \
             WHERE f.repo IS NULL OR r.repo IS NULL ORDER BY 1, 2",
            &[],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl BlobsWrite for &Tx<'_> {
    fn put_blob(&mut self, digest: &str, r: BlobRow) -> Result<Option<BlobRow>> {
        // One round trip: the row as it was before this statement (`old`, the statement's
        // snapshot, locked) and the upsert, which runs whether or not the query reads it.
        let old = self.query_opt(
            "WITH old AS (SELECT size, refs, touched FROM blobs WHERE digest = $1 FOR UPDATE), \
             put AS (INSERT INTO blobs (digest, size, refs, touched) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO UPDATE SET size = EXCLUDED.size, refs = EXCLUDED.refs, \
             touched = EXCLUDED.touched) \
             SELECT size, refs, touched FROM old",
            &[&digest, &i(r.size)?, &i(r.refs)?, &i(r.touched)?],
        )?;
        Ok(old.map(|r| row(&r, 0)))
    }

    fn remove_blob(&mut self, digest: &str) -> Result<Option<BlobRow>> {
        let r = self.query_opt(
            "DELETE FROM blobs WHERE digest = $1 RETURNING size, refs, touched",
            &[&digest],
        )?;
        Ok(r.map(|r| row(&r, 0)))
    }

    fn put_link(&mut self, repo: &str, digest: &str, at: u64) -> Result<bool> {
        self.execute(
            "INSERT INTO blob_links (digest, repo) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&digest, &repo],
        )?;
        let existed = self.link(repo, digest)?.is_some();
        self.execute(
            "INSERT INTO repo_blobs (repo, digest, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, digest) DO UPDATE SET linked_at = EXCLUDED.linked_at",
            &[&repo, &digest, &i(at)?],
        )?;
        Ok(!existed)
    }

    fn remove_link(&mut self, repo: &str, digest: &str) -> Result<bool> {
        self.execute(
            "DELETE FROM blob_links WHERE digest = $1 AND repo = $2",
            &[&digest, &repo],
        )?;
        Ok(self.execute(
            "DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2",
            &[&repo, &digest],
        )? > 0)
    }
}
