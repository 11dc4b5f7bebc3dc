//! `GET /healthz` (the process answers) and `GET /readyz` (the store takes writes).
//!
//! The readiness probe writes and syncs a file in the data directory; its result is kept for
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
            last: tokio::sync::Mutex::new(None),
            probes: AtomicU64::new(0),
        }
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
        let r = reg.clone();
        let res = tokio::task::spawn_blocking(move || probe(&r))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        *last = Some((Instant::now(), res.clone()));
        res
    }
}

/// Writes (and syncs) a small object in the blob store, and reads the metadata store.
fn probe(r: &Registry) -> Result<(), String> {
    r.store()
        .probe()
        .map_err(|e| format!("blob store not writable: {e}"))?;
    r.meta()
        .schema_version()
        .map_err(|e| format!("metadata store: {e}"))?;
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
