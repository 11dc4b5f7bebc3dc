//! Hostile input over raw HTTP: path traversal and NUL in names, digests and upload ids,
//! overlong names, oversized and deeply nested manifests, wrong and missing `Content-Length`,
//! `Content-Range` beyond the body, requests on cancelled uploads, unknown digest algorithms,
//! manifests naming another repository's blobs, huge header counts and slow-drip clients.
//! Each gets the spec's error and leaves the store as it was: the same files under `blobs/` and
//! `uploads/`, the same rows in every metadata table, the same catalog, and a clean fsck.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use kura::digest::Digest;
use redb::ReadableTable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1: requests exactly as written, no client-side normalization.

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    /// The OCI error code (`errors[0].code`) of a JSON error body, if any.
    fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["errors"][0]["code"].as_str().map(str::to_string)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// A request with `Host` and `Connection: close`; `Content-Length` is added unless `headers`
/// already set it or `Transfer-Encoding`, or `body` is `None` (then no length is sent at all).
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if let (Some(b), false) = (body, framed) {
        r.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    r.push_str("\r\n");
    let mut out = r.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// Parses the first response in `buf`, if complete (`head`: a reply to `HEAD`, without body).
fn parse_reply(buf: &[u8], is_head: bool) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut reply = Reply {
        status,
        head,
        body: Vec::new(),
    };
    let rest = &buf[end + 4..];
    match reply.header("content-length") {
        _ if is_head => {}
        Some(n) => {
            let n: usize = n.parse().ok()?;
            if rest.len() < n {
                return None;
            }
            reply.body = rest[..n].to_vec();
        }
        None => reply.body = rest.to_vec(),
    }
    Some(reply)
}

/// Sends `bytes` and reads the reply; `None` when the server closed without one. `half_close`
/// shuts the write side after sending (a client that stops mid-body but keeps listening).
async fn send_opts(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Option<Reply> {
    let head = bytes.starts_with(b"HEAD ");
    let work = async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        // The server may answer (and close) before it has read everything we send.
        let _ = c.write_all(bytes).await;
        if half_close {
            let _ = c.shutdown().await;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(r) = parse_reply(&buf, head)
                && (r.header("content-length").is_some() || r.status == 204)
            {
                return Some(r);
            }
        }
        parse_reply(&buf, head)
    };
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .expect("server answered within 20 s")
}

async fn send(addr: SocketAddr, bytes: &[u8]) -> Option<Reply> {
    send_opts(addr, bytes, false).await
}

// ---------------------------------------------------------------------------------------------
// The store's observable state.

#[derive(Debug, PartialEq)]
struct Snapshot {
    /// Every file under the data directory but `meta.redb`, with its size.
    files: BTreeSet<(String, u64)>,
    /// Every row of every metadata table.
    rows: Vec<String>,
    catalog: String,
    blobs_checked: u64,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<(String, u64)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel != "meta.redb" && rel != "kura.addr" {
                out.insert((rel, e.metadata().unwrap().len()));
            }
        }
    }
}

macro_rules! dump {
    ($rows:ident, $name:literal, $table:expr) => {
        for e in $table.iter()? {
            let (k, v) = e?;
            $rows.push(format!("{} {:?} = {:?}", $name, k.value(), v.value()));
        }
    };
}

