//! The properties kura's parsers must hold for any input. Each `check_*` panics when one is
//! broken. They are driven by libFuzzer (`fuzz_targets/*.rs`, `fuzz/run.sh`) and, on the stable
//! toolchain, by the main crate's `tests/fuzz_corpus.rs` (corpus replay plus a deterministic
//! random-input loop), which includes this file with `#[path]`.
//!
//! Where the spec gives a grammar, the oracle is that grammar as a regular expression, so the
//! hand-written parsers are checked against the spec's own text, not against themselves.

use std::sync::LazyLock;

use kura::api::ranges::{parse_content_range, parse_range};
use kura::digest::Digest;
use kura::error::Code;
use kura::manifest;
use kura::names::{MAX_NAME_LEN, Reference, RepoName, is_tag};
use regex::Regex;

fn re(s: &str) -> Regex {
    Regex::new(s).expect("oracle regex")
}

/// Distribution spec, "Pulling manifests": the `<name>` grammar.
static NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
});
/// Distribution spec: the `<reference>` tag grammar.
static TAG: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"));
/// Image spec, "Digests": the general grammar...
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"));
/// ...and the encodings of the algorithms kura supports.
static SUPPORTED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}|blake3:[a-f0-9]{64})$"));
/// A `Range` spec kura reads (whitespace around the numbers tolerated).
static RANGE_LENIENT: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\d*\s*-\s*\d*\s*$"));
static RANGE_STRICT: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d*)-(\d*)$"));
/// The spec's chunk `Content-Range` (`^[0-9]+-[0-9]+$`)...
static CONTENT_RANGE_STRICT: LazyLock<Regex> = LazyLock::new(|| re(r"^([0-9]+)-([0-9]+)$"));
/// ...and the lenient forms kura also takes (`bytes ` prefix, `/total` suffix).
static CONTENT_RANGE_LENIENT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?s)^\s*(?:bytes )*(?:bytes=)*([0-9]+)-([0-9]+)(?:/.*)?$"));

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A digest is accepted exactly when it matches the spec grammar and a supported algorithm's
/// encoding; it prints back as given; a rejection is `DIGEST_INVALID`.
pub fn check_digest(data: &[u8]) {
    let s = text(data);
    let expected = DIGEST.is_match(&s) && SUPPORTED.is_match(&s);
    match s.parse::<Digest>() {
        Ok(d) => {
            assert!(expected, "accepted a digest outside the grammar: {s:?}");
            assert_eq!(d.to_string(), s, "digest does not print back as given");
            assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
            // Blob files are named by the hex part: it must be a plain file name.
            assert!(d.hex().bytes().all(|b| b.is_ascii_hexdigit()), "{s:?}");
        }
        Err(e) => {
            assert!(!expected, "rejected a valid digest: {s:?}: {e}");
            assert_eq!(e.code, Code::DigestInvalid, "{s:?}");
        }
    }
}

/// A repository name is accepted exactly when it matches the spec grammar and fits in
/// `MAX_NAME_LEN`; tags exactly when they match the tag grammar.
pub fn check_name(data: &[u8]) {
    let s = text(data);
    let expected = s.len() <= MAX_NAME_LEN && NAME.is_match(&s);
    match RepoName::parse(&s) {
        Ok(n) => {
            assert!(expected, "accepted a name outside the grammar: {s:?}");
            assert_eq!(n.as_str(), s);
            assert!(
                s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
                "{s:?}"
            );
        }
        Err(e) => {
            assert!(!expected, "rejected a valid name: {s:?}: {e}");
            assert_eq!(e.code, Code::NameInvalid, "{s:?}");
        }
    }
    assert_eq!(
        is_tag(&s),
        TAG.is_match(&s),
        "tag grammar disagrees on {s:?}"
    );
}

/// A reference with a `:` is a digest (same rules as `check_digest`), anything else a tag;
/// rejections carry `DIGEST_INVALID` or `TAG_INVALID` accordingly; references print back.
pub fn check_reference(data: &[u8]) {
    let s = text(data);
    match Reference::parse(&s) {
        Ok(r) => {
            assert_eq!(r.to_string(), s, "reference does not print back");
            match r {
                Reference::Tag(_) => assert!(TAG.is_match(&s), "bad tag accepted: {s:?}"),
                Reference::Digest(_) => assert!(SUPPORTED.is_match(&s), "{s:?}"),
            }
        }
        Err(e) if s.contains(':') => {
            assert!(!SUPPORTED.is_match(&s), "valid digest rejected: {s:?}");
            assert_eq!(e.code, Code::DigestInvalid, "{s:?}");
        }
        Err(e) => {
            assert!(!TAG.is_match(&s), "valid tag rejected: {s:?}");
            assert_eq!(e.code, Code::TagInvalid, "{s:?}");
        }
    }
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(a)
}

