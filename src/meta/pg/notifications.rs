//! PostgreSQL: the `notifications` table.

use super::Tx;
use super::rows_util::{i, limit, u};
use crate::error::Result;
use crate::meta::rows::{NotificationsRead, NotificationsWrite};

impl NotificationsRead for &Tx<'_> {
    fn notifications_page(&self, endpoint: &str, n: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let rows = self.query(
            "SELECT seq, event FROM notifications WHERE endpoint = $1 ORDER BY seq LIMIT $2",
            &[&endpoint, &limit(n)],
        )?;
        Ok(rows.iter().map(|r| (u(r, 0), r.get(1))).collect())
    }

    fn last_notification(&self, endpoint: &str) -> Result<Option<u64>> {
        let r = self.query_one(
            "SELECT max(seq) FROM notifications WHERE endpoint = $1",
            &[&endpoint],
        )?;
        Ok(r.get::<_, Option<i64>>(0).map(|v| v as u64))
    }

    fn notifications_queued(&self, endpoint: &str) -> Result<u64> {
        let r = self.query_one(
            "SELECT count(*) FROM notifications WHERE endpoint = $1",
            &[&endpoint],
        )?;
        Ok(u(&r, 0))
    }
}

impl NotificationsWrite for &Tx<'_> {
    fn put_notification(&mut self, endpoint: &str, seq: u64, event: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO notifications (endpoint, seq, event) VALUES ($1, $2, $3) \
             ON CONFLICT (endpoint, seq) DO UPDATE SET event = EXCLUDED.event",
            &[&endpoint, &i(seq)?, &event],
        )?;
        Ok(())
    }

    fn remove_notification(&mut self, endpoint: &str, seq: u64) -> Result<()> {
        self.execute(
            "DELETE FROM notifications WHERE endpoint = $1 AND seq = $2",
            &[&endpoint, &i(seq)?],
        )?;
        Ok(())
    }
}
