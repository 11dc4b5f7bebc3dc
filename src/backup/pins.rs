//! Backup pins: while a backup runs, the collector removes rows but unlinks no blob.
//!
//! A backup names its blobs in one metadata snapshot and copies them afterwards. The collector
//! may remove a row the snapshot still names (its removal commits after the snapshot began),
//! so it must not unlink that file before the backup has copied it. The rule: a backup pins
//! *before* it opens its snapshot and unpins after its last copy; the collector decides to
//! unlink while holding the pins' mutex, after its removal is durable and re-checked under the
//! digest's lock (`gc::blobs::remove_unless_recorded`). Either the collector took the mutex
//! first (its removal then happened before the snapshot began, which therefore does not name
//! the blob) or it sees the pin and leaves the file: an orphan without a row, which a later
//! collection's orphan sweep removes once no backup runs.

use std::sync::{Mutex, MutexGuard};

/// The number of backups running in this process.
#[derive(Default)]
pub struct BackupPins {
    active: Mutex<u64>,
}

/// Held by a backup from before its snapshot until its last blob is copied.
pub struct Pin<'a> {
    pins: &'a BackupPins,
}

/// The pins' mutex, held by the collector while it decides and unlinks.
pub struct UnlinkGuard<'a> {
    active: MutexGuard<'a, u64>,
}

impl BackupPins {
    /// Pins: until the returned guard drops, the collector unlinks nothing.
    pub fn pin(&self) -> Pin<'_> {
        *self.lock() += 1;
        Pin { pins: self }
    }

    /// Taken by the collector around its unlinks (after their rows' removal is durable).
    pub fn for_unlink(&self) -> UnlinkGuard<'_> {
        UnlinkGuard {
            active: self.lock(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl UnlinkGuard<'_> {
    /// Whether a backup runs (and the files must stay).
    pub fn backup_running(&self) -> bool {
        *self.active > 0
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        *self.pins.lock() -= 1;
    }
}
