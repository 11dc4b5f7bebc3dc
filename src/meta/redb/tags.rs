//! redb: the `tags` table and the per-tag times (`tag_pushes`, `tag_pulls`, `mirror_tags`).

use std::ops::Bound;

use redb::ReadableTable;

use super::{RedbWrite, collect, collect_keys, for_both};
use crate::error::Result;
use crate::meta::rows::{TagTime, TagsRead, TagsWrite};

for_both!(TagsRead {
    fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        Ok(self.tags.get((repo, tag))?.map(|v| v.value().to_string()))
    }

    fn tags_page(
        &self,
        repo: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, String)>> {
        let start = match after {
            Some(l) => Bound::Excluded((repo, l)),
            None => Bound::Included((repo, "")),
        };
        collect(
            self.tags.range::<(&str, &str)>((start, Bound::Unbounded))?,
            n,
            |(r, t), d| (r == repo).then(|| (t.to_string(), d.to_string())),
        )
    }

    fn tag_names_page(&self, repo: &str, after: Option<&str>, n: usize) -> Result<Vec<String>> {
        let start = match after {
            Some(l) => Bound::Excluded((repo, l)),
            None => Bound::Included((repo, "")),
        };
        collect_keys(
            self.tags.range::<(&str, &str)>((start, Bound::Unbounded))?, n, |(r, t)| (r == repo).then(|| t.to_string()),
        )
    }

    fn all_tags_page(
        &self,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        collect(
            self.tags.range::<(&str, &str)>((start, Bound::Unbounded))?,
            n,
            |(r, t), d| Some((r.to_string(), t.to_string(), d.to_string())),
        )
    }

    fn tag_time(&self, kind: TagTime, repo: &str, tag: &str) -> Result<Option<u64>> {
        let t = match kind {
            TagTime::Pushed => &self.tag_pushes,
            TagTime::Pulled => &self.tag_pulls,
            TagTime::Checked => &self.mirror_tags,
        };
        Ok(t.get((repo, tag))?.map(|v| v.value()))
    }
});

impl TagsWrite for RedbWrite<'_> {
    fn put_tag(&mut self, repo: &str, tag: &str, digest: &str) -> Result<Option<String>> {
        Ok(self
            .tags
            .insert((repo, tag), digest)?
            .map(|v| v.value().to_string()))
    }

    fn remove_tag(&mut self, repo: &str, tag: &str) -> Result<Option<String>> {
        Ok(self
            .tags
            .remove((repo, tag))?
            .map(|v| v.value().to_string()))
    }

    fn put_tag_time(&mut self, kind: TagTime, repo: &str, tag: &str, at: u64) -> Result<()> {
        match kind {
            TagTime::Pushed => self.tag_pushes.insert((repo, tag), at)?,
            TagTime::Pulled => self.tag_pulls.insert((repo, tag), at)?,
            TagTime::Checked => self.mirror_tags.insert((repo, tag), at)?,
        };
        Ok(())
    }

    fn remove_tag_time(&mut self, kind: TagTime, repo: &str, tag: &str) -> Result<()> {
        match kind {
            TagTime::Pushed => self.tag_pushes.remove((repo, tag))?,
            TagTime::Pulled => self.tag_pulls.remove((repo, tag))?,
            TagTime::Checked => self.mirror_tags.remove((repo, tag))?,
        };
        Ok(())
    }
}