async fn snapshot(s: &TestServer) -> Snapshot {
    let mut files = BTreeSet::new();
    walk(s.dir.path(), s.dir.path(), &mut files);
    let rows = s
        .registry
        .meta()
        .read_redb(|t| {
            let mut rows = Vec::new();
            dump!(rows, "repos", t.repos);
            // A served `GET`/`HEAD` may record a client sighting (the start of an item's GC
            // grace period): that timestamp is not content, so it is left out.
            for e in t.blobs.iter()? {
                let (k, v) = e?;
                let (size, refs, _touched) = v.value();
                rows.push(format!("blobs {:?} = ({size}, {refs})", k.value()));
            }
            dump!(rows, "repo_blobs", t.repo_blobs);
            dump!(rows, "blob_links", t.blob_links);
            for e in t.manifests.iter()? {
                let (k, v) = e?;
                let mut rec: kura::meta::ManifestRecord = serde_json::from_slice(v.value())?;
                rec.touched = 0;
                rows.push(format!("manifests {:?} = {rec:?}", k.value()));
            }
            dump!(rows, "tags", t.tags);
            dump!(rows, "referrers", t.referrers);
            dump!(rows, "uploads", t.uploads);
            Ok(rows)
        })
        .unwrap();
    let catalog = client()
        .get(s.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reg = s.registry.clone();
    let report = tokio::task::spawn_blocking(move || kura::fsck::fsck(&reg, false, false))
        .await
        .unwrap()
        .unwrap();
    assert!(report.is_clean(), "fsck: {report}");
    Snapshot {
        files,
        rows,
        catalog,
        blobs_checked: report.blobs_checked,
    }
}

async fn assert_unchanged(s: &TestServer, before: &Snapshot, after_what: &str) {
    let now = snapshot(s).await;
    assert_eq!(before.files, now.files, "files changed after {after_what}");
    assert_eq!(before.rows, now.rows, "metadata changed after {after_what}");
    assert_eq!(
        before.catalog, now.catalog,
        "catalog changed after {after_what}"
    );
    assert_eq!(before.blobs_checked, now.blobs_checked);
}

// ---------------------------------------------------------------------------------------------
// A store with content to protect.

struct Fixture {
    s: TestServer,
    /// The image manifest of `app:v1` and its layers.
    manifest: Digest,
    layer: Digest,
    /// A blob only `other` holds, and `other:v1`'s manifest.
    other_blob: Digest,
    other_manifest: Digest,
    /// Path of an `app` upload session holding 10 bytes, and of an empty one.
    session10: String,
    session0: String,
    before: Snapshot,
    tried: usize,
}

async fn start_session(s: &TestServer, repo: &str) -> String {
    let r = client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap();
    loc.strip_prefix(&s.base).unwrap().to_string()
}

/// How long the fixture's server waits for request headers, and between two body chunks.
const TIMEOUT: Duration = Duration::from_secs(2);

async fn fixture() -> Fixture {
    let mut opts = kura::server::ServerOptions::default();
    opts.limits.request_timeout = TIMEOUT;
    opts.limits.body_idle_timeout = TIMEOUT;
    let s = TestServer::start_with_options(None, opts).await;
    let (_, manifest) = push_image(&s, "app", "v1", &[b"layer one", b"layer two"]).await;
    let layer = Digest::sha256_of(b"layer one");
    let other_blob = push_blob(&s, "other", b"only in other").await;
    let (_, other_manifest) = push_image(&s, "other", "v1", &[b"other layer"]).await;
    let session10 = start_session(&s, "app").await;
    let r = client()
        .patch(s.url(&session10))
        .header("Content-Range", "0-9")
        .body(&b"0123456789"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let session0 = start_session(&s, "app").await;
    let before = snapshot(&s).await;
    Fixture {
        s,
        manifest,
        layer,
        other_blob,
        other_manifest,
        session10,
        session0,
        before,
        tried: 0,
    }
}

impl Fixture {
    fn addr(&self) -> SocketAddr {
        self.s.addr
    }

    /// Sends `req`, expects `status` and (if given) the OCI error `code`.
    async fn expect(&mut self, what: &str, req: Vec<u8>, status: u16, code: Option<&str>) {
        self.tried += 1;
        let r = send(self.addr(), &req)
            .await
            .unwrap_or_else(|| panic!("{what}: connection closed without a reply"));
        assert_eq!(
            r.status,
            status,
            "{what}: {}\n{}",
            r.head,
            String::from_utf8_lossy(&r.body)
        );
        if let Some(code) = code {
            assert_eq!(r.code().as_deref(), Some(code), "{what}: {}", r.head);
        }
    }

    async fn expect_unchanged(&self, what: &str) {
        assert_unchanged(&self.s, &self.before, what).await;
    }

    /// The offset `GET <session>` reports (its `Range` end + 1).
    async fn offset(&self, session: &str) -> u64 {
        let r = send(self.addr(), &request("GET", session, &[], None))
            .await
            .expect("status reply");
        assert_eq!(r.status, 204, "{}", r.head);
        let range = r.header("range").unwrap();
        let end: u64 = range.split('-').nth(1).unwrap().parse().unwrap();
        if range == "0-0" { 0 } else { end + 1 }
    }
}

const MANIFEST_TYPE: (&str, &str) = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_nul_and_overlong_names_digests_and_ids_get_spec_errors_and_change_nothing() {
    let mut f = fixture().await;
    let meta_before = std::fs::read(f.s.dir.path().join("meta.redb"))
        .unwrap()
        .len();
    let id = f.session10.rsplit('/').next().unwrap().to_string();
    let d = f.layer.to_string();
    let long = "a".repeat(256);
    let deep = vec!["a"; 200].join("/");
    let cases: Vec<(String, &str, String, u16, Option<&str>)> = vec![
        // Names.
        (
            "dotdot name".into(),
            "GET",
            "/v2/../../etc/passwd/tags/list".into(),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "dotdot inside name".into(),
            "GET",
            "/v2/app/../other/tags/list".into(),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "encoded dotdot name".into(),
            "GET",
            "/v2/app/%2e%2e/%2e%2e/x/tags/list".into(),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "encoded slash name".into(),
            "GET",
            "/v2/app%2f..%2f..%2fx/tags/list".into(),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "NUL in name".into(),
            "GET",
            "/v2/a%00b/tags/list".into(),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "overlong name".into(),
            "GET",
            format!("/v2/{long}/tags/list"),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "overlong deep name".into(),
            "GET",
            format!("/v2/{deep}/manifests/v1"),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "dotdot name upload".into(),
            "POST",
            "/v2/../blobs/uploads/".into(),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "dotdot name push".into(),
            "PUT",
            "/v2/%2e%2e/manifests/v1".into(),
            400,
            Some("NAME_INVALID"),
        ),
        // Digests.
        (
            "dotdot digest".into(),
            "GET",
            "/v2/app/blobs/..%2f..%2fmeta.redb".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "sha256 dotdot digest".into(),
            "GET",
            "/v2/app/blobs/sha256:..%2f..%2f..%2fmeta.redb".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "NUL in digest".into(),
            "HEAD",
            format!("/v2/app/blobs/{d}%00"),
            400,
            None,
        ),
        (
            "dotdot digest delete".into(),
            "DELETE",
            "/v2/app/blobs/sha256:%2e%2e".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "dotdot digest query".into(),
            "POST",
            "/v2/app/blobs/uploads/?digest=sha256:..%2F..%2Fmeta.redb".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "dotdot mount digest".into(),
            "POST",
            "/v2/app/blobs/uploads/?mount=sha256:..%2F..&from=other".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "dotdot mount from".into(),
            "POST",
            format!(
                "/v2/app/blobs/uploads/?mount={}&from=..%2Fother",
                f.other_blob
            ),
            400,
            Some("NAME_INVALID"),
        ),
        (
            "dotdot manifest digest".into(),
            "GET",
            "/v2/app/manifests/sha256:..%2F..%2Fmeta.redb".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            "dotdot tag push".into(),
            "PUT",
            "/v2/app/manifests/..%2F..%2Fx".into(),
            400,
            Some("TAG_INVALID"),
        ),
        (
            "dotdot tag delete".into(),
            "DELETE",
            "/v2/app/manifests/..%2Fmeta.redb".into(),
            404,
            Some("MANIFEST_UNKNOWN"),
        ),
        (
            "dotdot referrers".into(),
            "GET",
            "/v2/app/referrers/..%2F..%2Fx".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
        // Upload ids (the file name of a session).
        (
            "dotdot upload patch".into(),
            "PATCH",
            "/v2/app/blobs/uploads/..%2F..%2Fmeta.redb".into(),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        ),
        (
            "dotdot upload status".into(),
            "GET",
            "/v2/app/blobs/uploads/..%2F..%2Fmeta.redb".into(),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        ),
        (
            "dotdot upload cancel".into(),
            "DELETE",
            "/v2/app/blobs/uploads/..%2Fuploads%2F..%2Fmeta.redb".into(),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        ),
        (
            "dotdot upload put".into(),
            "PUT",
            format!("/v2/app/blobs/uploads/..%2Fuploads%2F{id}?digest={d}"),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        ),
        (
            "NUL upload id".into(),
            "PATCH",
            format!("/v2/app/blobs/uploads/{id}%00"),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        ),
    ];
    let n = cases.len();
    for (what, method, path, status, code) in cases {
        let req = request(method, &path, &[("Content-Range", "0-0")], Some(b"x"));
        f.expect(&what, req, status, code).await;
    }
    // A raw NUL byte or a bare `..` segment in the request line never reaches a handler.
    for raw in [
        b"GET /v2/a\0b/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /v2/app/blobs/sha256:\0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET ../../v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    ] {
        f.tried += 1;
        let r = send(f.addr(), &raw).await;
        assert!(
            r.as_ref().is_none_or(|r| (400..500).contains(&r.status)),
            "{:?} got {}",
            String::from_utf8_lossy(&raw),
            r.unwrap().head
        );
    }
    // A 64 KiB path is refused before routing.
    f.tried += 1;
    let huge = format!("/v2/{}/tags/list", "a/".repeat(32 * 1024));
    let r = send(f.addr(), &request("GET", &huge, &[], None)).await;
    assert!(r.is_none_or(|r| (400..500).contains(&r.status)));
    assert_eq!(
        std::fs::read(f.s.dir.path().join("meta.redb"))
            .unwrap()
            .len(),
        meta_before
    );
    assert_eq!(f.offset(&f.session10.clone()).await, 10);
    f.expect_unchanged("traversal attempts").await;
    println!(
        "hostile inputs tried: {} ({n} with a spec error code)",
        f.tried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_nested_and_malformed_manifests_are_refused_and_change_nothing() {
    let mut f = fixture().await;
    let put = |body: &[u8]| {
        request(
            "PUT",
            "/v2/app/manifests/hostile",
            &[MANIFEST_TYPE],
            Some(body),
        )
    };
    // 5 MiB: over the 4 MiB limit.
    let mut big = br#"{"schemaVersion":2,"annotations":{"x":""#.to_vec();
    big.resize(5 << 20, b'a');
    big.extend_from_slice(br#""}}"#);
    f.expect("5 MiB manifest", put(&big), 413, Some("MANIFEST_INVALID"))
        .await;
    // Just under the limit but a million levels deep, as arrays and as objects.
    let depth = 1 << 20;
    let mut arrays = br#"{"schemaVersion":2,"x":"#.to_vec();
    arrays.extend(std::iter::repeat_n(b'[', depth));
    arrays.extend(std::iter::repeat_n(b']', depth));
    arrays.push(b'}');
    f.expect(
        "deeply nested arrays",
        put(&arrays),
        400,
        Some("MANIFEST_INVALID"),
    )
    .await;
    let mut objects = Vec::new();
    for _ in 0..200_000 {
        objects.extend_from_slice(br#"{"a":"#);
    }
    objects.extend_from_slice(b"1");
    objects.extend(std::iter::repeat_n(b'}', 200_000));
    f.expect(
        "deeply nested objects",
        put(&objects),
        400,
        Some("MANIFEST_INVALID"),
    )
    .await;
    // Nested inside a field that is typed (config) and one that is not (annotations).
    let nested_config = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}1{},"layers":[]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    f.expect(
        "nested config",
        put(nested_config.as_bytes()),
        400,
        Some("MANIFEST_INVALID"),
    )
    .await;
    // Not UTF-8 in a field kura does not read (found by fuzz/manifest).
    let img = image_manifest(
        &(f.layer.clone(), 9),
        &[],
        serde_json::json!({"x": "lin_ux"}),
    );
    let mut bad_utf8 = img.clone();
    let at = bad_utf8.iter().position(|&b| b == b'_').unwrap();
    bad_utf8[at] = 0xBE;
    f.expect(
        "manifest with invalid UTF-8",
        put(&bad_utf8),
        400,
        Some("MANIFEST_INVALID"),
    )
    .await;
    // Truncated, empty, NUL-laden, and a JSON string rather than an object.
    f.expect(
        "truncated manifest",
        put(&img[..img.len() / 2]),
        400,
        Some("MANIFEST_INVALID"),
    )
    .await;
    f.expect("empty manifest", put(b""), 400, Some("MANIFEST_INVALID"))
        .await;
    f.expect("NULs", put(&[0u8; 4096]), 400, Some("MANIFEST_INVALID"))
        .await;
    f.expect(
        "JSON string",
        put(br#""manifest""#),
        400,
        Some("MANIFEST_INVALID"),
    )
    .await;
    // Negative and absurd sizes, bogus digests in descriptors.
    for (what, desc) in [
        (
            "negative size",
            format!(r#"{{"mediaType":"x","digest":"{}","size":-1}}"#, f.layer),
        ),
        (
            "huge size",
            format!(r#"{{"mediaType":"x","digest":"{}","size":1e400}}"#, f.layer),
        ),
        (
            "traversal digest",
            r#"{"mediaType":"x","digest":"sha256:../../meta.redb","size":1}"#.to_string(),
        ),
        (
            "md5 digest",
            r#"{"mediaType":"x","digest":"md5:d41d8cd98f00b204e9800998ecf8427e","size":1}"#
                .to_string(),
        ),
    ] {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{desc},"layers":[]}}"#
        );
        f.expect(what, put(body.as_bytes()), 400, Some("MANIFEST_INVALID"))
            .await;
    }
    // 20,000 layers, none of them present.
    let layers: Vec<(Digest, usize)> = (0..20_000u32)
        .map(|i| (Digest::sha256_of(&i.to_le_bytes()), 4))
        .collect();
    let many = image_manifest(&(f.layer.clone(), 9), &layers, serde_json::json!({}));
    assert!(many.len() < 4 << 20);
    f.expect(
        "20k missing layers",
        put(&many),
        400,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    // A body that does not match the digest it is pushed under.
    let path = format!("/v2/app/manifests/{}", Digest::sha256_of(b"something else"));
    let req = request("PUT", &path, &[MANIFEST_TYPE], Some(&img));
    f.expect("digest mismatch", req, 400, Some("DIGEST_INVALID"))
        .await;
    f.expect_unchanged("hostile manifests").await;
    println!("hostile inputs tried: {}", f.tried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_missing_content_length_fail_cleanly_and_change_nothing() {
    let mut f = fixture().await;
    let data = b"twenty bytes of blob";
    let d = Digest::sha256_of(data);
    let mono = format!("/v2/app/blobs/uploads/?digest={d}");
    // Announces 1000 bytes, sends 20 and hangs up its sending side. Regression: the 20 bytes
    // (whose digest was given) were stored with a 201 although the request was incomplete.
    let req = request("POST", &mono, &[("Content-Length", "1000")], Some(data));
    f.tried += 1;
    let r = send_opts(f.addr(), &req, true).await;
    assert!(
        r.as_ref().is_none_or(|r| r.status == 400),
        "truncated monolithic upload: {:?}",
        r.map(|r| r.head)
    );
    // The same for a streamed PATCH (no Content-Range) and for a manifest that happens to be
    // complete JSON before the announced end.
    let s10 = f.session10.clone();
    let req = request("PATCH", &s10, &[("Content-Length", "1000")], Some(data));
    f.tried += 1;
    let r = send_opts(f.addr(), &req, true).await;
    assert!(
        r.as_ref().is_none_or(|r| r.status == 400),
        "{:?}",
        r.map(|r| r.head)
    );
    let m = image_manifest(&(f.layer.clone(), 9), &[], serde_json::json!({}));
    let cl = (m.len() + 100).to_string();
    let req = request(
        "PUT",
        "/v2/app/manifests/truncated",
        &[MANIFEST_TYPE, ("Content-Length", &cl)],
        Some(&m),
    );
    f.tried += 1;
    let r = send_opts(f.addr(), &req, true).await;
    assert!(
        r.as_ref().is_none_or(|r| r.status == 400),
        "{:?}",
        r.map(|r| r.head)
    );
    // Announces 10, sends 20: only 10 are the blob, which then fails its digest.
    let req = request("POST", &mono, &[("Content-Length", "10")], Some(data));
    f.expect("short Content-Length", req, 400, Some("DIGEST_INVALID"))
        .await;
    // No Content-Length and no body on a PATCH that announces 10 bytes.
    let req = request(
        "PATCH",
        &f.session10.clone(),
        &[("Content-Range", "10-19")],
        None,
    );
    f.expect("PATCH without body", req, 400, Some("SIZE_INVALID"))
        .await;
    // Content-Length that is not a number, negative, duplicated with two values, or beside
    // Transfer-Encoding (request smuggling): refused by the HTTP layer.
    for (what, headers) in [
        (
            "non-numeric Content-Length",
            vec![("Content-Length", "ten")],
        ),
        ("negative Content-Length", vec![("Content-Length", "-20")]),
        (
            "two Content-Lengths",
            vec![("Content-Length", "20"), ("Content-Length", "10")],
        ),
        (
            "Content-Length and chunked",
            vec![("Content-Length", "20"), ("Transfer-Encoding", "chunked")],
        ),
        (
            "overflowing Content-Length",
            vec![("Content-Length", "99999999999999999999999")],
        ),
    ] {
        let req = request("POST", &mono, &headers, Some(data));
        f.tried += 1;
        let r = send(f.addr(), &req).await;
        assert!(
            r.as_ref().is_none_or(|r| r.status == 400),
            "{what}: {:?}",
            r.map(|r| r.head)
        );
    }
    // A manifest PUT with no body at all.
    let req = request("PUT", "/v2/app/manifests/empty", &[MANIFEST_TYPE], None);
    f.expect("manifest without body", req, 400, Some("MANIFEST_INVALID"))
        .await;
    // A chunked body cut off before its last chunk.
    let mut req = request(
        "PATCH",
        &f.session10.clone(),
        &[("Transfer-Encoding", "chunked")],
        None,
    );
    req.extend_from_slice(b"5\r\nabcde\r\n");
    f.tried += 1;
    let r = send_opts(f.addr(), &req, true).await;
    assert!(
        r.as_ref().is_none_or(|r| r.status == 400),
        "{:?}",
        r.map(|r| r.head)
    );
    assert_eq!(f.offset(&f.session10.clone()).await, 10);
    f.expect_unchanged("Content-Length abuse").await;
    println!("hostile inputs tried: {}", f.tried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_range_beyond_the_body_or_out_of_order_is_refused_and_rolled_back() {
    let mut f = fixture().await;
    let (s10, s0) = (f.session10.clone(), f.session0.clone());
    let patch = |path: &str, range: &str, body: &[u8]| {
        request("PATCH", path, &[("Content-Range", range)], Some(body))
    };
    let ten = b"abcdefghij";
    f.expect(
        "range beyond body",
        patch(&s10, "10-109", ten),
        400,
        Some("SIZE_INVALID"),
    )
    .await;
    f.expect(
        "range short of body",
        patch(&s10, "10-14", ten),
        400,
        Some("SIZE_INVALID"),
    )
    .await;
    // Regression: `0-18446744073709551615` overflowed the length computation (a panic in the
    // handler with debug assertions, a wrapped length without).
    f.expect(
        "range to u64::MAX",
        patch(&s0, "0-18446744073709551615", ten),
        400,
        Some("SIZE_INVALID"),
    )
    .await;
    f.expect(
        "range past u64",
        patch(&s0, "0-18446744073709551616", ten),
        416,
        Some("BLOB_UPLOAD_INVALID"),
    )
    .await;
    for (what, range) in [
        ("rewrite from 0", "0-9"),
        ("gap", "20-29"),
        ("backwards", "15-12"),
        ("overlap", "5-14"),
    ] {
        f.tried += 1;
        let r = send(f.addr(), &patch(&s10, range, ten)).await.unwrap();
        assert_eq!(r.status, 416, "{what}");
        assert_eq!(r.code().as_deref(), Some("BLOB_UPLOAD_INVALID"), "{what}");
        assert_eq!(
            r.header("range").as_deref(),
            Some("0-9"),
            "{what}: {}",
            r.head
        );
    }
    for bad in [
        "bytes=abc",
        "+10-+19",
        "10-",
        "-",
        "10 - 19",
        "ten-nineteen",
    ] {
        f.expect(bad, patch(&s10, bad, ten), 416, Some("BLOB_UPLOAD_INVALID"))
            .await;
    }
    // The closing PUT with a final chunk beyond its body keeps the session.
    let d = Digest::sha256_of(b"0123456789abcdefghij");
    let req = request(
        "PUT",
        &format!("{s10}?digest={d}"),
        &[("Content-Range", "10-29")],
        Some(ten),
    );
    f.expect("closing PUT beyond body", req, 400, Some("SIZE_INVALID"))
        .await;
    assert_eq!(f.offset(&s10).await, 10);
    assert_eq!(f.offset(&s0).await, 0);
    f.expect_unchanged("Content-Range abuse").await;
    println!("hostile inputs tried: {}", f.tried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_cancelled_finished_or_foreign_uploads_are_upload_unknown() {
    let mut f = fixture().await;
    // Cancel one session and finish another, then take the snapshot to compare with.
    let cancelled = start_session(&f.s, "app").await;
    let r = send(f.addr(), &request("DELETE", &cancelled, &[], None))
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let finished = start_session(&f.s, "app").await;
    let d = Digest::sha256_of(b"done");
    let r = send(
        f.addr(),
        &request("PUT", &format!("{finished}?digest={d}"), &[], Some(b"done")),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201);
    f.before = snapshot(&f.s).await;
    let foreign = f.session10.replacen("/v2/app/", "/v2/other/", 1);
    let unknown = format!("/v2/app/blobs/uploads/{}", uuid_like());
    for (label, path) in [
        ("cancelled", &cancelled),
        ("finished", &finished),
        ("other repository's", &foreign),
        ("never issued", &unknown),
    ] {
        let x = Digest::sha256_of(b"x");
        for (method, p, headers, body) in [
            (
                "PATCH",
                path.clone(),
                vec![("Content-Range", "0-0")],
                Some(&b"x"[..]),
            ),
            ("PATCH", path.clone(), vec![], Some(&b"x"[..])),
            ("PUT", format!("{path}?digest={x}"), vec![], Some(&b"x"[..])),
            ("GET", path.clone(), vec![], None),
            ("DELETE", path.clone(), vec![], None),
        ] {
            let what = format!("{method} on a {label} upload");
            f.expect(
                &what,
                request(method, &p, &headers, body),
                404,
                Some("BLOB_UPLOAD_UNKNOWN"),
            )
            .await;
        }
    }
    assert_eq!(f.offset(&f.session10.clone()).await, 10);
    f.expect_unchanged("requests on dead uploads").await;
    println!("hostile inputs tried: {}", f.tried);
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_of_unknown_algorithms_get_digest_invalid_and_change_nothing() {
    let mut f = fixture().await;
    let hex = f.layer.hex().to_string();
    let s10 = f.session10.clone();
    let digests = [
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_string(),
        "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709".to_string(),
        format!("sha384:{hex}{}", &hex[..32]),
        format!("SHA256:{hex}"),
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha256+b64u:{hex}"),
        format!("sha256:{hex}0"),
        format!("sha512:{hex}"),
        format!("blake2b:{hex}"),
        "sha256:".to_string(),
        format!(":{hex}"),
    ];
    for d in &digests {
        let e = d.replace('+', "%2B");
        let cases = [
            ("GET", format!("/v2/app/blobs/{e}"), None),
            ("DELETE", format!("/v2/app/blobs/{e}"), None),
            (
                "POST",
                format!("/v2/app/blobs/uploads/?digest={e}"),
                Some(&b"layer one"[..]),
            ),
            (
                "POST",
                format!("/v2/app/blobs/uploads/?mount={e}&from=other"),
                None,
            ),
            ("PUT", format!("{s10}?digest={e}"), None),
            ("GET", format!("/v2/app/manifests/{e}"), None),
            ("DELETE", format!("/v2/app/manifests/{e}"), None),
            ("GET", format!("/v2/app/referrers/{e}"), None),
        ];
        for (method, path, body) in cases {
            let what = format!("{method} {path}");
            f.expect(
                &what,
                request(method, &path, &[], body),
                400,
                Some("DIGEST_INVALID"),
            )
            .await;
        }
        // HEAD has no body to carry the code.
        f.expect(
            d,
            request("HEAD", &format!("/v2/app/blobs/{e}"), &[], None),
            400,
            None,
        )
        .await;
        let put = format!("/v2/app/manifests/{e}");
        let body = image_manifest(&(f.layer.clone(), 9), &[], serde_json::json!({}));
        let req = request("PUT", &put, &[MANIFEST_TYPE], Some(&body));
        f.expect(&format!("PUT {put}"), req, 400, Some("DIGEST_INVALID"))
            .await;
    }
    assert_eq!(f.offset(&s10).await, 10);
    f.expect_unchanged("unknown digest algorithms").await;
    println!("hostile inputs tried: {}", f.tried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_naming_another_repositorys_blobs_or_manifests_are_manifest_blob_unknown() {
    let mut f = fixture().await;
    let cfg = (f.layer.clone(), 9);
    let foreign = (f.other_blob.clone(), 13);
    let put = |reference: &str, mt: &str, body: &[u8]| {
        request(
            "PUT",
            &format!("/v2/app/manifests/{reference}"),
            &[("Content-Type", mt)],
            Some(body),
        )
    };
    let oci = MANIFEST_TYPE.1;
    let as_layer = image_manifest(&cfg, std::slice::from_ref(&foreign), serde_json::json!({}));
    f.expect(
        "foreign layer",
        put("x1", oci, &as_layer),
        400,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    let as_config = image_manifest(&foreign, &[], serde_json::json!({}));
    f.expect(
        "foreign config",
        put("x2", oci, &as_config),
        400,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    // By digest too.
    let by_digest = Digest::sha256_of(&as_layer).to_string();
    f.expect(
        "foreign layer by digest",
        put(&by_digest, oci, &as_layer),
        400,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    // An index naming `other:v1`'s manifest, which `app` does not have.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": oci, "digest": f.other_manifest.to_string(), "size": 100}],
    }))
    .unwrap();
    let idx_type = "application/vnd.oci.image.index.v1+json";
    f.expect(
        "foreign child manifest",
        put("x3", idx_type, &index),
        400,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    // An artifact manifest with a foreign blob.
    let artifact = serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
        "artifactType": "application/x.test",
        "blobs": [{"mediaType": "application/octet-stream", "digest": f.other_blob.to_string(), "size": 13}],
    }))
    .unwrap();
    let art_type = "application/vnd.oci.artifact.manifest.v1+json";
    f.expect(
        "foreign artifact blob",
        put("x4", art_type, &artifact),
        400,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    // Nor can `app` read them.
    let other_blob = f.other_blob.clone();
    let other_manifest = f.other_manifest.clone();
    let get_blob = request("GET", &format!("/v2/app/blobs/{other_blob}"), &[], None);
    f.expect("read foreign blob", get_blob, 404, Some("BLOB_UNKNOWN"))
        .await;
    let get_manifest = request(
        "GET",
        &format!("/v2/app/manifests/{other_manifest}"),
        &[],
        None,
    );
    f.expect(
        "read foreign manifest",
        get_manifest,
        404,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;
    let del = request("DELETE", &format!("/v2/app/blobs/{other_blob}"), &[], None);
    f.expect("delete foreign blob", del, 404, Some("BLOB_UNKNOWN"))
        .await;
    let del = request(
        "DELETE",
        &format!("/v2/app/manifests/{other_manifest}"),
        &[],
        None,
    );
    f.expect(
        "delete foreign manifest",
        del,
        404,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;
    // `app:v1` is still whole.
    let r = send(
        f.addr(),
        &request(
            "GET",
            &format!("/v2/app/manifests/{}", f.manifest),
            &[],
            None,
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    f.expect_unchanged("foreign references").await;
    println!("hostile inputs tried: {}", f.tried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_header_counts_and_sizes_are_refused_and_the_server_keeps_serving() {
    let mut f = fixture().await;
    let path = format!("/v2/app/manifests/{}", f.manifest);
    for (what, count, size) in [
        ("200 headers", 200usize, 8usize),
        ("5000 headers", 5000, 8),
        ("one 200 KiB header", 1, 200 << 10),
        ("one 1 MiB header", 1, 1 << 20),
    ] {
        let names: Vec<String> = (0..count).map(|i| format!("X-Hostile-{i}")).collect();
        let value = "v".repeat(size);
        let headers: Vec<(&str, &str)> =
            names.iter().map(|n| (n.as_str(), value.as_str())).collect();
        f.tried += 1;
        let r = send(f.addr(), &request("GET", &path, &headers, None)).await;
        assert!(
            r.as_ref()
                .is_none_or(|r| r.status == 431 || r.status == 400),
            "{what}: {:?}",
            r.map(|r| r.head)
        );
    }
    // The same request with a sane header count is served.
    let r = send(f.addr(), &request("GET", &path, &[("X-Ok", "1")], None))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    f.expect_unchanged("huge headers").await;
    println!("hostile inputs tried: {}", f.tried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_clients_are_cut_off_do_not_stall_others_and_leave_nothing_behind() {
    let mut f = fixture().await;
    let addr = f.addr();
    let limit = Duration::from_secs(15);
    // 30 clients dripping request headers, one byte every 200 ms: cut off after TIMEOUT.
    let mut drippers = Vec::new();
    for i in 0..30 {
        drippers.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut c = TcpStream::connect(addr).await.unwrap();
            let line = format!("GET /v2/app/tags/list?drip={i} HTTP/1.1\r\nHost: x\r\nX-Drip: ");
            for b in line.bytes().chain(std::iter::repeat(b'x')) {
                if started.elapsed() > limit {
                    return Err("still open after 15 s");
                }
                if c.write_all(&[b]).await.is_err() {
                    break; // the server closed on us
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(started.elapsed())
        }));
    }
    // A client dripping an upload chunk (50 bytes announced, 2 bytes every 100 ms) that then
    // vanishes, and one that goes silent with its connection open.
    let s10 = f.session10.clone();
    let chunk_head = format!(
        "PATCH {s10} HTTP/1.1\r\nHost: x\r\nContent-Range: 10-59\r\nContent-Length: 50\r\n\r\n"
    );
    let head = chunk_head.clone();
    let vanishing = tokio::spawn(async move {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..10 {
            c.write_all(b"zz").await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(c);
    });
    // Meanwhile everyone else is served promptly.
    let mut worst = Duration::ZERO;
    let path = format!("/v2/app/manifests/{}", f.manifest);
    for _ in 0..20 {
        let t = Instant::now();
        let r = send(addr, &request("GET", &path, &[], None)).await.unwrap();
        assert_eq!(r.status, 200);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worst < Duration::from_secs(2),
        "a pull took {worst:?} while clients dripped"
    );
    vanishing.await.unwrap();
    let mut slowest = Duration::ZERO;
    for d in drippers {
        let took = d
            .await
            .unwrap()
            .expect("header dripper cut off by the server");
        slowest = slowest.max(took);
    }
    f.tried += 31;
    // The abandoned chunk is rolled back once the server sees the client gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.offset(&s10).await != 10 {
        assert!(Instant::now() < deadline, "abandoned chunk not rolled back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The silent one gets an error once TIMEOUT passes without data, and its chunk is undone.
    let mut silent = chunk_head.into_bytes();
    silent.extend_from_slice(b"0123456789");
    let t = Instant::now();
    f.tried += 1;
    let r = send(addr, &silent)
        .await
        .expect("a reply to the silent client");
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(r.code().as_deref(), Some("BLOB_UPLOAD_INVALID"));
    let silent_cut = t.elapsed();
    assert!(
        silent_cut >= TIMEOUT && silent_cut < limit,
        "{silent_cut:?}"
    );
    assert_eq!(f.offset(&s10).await, 10);
    f.expect_unchanged("slow-drip clients").await;
    println!(
        "hostile inputs tried: {}; slowest pull {worst:?} while 31 clients dripped; header \
         drippers cut off after at most {slowest:?}; a silent body after {silent_cut:?}",
        f.tried
    );
}
