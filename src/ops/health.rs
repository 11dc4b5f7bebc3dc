//! `GET /healthz` (the process answers) and `GET /readyz` (the store takes writes).
//!
//! The readiness probe checks the free space of the data directory's file system against
//! `limits.min_free_bytes` (statvfs), then writes and syncs a file in the data directory; its
//! result is kept for
//! `READY_TTL`, so a scraper polling `/readyz` causes at most one fsync per second, however
//! often it asks, and concurrent requests share one probe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};

use crate::registry::Registry;

/// How long a readiness result is reused.
pub const READY_TTL: Duration = Duration::from_secs(1);

/// The last readiness result, shared by the server's workers.
pub struct Readiness {
    ttl: Duration,
    /// Not ready below this many free bytes in the data directory (0: no floor).
    min_free: u64,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    probes: AtomicU64,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::with_ttl(READY_TTL)
    }
}

impl Readiness {
    /// Results are reused for `ttl`.
    pub fn with_ttl(ttl: Duration) -> Readiness {
        Readiness {
            ttl,
            min_free: 0,
            last: tokio::sync::Mutex::new(None),
            probes: AtomicU64::new(0),
        }
    }

    /// Not ready while the data directory has fewer than `bytes` free (0: no floor).
    pub fn with_min_free(mut self, bytes: u64) -> Readiness {
        self.min_free = bytes;
        self
    }

    /// Probes run so far (each writes and syncs one file).
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Whether `reg` takes writes: the last result if younger than the TTL, else a new probe.
    pub async fn check(&self, reg: &Registry) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, res)) = &*last
            && at.elapsed() < self.ttl
        {
            return res.clone();
        }
        self.probes.fetch_add(1, Ordering::Relaxed);
        let (r, min_free) = (reg.clone(), self.min_free);
        let res = tokio::task::spawn_blocking(move || probe(&r, min_free))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        *last = Some((Instant::now(), res.clone()));
        res
    }
}

/// Bytes available to kura (not root's reserve) on the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `st` is written by statvfs on success.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Checks the free-space floor, writes (and syncs) a small object in the blob store, and
/// reads the metadata store.
fn probe(r: &Registry, min_free: u64) -> Result<(), String> {
    if min_free > 0 {
        let free = free_bytes(r.root())
            .map_err(|e| format!("free space of {}: {e}", r.root().display()))?;
        if free < min_free {
            return Err(format!(
                "data directory {} has {free} bytes free, below limits.min_free_bytes ({min_free})",
                r.root().display()
            ));
        }
    }
    r.store()
        .probe()
        .map_err(|e| format!("blob store not writable: {e}"))?;
    r.meta()
        .schema_version()
        .map_err(|e| format!("metadata store {}: {e}", r.meta().describe()))?;
    Ok(())
}

/// Liveness: 200 while the server answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Readiness: 200 when a file can be written and synced in the data directory and the
/// metadata store answers a read (checked at most once per `READY_TTL`); 503 with the reason
/// otherwise.
pub async fn readyz(
    reg: web::Data<Registry>,
    readiness: Option<web::Data<Readiness>>,
) -> HttpResponse {
    let own;
    let readiness = match &readiness {
        Some(r) => r.get_ref(),
        None => {
            own = Readiness::with_ttl(Duration::ZERO);
            &own
        }
    };
    match readiness.check(&reg).await {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Err(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("{why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn repeated_checks_within_the_ttl_share_one_probe() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let ready = Readiness::with_ttl(Duration::from_secs(3600));
        for _ in 0..50 {
            ready.check(&reg).await.unwrap();
        }
        assert_eq!(ready.probes(), 1);
    }

    #[tokio::test]
    async fn a_data_directory_that_cannot_take_writes_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let ready = Readiness::with_ttl(Duration::ZERO);
        ready.check(&reg).await.unwrap();
        // The uploads directory replaced by a file: nothing can be created in it.
        let uploads = dir.path().join("uploads");
        std::fs::remove_dir_all(&uploads).unwrap();
        std::fs::write(&uploads, b"not a directory").unwrap();
        let why = ready.check(&reg).await.unwrap_err();
        assert!(why.contains("not writable"), "{why}");
        assert_eq!(ready.probes(), 2);
    }
}
