//! Server-side copy of an object of any size. S3's CopyObject stops at 5 GiB; a larger object
//! is copied as a multipart upload whose parts are UploadPartCopy requests. `object_store` has
//! no call for those, so each is presigned (the copy source and range headers signed with it)
//! and sent with the store's HTTP client. The target appears whole at completion, or not at all.

use std::io;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{Method, SignedUrlOptions, Signer};
use object_store::{HeaderValue, ObjectStoreExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::HeaderName;

use super::{S3Store, io_err};

/// S3's limit for one CopyObject (and for one part).
pub(super) const SINGLE_COPY_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Bytes per UploadPartCopy of a larger object (at most 10,000 parts: raised for huge ones).
pub(super) const COPY_PART: u64 = 1024 * 1024 * 1024;
/// UploadPartCopy requests in flight.
const COPIES_IN_FLIGHT: usize = 4;

/// Characters of a key left as they are in `x-amz-copy-source` (as S3's own SDKs do).
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn header(v: &str) -> io::Result<HeaderValue> {
    HeaderValue::from_str(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl S3Store {
    /// Copies object `from` (`size` bytes) to `to` inside the bucket. Runs on the runtime.
    pub(super) async fn copy_object(&self, from: &Path, to: &Path, size: u64) -> io::Result<()> {
        let s3 = self.s3();
        if size <= self.inner.single_copy_max {
            return s3.copy(from, to).await.map_err(io_err);
        }
        let part = self.inner.copy_part.max(size.div_ceil(10_000));
        let id = s3.create_multipart(to).await.map_err(io_err)?;
        let source = format!(
            "/{}/{}",
            self.inner.bucket,
            utf8_percent_encode(from.as_ref(), KEY_ENCODE)
        );
        let ranges: Vec<(usize, u64, u64)> = (0..size.div_ceil(part))
            .map(|i| (i as usize, i * part, ((i + 1) * part).min(size) - 1))
            .collect();
        let copied: io::Result<Vec<PartId>> = futures_util::stream::iter(ranges)
            .map(|(i, first, last)| self.copy_part(to, &id, i, &source, first, last))
            .buffered(COPIES_IN_FLIGHT)
            .try_collect()
            .await;
        let res = match copied {
            Ok(parts) => s3
                .complete_multipart(to, &id, parts)
                .await
                .map(|_| ())
                .map_err(io_err),
            Err(e) => Err(e),
        };
        if res.is_err() {
            let _ = s3.abort_multipart(to, &id).await;
        }
        res
    }

    /// One UploadPartCopy: bytes `first..=last` of `source` as part `idx` of upload `id`.
    async fn copy_part(
        &self,
        to: &Path,
        id: &str,
        idx: usize,
        source: &str,
        first: u64,
        last: u64,
    ) -> io::Result<PartId> {
        let range = format!("bytes={first}-{last}");
        let copy_source = HeaderName::from_static("x-amz-copy-source");
        let copy_range = HeaderName::from_static("x-amz-copy-source-range");
        let opts = SignedUrlOptions::new()
            .with_query([
                ("partNumber", (idx + 1).to_string()),
                ("uploadId", id.to_string()),
            ])
            .with_signed_header(copy_source.clone(), header(source)?)
            .with_signed_header(copy_range.clone(), header(&range)?);
        let url = self
            .s3()
            .signed_url_opts(Method::PUT, to, Duration::from_secs(3600), &opts)
            .await
            .map_err(io_err)?;
        let resp = self
            .inner
            .http
            .put(url.as_str())
            .header(copy_source, source)
            .header(copy_range, &range)
            // (RGW answers 411 to a PUT without a length.)
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .body(Vec::new())
            .send()
            .await
            .map_err(io::Error::other)?;
        let status = resp.status();
        let body = resp.text().await.map_err(io::Error::other)?;
        // The ETag is in the body (`<CopyPartResult><ETag>"…"</ETag>`), quotes maybe escaped.
        let etag = body
            .split_once("<ETag>")
            .and_then(|(_, rest)| rest.split_once("</ETag>"))
            .map(|(etag, _)| etag.replace("&quot;", "\"").replace("&#34;", "\""));
        match etag {
            Some(content_id) if status.is_success() && !content_id.is_empty() => {
                Ok(PartId { content_id })
            }
            _ => Err(io::Error::other(format!(
                "copying part {} ({range}) of {source}: HTTP {status}: {body}",
                idx + 1
            ))),
        }
    }
}
