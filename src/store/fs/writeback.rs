//! Streaming a large file to disk without filling the page cache with it.
//!
//! An upload is written in blocks. As soon as a block is written its writeback is started
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), and everything before it (in practice the block
//! before, whose writeback was started one block earlier) is waited for and dropped from the
//! page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`). The range dropped always starts at 0:
//! the kernel drops only the page-cache folios that lie wholly inside the range, and folios
//! can be larger than a page and straddle the blocks. So the disk works while the next block is received
//! and hashed, the closing fsync finds at most two blocks still dirty, and an upload holds at
//! most two blocks of page cache however large it is: a big push neither evicts what pulls
//! are reading nor makes the kernel find fresh memory for every page it writes (on a VM whose
//! free memory goes back to the host, that made buffered writes 3-5x slower than the disk).
//!
//! Both calls are hints: durability still comes from the fsync before the blob is published,
//! and an error here (a filesystem without `sync_file_range`) changes nothing but speed.

use std::fs::File;

/// A byte range of a file: offset and length.
pub type Span = (u64, u64);

/// Called after `written` was written to `file`: starts its writeback, then waits for the
/// writeback of everything before it and drops that from the page cache.
pub fn stream(file: &File, written: Span) {
    imp::sync_range(file, written, false);
    if written.0 > 0 {
        let before = (0, written.0);
        imp::sync_range(file, before, true);
        imp::dont_need(file, before);
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::File;
    use std::os::fd::AsRawFd;

    use super::Span;

    pub fn sync_range(file: &File, (off, len): Span, wait: bool) {
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        // SAFETY: a valid descriptor owned by `file`; the call reads no memory of ours.
        unsafe { libc::sync_file_range(file.as_raw_fd(), off as i64, len as i64, flags) };
    }

    pub fn dont_need(file: &File, (off, len): Span) {
        // SAFETY: as above.
        unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                off as i64,
                len as i64,
                libc::POSIX_FADV_DONTNEED,
            )
        };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::fs::File;

    use super::Span;

    pub fn sync_range(_: &File, _: Span, _: bool) {}

    pub fn dont_need(_: &File, _: Span) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    /// Bytes of `file` resident in the page cache (`mincore` over a mapping of it).
    fn resident(file: &File, len: usize) -> usize {
        let page = 4096;
        // SAFETY: a read-only shared mapping of `len` bytes of an open file, unmapped below;
        // `mincore` writes one byte per page into a vector of that many bytes.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mut v = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, v.as_mut_ptr()), 0);
            libc::munmap(map, len);
            v.iter().filter(|b| *b & 1 == 1).count() * page
        }
    }

    #[test]
    fn a_streamed_file_keeps_at_most_its_last_block_in_the_page_cache() {
        // Not in /tmp, which may be a tmpfs (its pages are the file: nothing to drop).
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let create = |name| {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true).create_new(true);
            o.open(dir.path().join(name)).unwrap()
        };
        let mut file = create("f");
        let block = vec![7u8; 1024 * 1024];
        let mut off = 0;
        for _ in 0..16 {
            file.write_all(&block).unwrap();
            stream(&file, (off, block.len() as u64));
            off += block.len() as u64;
        }
        let total = off as usize;
        let kept = resident(&file, total);
        assert!(kept <= block.len(), "{kept} of {total} bytes still cached");
        // Without the calls, a file written the same way stays cached.
        let mut plain = create("g");
        for _ in 0..16 {
            plain.write_all(&block).unwrap();
        }
        assert!(resident(&plain, total) > total / 2);
    }
}
