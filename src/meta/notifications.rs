//! The `notifications` table: (endpoint, sequence) → JSON event, the delivery queue.

use redb::ReadableTable;

use super::WriteTables;
use crate::error::Result;

type Key = (&'static str, u64);

/// Queues `event` for `endpoint` after its last queued event. Write transactions are
/// serialized, so sequence order is commit order; a number is reused only once every event of
/// the endpoint was delivered and removed.
pub fn push(t: &mut WriteTables<'_>, endpoint: &str, event: &[u8]) -> Result<()> {
    let seq = match t
        .notifications
        .range::<(&str, u64)>((endpoint, 0)..=(endpoint, u64::MAX))?
        .next_back()
    {
        Some(last) => last?.0.value().1 + 1,
        None => 1,
    };
    t.notifications.insert((endpoint, seq), event)?;
    Ok(())
}

/// Up to `n` queued events of `endpoint`, oldest first.
pub fn pending(
    t: &impl ReadableTable<Key, &'static [u8]>,
    endpoint: &str,
    n: usize,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    for item in t.range::<(&str, u64)>((endpoint, 0)..=(endpoint, u64::MAX))? {
        if out.len() == n {
            break;
        }
        let (k, v) = item?;
        out.push((k.value().1, v.value().to_vec()));
    }
    Ok(out)
}

/// Removes delivered events.
pub fn remove(t: &mut WriteTables<'_>, endpoint: &str, seqs: &[u64]) -> Result<()> {
    for s in seqs {
        t.notifications.remove((endpoint, *s))?;
    }
    Ok(())
}
