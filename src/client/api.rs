//! The distribution API calls on one repository (manifests, blobs, uploads, tags, referrers)
//! and on a registry (catalog).

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, LINK, LOCATION, RANGE};
use reqwest::{Response, Url};

use super::error::{Error, Result, read_limited};
use super::image::{Descriptor, MANIFEST_ACCEPT, MAX_MANIFEST, Manifest};
use super::transport::Registry;
use crate::digest::Digest;
use crate::names::{Reference, RepoName};

/// A repository on a registry.
#[derive(Clone)]
pub struct Repo {
    pub registry: Registry,
    pub name: RepoName,
    /// Ask for push access from the first request (a push or copy target), so one token
    /// serves the whole operation.
    push: bool,
}

/// How `POST /blobs/uploads/` answered.
pub enum UploadStart {
    /// The blob was mounted from another repository: nothing to upload.
    Mounted,
    /// An upload session at this URL.
    Session(Url),
}

/// How a chunk `PATCH` answered.
pub enum Patched {
    /// Accepted; the session's next URL and the offset the server now holds.
    Accepted(Url, u64),
    /// 416: the chunk did not continue the upload; the server's offset if it said.
    OutOfSync(Option<u64>),
}

const DIGEST_HEADER: HeaderName = HeaderName::from_static("docker-content-digest");

