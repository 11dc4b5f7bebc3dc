//! One mirror's upstream registry, reached through kura's own client (`src/client/`: the
//! Docker token flow, Basic credentials, retries of idempotent requests).

use bytes::Bytes;

use super::MirrorConfig;
use crate::client::api::Repo;
use crate::client::auth::Credentials;
use crate::client::error::Error as ClientError;
use crate::client::transport::{Registry as Remote, configured_remote};
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::names::{Reference, RepoName};

/// How the upstream answered a request it did not satisfy.
#[derive(Debug)]
pub enum Failure {
    /// It does not have the manifest or blob (404).
    NotFound,
    /// It could not be reached, failed (5xx), refused our credentials, or sent bad content.
    Unavailable(String),
}

impl Failure {
    fn of(e: ClientError) -> Failure {
        match e.status() {
            Some(404) => Failure::NotFound,
            _ => Failure::Unavailable(e.to_string()),
        }
    }
}

/// A manifest as the upstream served it.
pub struct Fetched {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The upstream of one mirror.
pub struct Upstream {
    remote: Remote,
    /// The upstream's base URL, for messages.
    pub url: String,
}

impl Upstream {
    /// A client for `cfg`'s upstream with its credentials.
    pub fn new(cfg: &MirrorConfig) -> Result<Upstream> {
        let host = cfg
            .upstream_host()
            .map_err(|e| Error::internal("mirror", e))?;
        let creds = (!cfg.username.is_empty()).then(|| Credentials {
            username: cfg.username.clone(),
            password: cfg.password.clone(),
        });
        let plain_http = cfg.upstream.starts_with("http://");
        let remote = configured_remote(&host, plain_http, 2, &cfg.token, creds)
            .map_err(|e| Error::internal("mirror upstream client", e))?;
        Ok(Upstream {
            remote,
            url: cfg.upstream.clone(),
        })
    }

    fn repo(&self, name: &RepoName) -> Repo {
        Repo::new(self.remote.clone(), name.clone())
    }

    /// The digest upstream gives tag `tag` of `name` now (a `HEAD`; a `GET` when the upstream
    /// does not say).
    pub async fn tag_digest(&self, name: &RepoName, tag: &str) -> Result<Digest, Failure> {
        let reference = Reference::Tag(tag.to_string());
        match self.repo(name).manifest_digest(&reference).await {
            Ok(Some(Some(d))) => Ok(d),
            Ok(Some(None)) => Ok(self.manifest(name, &reference).await?.digest),
            Ok(None) => Err(Failure::NotFound),
            Err(e) => Err(Failure::of(e)),
        }
    }

    /// Fetches manifest `reference` of `name`, its digest checked (against the reference's
    /// digest, else the upstream's `Docker-Content-Digest`).
    pub async fn manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
    ) -> Result<Fetched, Failure> {
        let m = self
            .repo(name)
            .get_manifest(reference)
            .await
            .map_err(Failure::of)?;
        Ok(Fetched {
            digest: m.digest,
            media_type: m.media_type,
            bytes: Bytes::from(m.bytes),
        })
    }

    /// The size of blob `digest` of `name` upstream (`HEAD`).
    pub async fn blob_size(&self, name: &RepoName, digest: &Digest) -> Result<u64, Failure> {
        match self.repo(name).blob_size(digest).await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(Failure::NotFound),
            Err(e) => Err(Failure::of(e)),
        }
    }

    /// Starts `GET` of blob `digest` of `name` from byte `from`.
    pub async fn blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        from: u64,
    ) -> Result<reqwest::Response, Failure> {
        self.repo(name)
            .get_blob(digest, from)
            .await
            .map_err(Failure::of)
    }

    /// The error a client gets when upstream failed and nothing cached can stand in.
    pub fn unavailable(&self, mirror: &str, what: &str, why: &str) -> Error {
        Error::new(
            Code::Unknown,
            format!(
                "mirror {mirror}: {what} is not cached and upstream {} failed: {why}",
                self.url
            ),
        )
        .with_status(actix_web::http::StatusCode::BAD_GATEWAY)
    }
}
