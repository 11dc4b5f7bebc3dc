//! The `referrers` table: (repository, subject, referrer) → ().

use std::ops::Bound;

use redb::ReadableTable;

use super::WriteTables;
use crate::error::Result;

type Key = (&'static str, &'static str, &'static str);

/// Records that `referrer` in `repo` has `subject`.
pub fn add(t: &mut WriteTables<'_>, repo: &str, subject: &str, referrer: &str) -> Result<()> {
    t.referrers.insert((repo, subject, referrer), ())?;
    Ok(())
}

/// Forgets that `referrer` has `subject`.
pub fn remove(t: &mut WriteTables<'_>, repo: &str, subject: &str, referrer: &str) -> Result<()> {
    t.referrers.remove((repo, subject, referrer))?;
    Ok(())
}

/// The digests of every manifest in `repo` whose subject is `subject`.
pub fn list(t: &impl ReadableTable<Key, ()>, repo: &str, subject: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in t.range::<(&str, &str, &str)>((repo, subject, "")..)? {
        let (k, _) = item?;
        let (r, s, referrer) = k.value();
        if r != repo || s != subject {
            break;
        }
        out.push(referrer.to_string());
    }
    Ok(out)
}

/// Calls `f` with the digests of the manifests in `repo` whose subject is `subject`, in order,
/// starting after `last`, until `f` returns false.
pub fn scan(
    t: &impl ReadableTable<Key, ()>,
    repo: &str,
    subject: &str,
    last: Option<&str>,
    mut f: impl FnMut(&str) -> Result<bool>,
) -> Result<()> {
    let start = match last {
        Some(l) => Bound::Excluded((repo, subject, l)),
        None => Bound::Included((repo, subject, "")),
    };
    for item in t.range::<(&str, &str, &str)>((start, Bound::Unbounded))? {
        let (k, _) = item?;
        let (r, s, referrer) = k.value();
        if r != repo || s != subject || !f(referrer)? {
            break;
        }
    }
    Ok(())
}
