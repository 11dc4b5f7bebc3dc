//! redb: the `referrers` table.

use std::ops::Bound;

use redb::ReadableTable;

use super::{RedbWrite, collect_keys, for_both};
use crate::error::Result;
use crate::meta::rows::{ReferrersRead, ReferrersWrite};

for_both!(ReferrersRead {
    fn referrers_page(
        &self,
        repo: &str,
        subject: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        let start = match after {
            Some(l) => Bound::Excluded((repo, subject, l)),
            None => Bound::Included((repo, subject, "")),
        };
        collect_keys(
            self.referrers.range::<(&str, &str, &str)>((start, Bound::Unbounded))?, n, |(r, s, d)| (r == repo && s == subject).then(|| d.to_string()),
        )
    }

    fn all_referrers_page(
        &self,
        after: Option<(&str, &str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        collect_keys(
            self.referrers.range::<(&str, &str, &str)>((start, Bound::Unbounded))?, n, |(r, s, d)| Some((r.to_string(), s.to_string(), d.to_string())),
        )
    }
});

impl ReferrersWrite for RedbWrite<'_> {
    fn put_referrer(&mut self, repo: &str, subject: &str, referrer: &str) -> Result<()> {
        self.referrers.insert((repo, subject, referrer), ())?;
        Ok(())
    }

    fn remove_referrer(&mut self, repo: &str, subject: &str, referrer: &str) -> Result<()> {
        self.referrers.remove((repo, subject, referrer))?;
        Ok(())
    }
}
