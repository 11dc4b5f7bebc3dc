//! `kura import`: bring a CNCF Distribution store (the `rootdirectory` of its filesystem
//! driver, or of its s3 driver in a bucket) into a kura store: repositories, blob links, manifest revisions (with their referrers, which
//! kura derives from `subject`) and tags, every digest verified, resumable, with a dry run
//! that reports what would be imported and what is broken.
//!
//! - `layout.rs`: Distribution's paths (its `registry/storage/paths.go`), read-only;
//! - `engine.rs`: the steps and their order, against a sink;
//! - `apply.rs`: the sink recording into a kura store (hard link or verified copy);
//! - `plan.rs`: the report, and the dry run's sink;
//! - `sink.rs`: what the engine asks of a sink.

mod apply;
mod engine;
mod layout;
mod plan;
mod sink;

use std::io::{self, Read};
use std::path::Path;

pub use plan::{ImportReport, Problem, ProblemKind};

use crate::config::{StorageConfig, StorageKind};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::registry::Registry;
use crate::store::S3Store;
use layout::BlobSource;

/// Why an import could not run (problems with single items are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Source(io::Error),
    #[error(transparent)]
    Store(#[from] crate::error::Error),
}

impl From<io::Error> for ImportError {
    fn from(e: io::Error) -> Self {
        ImportError::Store(e.into())
    }
}

/// A Distribution store to import from: a directory (the filesystem driver's
/// `rootdirectory`) or a bucket (the s3 driver's, as the prefix of a `[storage]` section).
#[derive(Clone)]
pub struct Source(layout::Layout);

impl Source {
    /// The store whose `rootdirectory` is `root`.
    pub fn dir(root: &Path) -> Result<Source, ImportError> {
        layout::Layout::open(root)
            .map(Source)
            .map_err(ImportError::Source)
    }

    /// The store in the bucket `cfg` names (`kind = "s3"`; `prefix` = Distribution's
    /// `rootdirectory` there).
    pub fn bucket(cfg: &StorageConfig) -> Result<Source, ImportError> {
        if cfg.kind != StorageKind::S3 {
            let e = io::Error::other("the source's [storage] must be kind = \"s3\"");
            return Err(ImportError::Source(e));
        }
        let store = S3Store::open(cfg).map_err(ImportError::Source)?;
        layout::Layout::open_bucket(store)
            .map(Source)
            .map_err(ImportError::Source)
    }
}

/// Imports the Distribution store `source` into `registry` (which should not be serving:
/// run it offline). Blobs are hard-linked when both are directories on one filesystem (and
/// the registry keeps its blobs there), unless `copy`; copied and verified otherwise.
/// `progress` is told (repositories done, total, next name) before each repository.
pub async fn import(
    source: &Source,
    registry: &Registry,
    copy: bool,
    progress: &dyn Fn(usize, usize, &str),
) -> Result<ImportReport, ImportError> {
    let sink = apply::Apply {
        // An operator's import is not refused by quotas; its bytes count.
        registry: registry.exempt_from_quotas(),
        copy,
    };
    sink.sweep_leftovers()?;
    let mut run = engine::Run::new(&source.0, &sink, false);
    run.all(progress).await?;
    Ok(run.report)
}

/// What `import` would do with `source` into an empty store, and what is broken in it;
/// writes nothing (every blob it would import is hashed). `progress` as for `import`.
pub async fn dry_run(
    source: &Source,
    progress: &dyn Fn(usize, usize, &str),
) -> Result<ImportReport, ImportError> {
    let sink = plan::DryRun::default();
    let mut run = engine::Run::new(&source.0, &sink, true);
    run.all(progress).await?;
    Ok(run.report)
}

/// The digest (with `alg`) and size of the blob at `src`, read on the blocking pool.
async fn hash_source(src: &BlobSource, alg: Algorithm) -> crate::error::Result<(Digest, u64)> {
    let src = match src {
        BlobSource::File(p) => BlobSource::File(p.clone()),
        BlobSource::Object(s, k) => BlobSource::Object(s.clone(), k.clone()),
    };
    let hashed = tokio::task::spawn_blocking(move || match &src {
        BlobSource::File(p) => hash_file(p, alg),
        BlobSource::Object(s, k) => s
            .hash_object(k.clone(), Hasher::new(alg), &mut |_| {})?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{k} vanished"))),
    });
    Ok(hashed
        .await
        .map_err(|e| crate::error::Error::internal("hashing task", e))??)
}

/// The digest (with `alg`) and size of the file at `path`. Blocking.
fn hash_file(path: &Path, alg: Algorithm) -> io::Result<(Digest, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Hasher::new(alg);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher.finish(), size));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}
