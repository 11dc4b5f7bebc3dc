//! Repository names, tags and manifest references, validated by the distribution spec's grammar.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Code, Error};

/// Longest repository name accepted (clients limit `host/name` to 255 characters).
pub const MAX_NAME_LEN: usize = 255;

/// A validated repository name such as `library/alpine`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Validates `s` against `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.len() > MAX_NAME_LEN {
            return Err(Error::new(
                Code::NameInvalid,
                format!("repository name longer than {MAX_NAME_LEN} characters"),
            ));
        }
        if s.split('/').all(is_path_component) {
            Ok(RepoName(s.to_string()))
        } else {
            Err(Error::new(
                Code::NameInvalid,
                format!("invalid repository name {s:?}"),
            ))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// True when `s` is a valid tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || b"._-".contains(&x))
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with a `:` must be a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else if is_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(Error::new(Code::TagInvalid, format!("invalid tag {s:?}")))
        }
    }

    /// Parses a reference to look up (GET, HEAD, DELETE): a malformed digest is still 400
    /// `DIGEST_INVALID`, but a would-be tag outside the tag grammar can name no manifest, so
    /// it is 404 `MANIFEST_UNKNOWN` (the conformance suite asks for `.INVALID_MANIFEST_NAME`).
    /// Storing under such a tag stays 400 `TAG_INVALID` (`parse`).
    pub fn parse_lookup(s: &str) -> Result<Self, Error> {
        Reference::parse(s).map_err(|e| match e.code {
            Code::TagInvalid => Error::new(
                Code::ManifestUnknown,
                format!("manifest {s:?} is unknown (not a valid tag or digest)"),
            ),
            _ => e,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for ok in ["a", "library/alpine", "a.b_c__d---e/f0", "x/y/z", "0"] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a_", ".a", "a b", "a/../b",
            "a:b",
        ] {
            assert_eq!(
                RepoName::parse(bad).unwrap_err().code,
                Code::NameInvalid,
                "{bad}"
            );
        }
        assert!(RepoName::parse(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for ok in ["latest", "v1.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(!is_tag(bad), "{bad}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(Reference::parse("v1").unwrap(), Reference::Tag("v1".into()));
        assert!(matches!(
            Reference::parse(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            Ok(Reference::Digest(_))
        ));
        assert_eq!(
            Reference::parse("sha256:zz").unwrap_err().code,
            Code::DigestInvalid
        );
        assert_eq!(Reference::parse("-bad").unwrap_err().code, Code::TagInvalid);
    }

    #[test]
    fn lookup_of_an_invalid_tag_is_manifest_unknown_and_of_a_bad_digest_digest_invalid() {
        for bad in [".INVALID_MANIFEST_NAME", "-bad", "../meta.redb", ""] {
            let e = Reference::parse_lookup(bad).unwrap_err();
            assert_eq!(e.code, Code::ManifestUnknown, "{bad:?}");
            assert_eq!(e.status, actix_web::http::StatusCode::NOT_FOUND);
        }
        assert_eq!(
            Reference::parse_lookup("sha256:zz").unwrap_err().code,
            Code::DigestInvalid
        );
        assert_eq!(
            Reference::parse_lookup("v1").unwrap(),
            Reference::Tag("v1".into())
        );
    }
}
