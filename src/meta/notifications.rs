//! The notification queue: (endpoint, sequence) → JSON event.

use super::WriteTables;
use super::rows::ReadTx;
use crate::error::Result;

/// Queues `event` for `endpoint` after its last queued event. Transactions are isolated as if
/// run one at a time, so sequence order is commit order; a number is reused only once every
/// event of the endpoint was delivered and removed.
pub fn push(t: &mut WriteTables<'_>, endpoint: &str, event: &[u8]) -> Result<()> {
    let seq = t.last_notification(endpoint)?.map_or(1, |s| s + 1);
    t.put_notification(endpoint, seq, event)
}

/// Up to `n` queued events of `endpoint`, oldest first.
pub fn pending(
    t: &(impl ReadTx + ?Sized),
    endpoint: &str,
    n: usize,
) -> Result<Vec<(u64, Vec<u8>)>> {
    t.notifications_page(endpoint, n)
}

/// How many events wait for `endpoint`.
pub fn queued(t: &(impl ReadTx + ?Sized), endpoint: &str) -> Result<u64> {
    t.notifications_queued(endpoint)
}

/// Removes delivered events.
pub fn remove(t: &mut WriteTables<'_>, endpoint: &str, seqs: &[u64]) -> Result<()> {
    for s in seqs {
        t.remove_notification(endpoint, *s)?;
    }
    Ok(())
}
