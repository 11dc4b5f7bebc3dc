//! The buffers blob reads land in, kept for the next read once the socket has taken them.
//!
//! A pull allocated, zeroed and page-faulted a fresh 1 MiB buffer per read; on a VM whose free
//! memory goes back to the host each fault is slow (8% of a pull's CPU was the faults and the
//! zeroing). A returned buffer keeps its length, so a reused one is not zeroed again: every
//! read overwrites the bytes it hands out.

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept for reuse (a pull has two reads in flight).
const KEEP: usize = 8;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of exactly `n` initialised bytes, reused when one is free.
pub fn take(n: usize) -> Vec<u8> {
    let reused = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut buf = reused.unwrap_or_default();
    // Grows (zeroing only the growth) or shrinks to `n` bytes.
    buf.resize(n, 0);
    buf
}

/// The filled buffer as `Bytes`; it goes back to the pool when the last clone is dropped.
pub fn into_bytes(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(buf))
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < KEEP {
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_and_sized_to_the_next_read() {
        let mut a = take(1024);
        a.fill(7);
        let ptr = a.as_ptr();
        drop(into_bytes(a));
        let b = take(512);
        assert_eq!(b.len(), 512);
        // Reused (this test's thread is the only user of the pool in its process).
        assert_eq!(b.as_ptr(), ptr);
    }
}
