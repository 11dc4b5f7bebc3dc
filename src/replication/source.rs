//! The local store as a copy source: push-mode replication reads manifests, referrers and blob
//! bytes from `Registry` in process (no HTTP to ourselves, so no credentials), through the same
//! `transfer::copy` walk `kura copy` uses.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use crate::client::api::Repo;
use crate::client::blobs::{BlobOpener, BlobSource, ByteStream};
use crate::client::image::{Descriptor, Manifest};
use crate::client::transfer::ImageSource;
use crate::client::{Error, Result};
use crate::digest::Digest;
use crate::names::{Reference, RepoName};
use crate::registry::Registry;

/// Repository `repo` of the local registry.
#[derive(Clone)]
pub struct LocalSource {
    pub registry: Registry,
    pub repo: RepoName,
}

/// A registry error as a client error (its status and code kept).
fn client_error(context: String, e: crate::error::Error) -> Error {
    Error::Status {
        context,
        status: e.status.as_u16(),
        code: Some(e.code.as_str().to_string()),
        message: e.message,
    }
}

impl LocalSource {
    async fn read_manifest(self, reference: Reference) -> Result<Manifest> {
        let ctx = || format!("local {}:{reference}", self.repo);
        let m = self
            .registry
            .get_manifest(&self.repo, &reference, true)
            .await
            .map_err(|e| client_error(ctx(), e))?;
        let body = m
            .body
            .ok_or_else(|| Error::Invalid(format!("{}: no manifest bytes", ctx())))?;
        Manifest::parse_verified(body.to_vec(), Some(&m.media_type), &m.digest)
    }

    async fn read_referrers(self, digest: Digest) -> Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let (page, more) = self
                .registry
                .referrers(&self.repo, &digest, None, last.as_deref(), 1000)
                .map_err(|e| client_error(format!("local referrers of {digest}"), e))?;
            last = page.last().map(|r| r.digest.clone());
            for r in page {
                let d: Digest = r
                    .digest
                    .parse()
                    .map_err(|_| Error::Invalid(format!("stored digest {:?}", r.digest)))?;
                let mut desc = Descriptor::of(&r.media_type, &d, r.size);
                desc.artifact_type = r.artifact_type;
                out.push(desc);
            }
            if !more || last.is_none() {
                return Ok(out);
            }
        }
    }
}

impl ImageSource for LocalSource {
    fn manifest(&self, reference: &Reference) -> impl Future<Output = Result<Manifest>> + Send {
        self.clone().read_manifest(reference.clone())
    }

    fn referrers(&self, digest: &Digest) -> impl Future<Output = Result<Vec<Descriptor>>> + Send {
        self.clone().read_referrers(digest.clone())
    }

    fn blob_source(&self) -> BlobSource {
        BlobSource::Opener(Arc::new(self.clone()))
    }

    fn mount_from(&self, _dst: &Repo) -> Vec<RepoName> {
        Vec::new()
    }
}

impl BlobOpener for LocalSource {
    fn open(&self, digest: &Digest, offset: u64) -> BoxFuture<'static, Result<ByteStream>> {
        let (s, digest) = (self.clone(), digest.clone());
        async move {
            let ctx = || format!("local blob {digest} of {}", s.repo);
            let size = s
                .registry
                .blob_size(&s.repo, &digest)
                .map_err(|e| client_error(ctx(), e))?;
            let body = s
                .registry
                .blob_body(&s.repo, &digest, offset, size.saturating_sub(offset))
                .await
                .map_err(|e| client_error(ctx(), e))?;
            let stream: ByteStream = body
                .map(move |c| c.map_err(|e| Error::io(format!("reading local blob {digest}"), e)))
                .boxed();
            Ok(stream)
        }
        .boxed()
    }
}