/// `Range` against a blob of a size taken from the input: a served range lies inside the blob,
/// strict forms give exactly RFC 9110's answer, and a refusal is a 416 with `bytes */size`.
pub fn check_range(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(9));
    let raw = u64_le(head.get(1..).unwrap_or(&[]));
    let size = match head.first().copied().unwrap_or(0) % 4 {
        0 => raw,
        1 => raw % 16,
        2 => raw % 100_000,
        _ => u64::MAX - raw % 4,
    };
    let header = text(rest);
    assert_eq!(parse_range(None, size).unwrap(), None);
    let got = parse_range(Some(&header), size);
    let spec = header.trim().strip_prefix("bytes=");
    match &got {
        Ok(Some((start, end))) => {
            assert!(
                start <= end && *end < size,
                "{header:?} on {size}: {start}-{end}"
            );
            let spec = spec.expect("served a range without bytes=");
            assert!(RANGE_LENIENT.is_match(spec), "served odd range {header:?}");
        }
        Ok(None) => assert!(
            spec.is_none_or(|s| s.contains(',')),
            "ignored a single range {header:?}"
        ),
        Err(e) => {
            assert_eq!(e.status.as_u16(), 416, "{header:?}");
            assert_eq!(e.code, Code::SizeInvalid);
            assert!(
                e.headers
                    .iter()
                    .any(|(n, v)| *n == "Content-Range" && *v == format!("bytes */{size}")),
                "416 without Content-Range: bytes */{size}"
            );
        }
    }
    // Strict forms: compare with RFC 9110 section 14.1.2 computed here.
    let Some(c) = spec.and_then(|s| RANGE_STRICT.captures(s)) else {
        return;
    };
    let num = |i: usize| c.get(i).map(|m| m.as_str()).filter(|s| !s.is_empty());
    // `None` for a number too large for a u64.
    let parse = |s: &str| s.parse::<u64>().ok();
    let want = match (num(1), num(2)) {
        (None, None) => None,
        (Some(a), None) => parse(a).filter(|&a| a < size).map(|a| (a, size - 1)),
        (None, Some(n)) => match parse(n) {
            Some(0) => None,
            _ if size == 0 => None,
            Some(n) => Some((size.saturating_sub(n), size - 1)),
            // A suffix beyond u64 means "the whole blob" to RFC 9110; kura may refuse it.
            None => return,
        },
        (Some(a), Some(b)) => match (parse(a), parse(b)) {
            (Some(a), Some(b)) if a <= b && a < size => Some((a, b.min(size - 1))),
            // A last position beyond u64 means "to the end"; kura may refuse it.
            (Some(a), None) if a < size => return,
            _ => None,
        },
    };
    assert_eq!(got.ok().flatten(), want, "{header:?} on a {size}-byte blob");
}

/// Chunk `Content-Range`: the spec's form is always accepted with its numbers; anything
/// accepted is one of the tolerated forms with the same numbers; refusals are 416
/// `BLOB_UPLOAD_INVALID`.
pub fn check_content_range(data: &[u8]) {
    let s = text(data);
    match parse_content_range(&s) {
        Ok((a, b)) => {
            let c = CONTENT_RANGE_LENIENT
                .captures(s.trim())
                .unwrap_or_else(|| panic!("accepted odd Content-Range {s:?}"));
            assert_eq!(c[1].parse::<u64>().ok(), Some(a), "{s:?}");
            assert_eq!(c[2].parse::<u64>().ok(), Some(b), "{s:?}");
        }
        Err(e) => {
            assert_eq!(e.code, Code::BlobUploadInvalid, "{s:?}");
            assert_eq!(e.status.as_u16(), 416, "{s:?}");
            if let Some(c) = CONTENT_RANGE_STRICT.captures(&s) {
                assert!(
                    c[1].parse::<u64>().is_err() || c[2].parse::<u64>().is_err(),
                    "rejected spec-form Content-Range {s:?}"
                );
            }
        }
    }
    // Any two numbers round-trip through the spec's form.
    let (a, b) = (u64_le(data), u64_le(data.get(8..).unwrap_or(&[])));
    assert_eq!(parse_content_range(&format!("{a}-{b}")).unwrap(), (a, b));
}

const MEDIA_TYPES: [Option<&str>; 9] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::OCI_ARTIFACT),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_LIST),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("text/plain"),
];

/// Manifest validation never panics or overflows the stack (deep nesting included); what it
/// accepts is JSON whose digests are valid, sorted and distinct, with the config of an image
/// manifest among its blobs; what it refuses is `MANIFEST_INVALID`.
pub fn check_manifest(data: &[u8]) {
    let (ct, body) = match data.split_first() {
        Some((sel, body)) => (MEDIA_TYPES[*sel as usize % MEDIA_TYPES.len()], body),
        None => (None, data),
    };
    match manifest::parse(ct, body) {
        Ok(p) => {
            let v: serde_json::Value =
                serde_json::from_slice(body).expect("accepted a manifest that is not JSON");
            assert!(!p.media_type.is_empty());
            for list in [&p.blobs, &p.manifests] {
                assert!(list.windows(2).all(|w| w[0] < w[1]), "not sorted/deduped");
                for d in list.iter() {
                    assert_eq!(d.to_string().parse::<Digest>().unwrap(), *d);
                }
            }
            if p.media_type == manifest::OCI_MANIFEST || p.media_type == manifest::DOCKER_MANIFEST {
                let config: Digest = v["config"]["digest"]
                    .as_str()
                    .expect("config digest")
                    .parse()
                    .expect("config digest parses");
                assert!(p.blobs.contains(&config), "config missing from blobs");
            }
        }
        Err(e) => assert_eq!(e.code, Code::ManifestInvalid, "{e}"),
    }
}
