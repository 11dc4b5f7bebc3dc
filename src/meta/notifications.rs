//! The `notifications` table: (endpoint, sequence) → JSON event, the delivery queue.

use redb::ReadableTable;

use super::WriteTables;
use crate::error::Result;

type Key = (&'static str, u64);

/// Queues `event` for `endpoint` at `seq`.
pub fn push(t: &mut WriteTables<'_>, endpoint: &str, seq: u64, event: &[u8]) -> Result<()> {
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

/// The highest sequence queued anywhere (0 when empty).
pub fn last_seq(t: &impl ReadableTable<Key, &'static [u8]>) -> Result<u64> {
    let mut max = 0;
    for item in t.iter()? {
        max = max.max(item?.0.value().1);
    }
    Ok(max)
}
