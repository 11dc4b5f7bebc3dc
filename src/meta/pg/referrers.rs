//! PostgreSQL: the `referrers` table.

use super::Tx;
use super::rows_util::limit;
use crate::error::Result;
use crate::meta::rows::{ReferrersRead, ReferrersWrite};

impl ReferrersRead for &Tx<'_> {
    fn referrers_page(
        &self,
        repo: &str,
        subject: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        let rows = match after {
            Some(a) => self.query(
                "SELECT referrer FROM referrers WHERE repo = $1 AND subject = $2 \
                 AND referrer > $3 ORDER BY referrer LIMIT $4",
                &[&repo, &subject, &a, &limit(n)],
            )?,
            None => self.query(
                "SELECT referrer FROM referrers WHERE repo = $1 AND subject = $2 \
                 ORDER BY referrer LIMIT $3",
                &[&repo, &subject, &limit(n)],
            )?,
        };
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn all_referrers_page(
        &self,
        after: Option<(&str, &str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = match after {
            Some((r, s, d)) => self.query(
                "SELECT repo, subject, referrer FROM referrers \
                 WHERE (repo, subject, referrer) > ($1, $2, $3) \
                 ORDER BY repo, subject, referrer LIMIT $4",
                &[&r, &s, &d, &limit(n)],
            )?,
            None => self.query(
                "SELECT repo, subject, referrer FROM referrers \
                 ORDER BY repo, subject, referrer LIMIT $1",
                &[&limit(n)],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

impl ReferrersWrite for &Tx<'_> {
    fn put_referrer(&mut self, repo: &str, subject: &str, referrer: &str) -> Result<()> {
        self.execute(
            "INSERT INTO referrers (repo, subject, referrer) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&repo, &subject, &referrer],
        )?;
        Ok(())
    }

    fn remove_referrer(&mut self, repo: &str, subject: &str, referrer: &str) -> Result<()> {
        self.execute(
            "DELETE FROM referrers WHERE repo = $1 AND subject = $2 AND referrer = $3",
            &[&repo, &subject, &referrer],
        )?;
        Ok(())
    }
}
