//! redb: the `notifications` table.

use redb::ReadableTable;

use super::{RedbWrite, collect, for_both};
use crate::error::Result;
use crate::meta::rows::{NotificationsRead, NotificationsWrite};

for_both!(NotificationsRead {
    fn notifications_page(&self, endpoint: &str, n: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        collect(
            self.notifications
                .range::<(&str, u64)>((endpoint, 0)..=(endpoint, u64::MAX))?,
            n,
            |(_, seq), v| Some((seq, v.to_vec())),
        )
    }

    fn last_notification(&self, endpoint: &str) -> Result<Option<u64>> {
        match self
            .notifications
            .range::<(&str, u64)>((endpoint, 0)..=(endpoint, u64::MAX))?
            .next_back()
        {
            Some(last) => Ok(Some(last?.0.value().1)),
            None => Ok(None),
        }
    }

    fn notifications_queued(&self, endpoint: &str) -> Result<u64> {
        Ok(self
            .notifications
            .range::<(&str, u64)>((endpoint, 0)..=(endpoint, u64::MAX))?
            .count() as u64)
    }
});

impl NotificationsWrite for RedbWrite<'_> {
    fn put_notification(&mut self, endpoint: &str, seq: u64, event: &[u8]) -> Result<()> {
        self.notifications.insert((endpoint, seq), event)?;
        Ok(())
    }

    fn remove_notification(&mut self, endpoint: &str, seq: u64) -> Result<()> {
        self.notifications.remove((endpoint, seq))?;
        Ok(())
    }
}
