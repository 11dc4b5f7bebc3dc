//! `kura import`: bring a CNCF Distribution filesystem store (its `rootdirectory`) into a
//! kura store: repositories, blob links, manifest revisions (with their referrers, which
//! kura derives from `subject`) and tags, every digest verified, resumable, with a dry run
//! that reports what would be imported and what is broken.
//!
//! - `layout.rs`: Distribution's paths (its `registry/storage/paths.go`), read-only;
//! - `engine.rs`: the steps and their order, against a sink;
//! - `apply.rs`: the sink recording into a kura store (hard link or verified copy);
//! - `plan.rs`: the report, and the dry run's sink.

mod apply;
mod engine;
mod layout;
mod plan;

use std::io::{self, Read};
use std::path::Path;

pub use plan::{ImportReport, Problem, ProblemKind};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::registry::Registry;

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

/// Imports the Distribution store whose `rootdirectory` is `source` into `registry` (which
/// should not be serving: run it offline). Blobs are hard-linked when the registry keeps its
/// blobs on the filesystem `source` is on, unless `copy`; copied and verified otherwise.
pub async fn import(
    source: &Path,
    registry: &Registry,
    copy: bool,
) -> Result<ImportReport, ImportError> {
    let layout = layout::Layout::open(source).map_err(ImportError::Source)?;
    let sink = apply::Apply {
        registry: registry.clone(),
        copy,
    };
    sink.sweep_leftovers()?;
    let mut run = engine::Run::new(&layout, &sink, false);
    run.all().await?;
    Ok(run.report)
}

/// What `import` would do with `source` into an empty store, and what is broken in it;
/// writes nothing (every blob it would import is hashed).
pub async fn dry_run(source: &Path) -> Result<ImportReport, ImportError> {
    let layout = layout::Layout::open(source).map_err(ImportError::Source)?;
    let sink = plan::DryRun::default();
    let mut run = engine::Run::new(&layout, &sink, true);
    run.all().await?;
    Ok(run.report)
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
