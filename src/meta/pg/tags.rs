//! PostgreSQL: the `tags` table and the per-tag times (`tag_pushes`, `tag_pulls`,
//! `mirror_tags`).

use super::Tx;
use super::rows_util::{i, limit, u};
use crate::error::Result;
use crate::meta::rows::{TagTime, TagsRead, TagsWrite};

/// The table holding the times of `kind` (a fixed name, never input).
fn times(kind: TagTime) -> &'static str {
    match kind {
        TagTime::Pushed => "tag_pushes",
        TagTime::Pulled => "tag_pulls",
        TagTime::Checked => "mirror_tags",
    }
}

impl TagsRead for &Tx<'_> {
    fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        let r = self.query_opt(
            "SELECT digest FROM tags WHERE repo = $1 AND tag = $2",
            &[&repo, &tag],
        )?;
        Ok(r.map(|r| r.get(0)))
    }

    fn tags_page(
        &self,
        repo: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, String)>> {
        let rows = match after {
            Some(a) => self.query(
                "SELECT tag, digest FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3",
                &[&repo, &a, &limit(n)],
            )?,
            None => self.query(
                "SELECT tag, digest FROM tags WHERE repo = $1 ORDER BY tag LIMIT $2",
                &[&repo, &limit(n)],
            )?,
        };
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn tag_names_page(&self, repo: &str, after: Option<&str>, n: usize) -> Result<Vec<String>> {
        let rows = self.query(
            "SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3",
            &[&repo, &after.unwrap_or(""), &limit(n)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn all_tags_page(
        &self,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = match after {
            Some((ar, at)) => self.query(
                "SELECT repo, tag, digest FROM tags WHERE (repo, tag) > ($1, $2) \
                 ORDER BY repo, tag LIMIT $3",
                &[&ar, &at, &limit(n)],
            )?,
            None => self.query(
                "SELECT repo, tag, digest FROM tags ORDER BY repo, tag LIMIT $1",
                &[&limit(n)],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn tag_time(&self, kind: TagTime, repo: &str, tag: &str) -> Result<Option<u64>> {
        let sql = format!(
            "SELECT at FROM {} WHERE repo = $1 AND tag = $2",
            times(kind)
        );
        Ok(self.query_opt(&sql, &[&repo, &tag])?.map(|r| u(&r, 0)))
    }
}

impl TagsWrite for &Tx<'_> {
    fn put_tag(&mut self, repo: &str, tag: &str, digest: &str) -> Result<Option<String>> {
        // One round trip: the digest before this statement (`old`, the statement's snapshot,
        // locked) and the upsert, which runs whether or not the query reads it.
        let old = self.query_opt(
            "WITH old AS (SELECT digest FROM tags WHERE repo = $1 AND tag = $2 FOR UPDATE), \
             put AS (INSERT INTO tags (repo, tag, digest) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, tag) DO UPDATE SET digest = EXCLUDED.digest) \
             SELECT digest FROM old",
            &[&repo, &tag, &digest],
        )?;
        Ok(old.map(|r| r.get(0)))
    }

    fn remove_tag(&mut self, repo: &str, tag: &str) -> Result<Option<String>> {
        let r = self.query_opt(
            "DELETE FROM tags WHERE repo = $1 AND tag = $2 RETURNING digest",
            &[&repo, &tag],
        )?;
        Ok(r.map(|r| r.get(0)))
    }

    fn put_tag_time(&mut self, kind: TagTime, repo: &str, tag: &str, at: u64) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (repo, tag, at) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, tag) DO UPDATE SET at = EXCLUDED.at",
            times(kind)
        );
        self.execute(&sql, &[&repo, &tag, &i(at)?])?;
        Ok(())
    }

    fn remove_tag_time(&mut self, kind: TagTime, repo: &str, tag: &str) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE repo = $1 AND tag = $2", times(kind));
        self.execute(&sql, &[&repo, &tag])?;
        Ok(())
    }
}
