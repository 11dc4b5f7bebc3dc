//! The buffers uploads gather bytes in before writing them, under one memory budget shared by
//! every upload of the process.
//!
//! A block is `LARGE` while the blocks alive together stay within `BUDGET`, else `SMALL`: one
//! push streams in large blocks (fewer hand-offs to the writer), and many concurrent pushes
//! share the budget instead of each holding two large blocks (32 pushes held 64 MiB that way).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A block while the budget allows.
pub const LARGE: usize = 1024 * 1024;

/// A block once the budget is spent.
pub const SMALL: usize = 64 * 1024;

/// Bytes of large blocks alive at once, across all uploads.
pub const BUDGET: usize = 16 * LARGE;

/// Bytes of blocks alive now.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// An empty buffer of `size()` bytes, accounted in the budget until dropped.
pub struct Block {
    data: Vec<u8>,
    size: usize,
}

impl Block {
    /// A `LARGE` block if the budget has room for it, else a `SMALL` one.
    pub fn new() -> Block {
        let before = IN_USE.fetch_add(LARGE, Ordering::Relaxed);
        let size = if before + LARGE <= BUDGET {
            LARGE
        } else {
            IN_USE.fetch_sub(LARGE - SMALL, Ordering::Relaxed);
            SMALL
        };
        Block {
            data: Vec::with_capacity(size),
            size,
        }
    }

    /// The bytes the block holds when full.
    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Room left before the block is full.
    pub fn room(&self) -> usize {
        self.size - self.data.len()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        IN_USE.fetch_sub(self.size, Ordering::Relaxed);
    }
}

impl Deref for Block {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.data
    }
}

impl DerefMut for Block {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }
}

/// Bytes of blocks alive now.
#[cfg(test)]
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_beyond_the_budget_are_small_and_dropping_them_frees_the_budget() {
        // Other tests in this process may hold blocks: count from what is in use now.
        let start = in_use();
        let mut held = Vec::new();
        while in_use() + LARGE <= BUDGET {
            held.push(Block::new());
        }
        let small = Block::new();
        assert_eq!(small.size(), SMALL);
        assert!(in_use() <= BUDGET + SMALL);
        drop(small);
        drop(held);
        assert!(in_use() <= start);
    }
}
