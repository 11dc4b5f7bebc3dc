//! What an import writes to: the store (`apply.rs`) or, for the dry run, nothing
//! (`plan.rs`). The engine (`engine.rs`) asks and tells it through this trait only.

use bytes::Bytes;

use super::layout::BlobSource;
use crate::digest::Digest;
use crate::error::Result;
use crate::names::RepoName;

/// Where a blob stands in the destination, for one repository.
pub(super) enum BlobState {
    /// Recorded and linked into the repository.
    Linked,
    /// Recorded (verified when it was), not linked into the repository.
    Recorded,
    Absent,
}

/// The outcome of bringing one blob in.
pub(super) enum Imported {
    Done {
        size: u64,
        hard_linked: bool,
    },
    /// The source's bytes hash to this digest instead.
    Mismatch(Digest),
}

/// What an import writes to (or, for the dry run, pretends to).
pub(super) trait Sink {
    fn blob_state(&self, repo: &str, d: &Digest) -> Result<BlobState>;
    /// Links recorded blob `d` into `repo`; false if its row is gone.
    async fn link_recorded(&self, repo: &str, d: &Digest) -> Result<bool>;
    /// Verifies the blob at `src` against `d` while bringing it in, then records it in `repo`.
    async fn import_blob(&self, repo: &str, d: &Digest, src: &BlobSource) -> Result<Imported>;
    fn has_revision(&self, repo: &str, d: &Digest) -> Result<bool>;
    /// Records revision `d` (its verified bytes `body`) of `repo`, counting its references.
    async fn put_manifest(&self, repo: &RepoName, d: &Digest, body: Bytes) -> Result<()>;
    fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>>;
    async fn set_tag(&self, repo: &str, tag: &str, d: &Digest) -> Result<()>;
}