fn header(resp: &Response, name: HeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The end (exclusive) of an upload's `Range: 0-<last>` header.
fn range_end(v: &str) -> Option<u64> {
    let v = v.trim().trim_start_matches("bytes=");
    let (start, last) = v.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    last.trim().parse::<u64>().ok().map(|l| l + 1)
}

/// The `rel="next"` target of a `Link` header.
fn link_next(v: &str) -> Option<&str> {
    v.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

impl Repo {
    /// `name` on `registry`.
    pub fn new(registry: Registry, name: RepoName) -> Repo {
        Repo {
            registry,
            name,
            push: false,
        }
    }

    /// The same repository as a push target: every request asks for `pull,push`.
    pub fn for_push(mut self) -> Repo {
        self.push = true;
        self
    }

    fn scope(&self, actions: &str) -> Vec<String> {
        let actions = if self.push && actions == "pull" {
            "pull,push"
        } else {
            actions
        };
        vec![format!("repository:{}:{actions}", self.name)]
    }

    fn path(&self, rest: &str) -> Url {
        self.registry.url(&format!("/v2/{}/{rest}", self.name))
    }

    /// `host/name`, for messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.registry.name(), self.name)
    }

    /// Fetches a manifest and checks its digest: against the reference's digest, else against
    /// the registry's `Docker-Content-Digest`.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest> {
        let url = self.path(&format!("manifests/{reference}"));
        let ctx = format!("GET {url}");
        let resp = self
            .registry
            .send(&self.scope("pull"), &|c| {
                c.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let resp = self.registry.expect(&ctx, resp, &[200]).await?;
        let content_type = header(&resp, CONTENT_TYPE).map(str::to_string);
        let announced = header(&resp, DIGEST_HEADER).and_then(|d| d.parse::<Digest>().ok());
        let bytes = read_limited(resp, MAX_MANIFEST).await?;
        let expected = match (reference, announced) {
            (Reference::Digest(d), _) => d.clone(),
            (Reference::Tag(_), Some(d)) => d,
            (Reference::Tag(_), None) => Digest::sha256_of(&bytes),
        };
        Manifest::parse_verified(bytes, content_type.as_deref(), &expected)
    }

    /// The digest the registry gives for manifest `reference` (`HEAD`): `None` when it does
    /// not know it (404), `Some(None)` when it answered without `Docker-Content-Digest`.
    pub async fn manifest_digest(&self, reference: &Reference) -> Result<Option<Option<Digest>>> {
        let url = self.path(&format!("manifests/{reference}"));
        let resp = self
            .registry
            .send(&self.scope("pull"), &|c| {
                c.head(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = self
            .registry
            .expect(&format!("HEAD {url}"), resp, &[200])
            .await?;
        Ok(Some(
            header(&resp, DIGEST_HEADER).and_then(|d| d.parse::<Digest>().ok()),
        ))
    }

    /// Pushes `m` under `reference` (a tag, or its digest).
    pub async fn put_manifest(&self, reference: &Reference, m: &Manifest) -> Result<()> {
        let url = self.path(&format!("manifests/{reference}"));
        let body = Bytes::from(m.bytes.clone());
        let resp = self
            .registry
            .send(&self.scope("pull,push"), &|c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, m.media_type.as_str())
                    .body(body.clone())
            })
            .await?;
        let resp = self
            .registry
            .expect(&format!("PUT {url}"), resp, &[200, 201, 202])
            .await?;
        let stored = header(&resp, DIGEST_HEADER);
        if let Some(d) = stored.filter(|d| {
            m.digest.algorithm() == crate::digest::Algorithm::Sha256 && *d != m.digest.to_string()
        }) {
            return Err(Error::Invalid(format!(
                "PUT {url}: the registry stored digest {d}, not {}",
                m.digest
            )));
        }
        Ok(())
    }

    /// Deletes a manifest (by digest) or a tag.
    pub async fn delete_manifest(&self, reference: &Reference) -> Result<()> {
        let url = self.path(&format!("manifests/{reference}"));
        let resp = self
            .registry
            .send(&self.scope("delete"), &|c| c.delete(url.clone()))
            .await?;
        self.registry
            .expect(&format!("DELETE {url}"), resp, &[200, 202, 204])
            .await?;
        Ok(())
    }

    /// All tags, following `Link` pagination.
    pub async fn tags(&self) -> Result<Vec<String>> {
        let first = self.path("tags/list?n=1000");
        let pages = paginate(&self.registry, &self.scope("pull"), first).await?;
        let mut out = Vec::new();
        for v in pages {
            for t in v["tags"].as_array().into_iter().flatten() {
                out.extend(t.as_str().map(str::to_string));
            }
        }
        Ok(out)
    }

    /// The referrers of `digest` (the OCI 1.1 referrers API); none when it is not supported.
    pub async fn referrers(&self, digest: &Digest) -> Result<Vec<Descriptor>> {
        let url = self.path(&format!("referrers/{digest}"));
        let resp = self
            .registry
            .send(&self.scope("pull"), &|c| c.get(url.clone()))
            .await?;
        if resp.status() == 404 {
            return Ok(Vec::new());
        }
        let resp = self
            .registry
            .expect(&format!("GET {url}"), resp, &[200])
            .await?;
        // A large answer is paginated (distribution spec v1.1.1): follow `Link: rel="next"`.
        let next = header(&resp, LINK)
            .and_then(link_next)
            .map(|l| self.registry.resolve(l))
            .transpose()?;
        let body = read_limited(resp, MAX_MANIFEST).await?;
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let idx: Index = serde_json::from_slice(&body)
            .map_err(|e| Error::Invalid(format!("GET {url}: not an image index: {e}")))?;
        let mut out = idx.manifests;
        if let Some(next) = next.filter(|n| *n != url) {
            for page in paginate(&self.registry, &self.scope("pull"), next).await? {
                let idx: Index = serde_json::from_value(page)
                    .map_err(|e| Error::Invalid(format!("GET {url}: not an image index: {e}")))?;
                out.extend(idx.manifests);
            }
        }
        Ok(out)
    }

    /// The size of blob `digest` if the repository has it (`HEAD`).
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.path(&format!("blobs/{digest}"));
        let resp = self
            .registry
            .send(&self.scope("pull"), &|c| c.head(url.clone()))
            .await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = self
            .registry
            .expect(&format!("HEAD {url}"), resp, &[200])
            .await?;
        Ok(Some(
            header(&resp, CONTENT_LENGTH)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// Starts `GET` of blob `digest` from byte `from` (200, or 206 when `from > 0` and the
    /// registry honours `Range`).
    pub async fn get_blob(&self, digest: &Digest, from: u64) -> Result<Response> {
        let url = self.path(&format!("blobs/{digest}"));
        let resp = self
            .registry
            .send(&self.scope("pull"), &|c| {
                let r = c.get(url.clone());
                if from > 0 {
                    r.header(RANGE, format!("bytes={from}-"))
                } else {
                    r
                }
            })
            .await?;
        self.registry
            .expect(&format!("GET {url}"), resp, &[200, 206])
            .await
    }

    /// Reads a small blob (a config) whole, checking its digest.
    pub async fn get_small_blob(&self, digest: &Digest, limit: usize) -> Result<Vec<u8>> {
        let resp = self.get_blob(digest, 0).await?;
        let bytes = read_limited(resp, limit).await?;
        let actual = super::image::digest_of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {digest} from {}", self.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// `POST /blobs/uploads/`, asking to mount `digest` from repository `from` when given.
    pub async fn start_upload(&self, mount: Option<(&Digest, &RepoName)>) -> Result<UploadStart> {
        let mut url = self.path("blobs/uploads/");
        let mut scopes = self.scope("pull,push");
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from.as_str());
            scopes.push(format!("repository:{from}:pull"));
        }
        let resp = self
            .registry
            .send(&scopes, &|c| c.post(url.clone()).header(CONTENT_LENGTH, 0))
            .await?;
        let resp = self
            .registry
            .expect(&format!("POST {url}"), resp, &[201, 202])
            .await?;
        if resp.status() == 201 {
            return Ok(UploadStart::Mounted);
        }
        let loc = header(&resp, LOCATION).ok_or_else(|| {
            Error::Invalid(format!("POST {url}: no Location for the upload session"))
        })?;
        Ok(UploadStart::Session(self.registry.resolve(loc)?))
    }

    /// Sends bytes `offset..offset+chunk.len()` of an upload (not retried: the caller
    /// resynchronises with `upload_status` on failure).
    pub async fn patch(&self, session: &Url, offset: u64, chunk: Bytes) -> Result<Patched> {
        let end = offset + chunk.len() as u64 - 1;
        let resp = self
            .registry
            .send_once(&self.scope("pull,push"), &|c| {
                c.patch(session.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("Content-Range", format!("{offset}-{end}"))
                    .body(chunk.clone())
            })
            .await?;
        if resp.status() == 416 {
            return Ok(Patched::OutOfSync(header(&resp, RANGE).and_then(range_end)));
        }
        let ctx = format!("PATCH {session}");
        let resp = self.registry.expect(&ctx, resp, &[202, 204]).await?;
        let next = match header(&resp, LOCATION) {
            Some(l) => self.registry.resolve(l)?,
            None => session.clone(),
        };
        let held = header(&resp, RANGE).and_then(range_end).unwrap_or(end + 1);
        Ok(Patched::Accepted(next, held))
    }

    /// How many bytes the session holds (`GET` on it: 204 with `Range`); `None` when the
    /// session is gone or the registry does not say.
    pub async fn upload_status(&self, session: &Url) -> Result<Option<(Url, u64)>> {
        let resp = self
            .registry
            .send_once(&self.scope("pull,push"), &|c| c.get(session.clone()))
            .await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = self
            .registry
            .expect(&format!("GET {session}"), resp, &[200, 204])
            .await?;
        let next = match header(&resp, LOCATION) {
            Some(l) => self.registry.resolve(l)?,
            None => session.clone(),
        };
        // `0-0` is what registries say for an empty session too.
        Ok(header(&resp, RANGE)
            .map(|r| {
                if r.trim() == "0-0" {
                    Some(0)
                } else {
                    range_end(r)
                }
            })
            .map(|held| held.map(|h| (next, h)))
            .unwrap_or(None))
    }

    /// Closes a session with `PUT ?digest=`, sending `body` as its last bytes.
    pub async fn finish_upload(&self, session: &Url, digest: &Digest, body: Bytes) -> Result<()> {
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .registry
            .send_once(&self.scope("pull,push"), &|c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        self.registry
            .expect(&format!("PUT {url}"), resp, &[201, 204])
            .await?;
        Ok(())
    }

    /// Cancels a session; failures are ignored (the registry expires sessions anyway).
    pub async fn cancel_upload(&self, session: &Url) {
        let _ = self
            .registry
            .send_once(&self.scope("pull,push"), &|c| c.delete(session.clone()))
            .await;
    }
}

/// GETs `first` and every `Link: rel="next"` page after it, as JSON.
async fn paginate(
    registry: &Registry,
    scopes: &[String],
    first: Url,
) -> Result<Vec<serde_json::Value>> {
    let mut pages = Vec::new();
    let mut next = Some(first);
    while let Some(url) = next.take() {
        let resp = registry.send(scopes, &|c| c.get(url.clone())).await?;
        let resp = registry.expect(&format!("GET {url}"), resp, &[200]).await?;
        if let Some(l) = header(&resp, LINK).and_then(link_next) {
            let u = registry.resolve(l)?;
            if u != url {
                next = Some(u);
            }
        }
        let body = read_limited(resp, 64 << 20).await?;
        pages.push(
            serde_json::from_slice(&body)
                .map_err(|e| Error::Invalid(format!("GET {url}: not JSON: {e}")))?,
        );
        if pages.len() > 100_000 {
            return Err(Error::Invalid(format!("GET {url}: too many pages")));
        }
    }
    Ok(pages)
}

/// Every repository of `registry` (`/v2/_catalog`, following pagination).
pub async fn catalog(registry: &Registry) -> Result<Vec<String>> {
    let first = registry.url("/v2/_catalog?n=1000");
    let pages = paginate(registry, &["registry:catalog:*".to_string()], first).await?;
    let mut out = Vec::new();
    for v in pages {
        for r in v["repositories"].as_array().into_iter().flatten() {
            out.extend(r.as_str().map(str::to_string));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges_and_links_are_parsed() {
        assert_eq!(range_end("0-99"), Some(100));
        assert_eq!(range_end("bytes=0-0"), Some(1));
        assert_eq!(range_end("5-9"), None);
        assert_eq!(range_end("x"), None);
        assert_eq!(
            link_next(r#"</v2/_catalog?n=2&last=b>; rel="next""#),
            Some("/v2/_catalog?n=2&last=b")
        );
        assert_eq!(link_next(r#"</x>; rel="prev""#), None);
    }
}
