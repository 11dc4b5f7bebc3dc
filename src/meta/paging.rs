//! Walking a `*_page` row operation (`rows.rs`) to its end: the one loop every scan and
//! `everything` listing of `src/meta` shares.

use crate::error::Result;

/// Calls `f` with every item of successive pages, in order, until `f` returns false or the
/// rows end. `page(after, n)` reads up to `n` items after the key `after` (none: from the
/// start); each next page starts after `key` of the previous page's last item, and a page
/// shorter than `n` is the last one.
pub(super) fn each<T, K>(
    mut after: Option<K>,
    n: usize,
    mut page: impl FnMut(Option<&K>, usize) -> Result<Vec<T>>,
    key: impl Fn(&T) -> K,
    mut f: impl FnMut(T) -> Result<bool>,
) -> Result<()> {
    loop {
        let items = page(after.as_ref(), n)?;
        let full = items.len() >= n;
        let Some(last) = items.last().map(&key) else {
            return Ok(());
        };
        for item in items {
            if !f(item)? {
                return Ok(());
            }
        }
        if !full {
            return Ok(());
        }
        after = Some(last);
    }
}

/// Every item of the pages, in order (see `each`).
pub(super) fn all<T, K>(
    n: usize,
    page: impl FnMut(Option<&K>, usize) -> Result<Vec<T>>,
    key: impl Fn(&T) -> K,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    each(None, n, page, key, |item| {
        out.push(item);
        Ok(true)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `rows` after a key, as the row operations read them.
    fn pages(rows: &[u32]) -> impl FnMut(Option<&u32>, usize) -> Result<Vec<u32>> + '_ {
        |after, n| {
            Ok(rows
                .iter()
                .copied()
                .filter(|r| after.is_none_or(|a| r > a))
                .take(n)
                .collect())
        }
    }

    #[test]
    fn every_row_comes_once_in_order_whatever_the_page_size() {
        let rows: Vec<u32> = (1..=10).collect();
        for n in 1..=12 {
            assert_eq!(all(n, pages(&rows), |r| *r).unwrap(), rows, "page size {n}");
        }
        assert!(all(3, pages(&[]), |r| *r).unwrap().is_empty());
    }

    #[test]
    fn a_scan_starts_after_its_key_and_stops_when_told() {
        let rows: Vec<u32> = (1..=10).collect();
        let mut seen = Vec::new();
        each(
            Some(4),
            2,
            pages(&rows),
            |r| *r,
            |r| {
                seen.push(r);
                Ok(r < 7)
            },
        )
        .unwrap();
        assert_eq!(seen, vec![5, 6, 7]);
    }

    #[test]
    fn a_short_page_ends_the_scan_without_another_read() {
        let rows: Vec<u32> = (1..=5).collect();
        let mut reads = 0;
        let mut inner = pages(&rows);
        let got = all(
            3,
            |after, n| {
                reads += 1;
                inner(after, n)
            },
            |r| *r,
        )
        .unwrap();
        assert_eq!(got, rows);
        assert_eq!(reads, 2, "a full page then a short one");
    }
}
