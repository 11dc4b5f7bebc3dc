//! The filesystem layout of a CNCF Distribution store (`registry:2`, Debian's
//! `docker-registry`), as its path mapper defines it: `registry/storage/paths.go` of
//! github.com/distribution/distribution (the `pathMapper` and its `*PathSpec` types; read at
//! commit 093cb6b10afc9e8b16c028bfe3ad927dc83ea9df, unchanged in substance through 2.8).
//!
//! ```text
//! <rootdirectory>/docker/registry/v2/                   pathMapper root "/docker/registry/" + "v2"
//! ├── blobs/<alg>/<hex[0..2]>/<hex>/data                 blobDataPathSpec: the bytes
//! └── repositories/<name>/                               <name> may hold slashes (nested dirs)
//!     ├── _layers/<alg>/<hex>/link                       layerLinkPathSpec: the repo may serve the blob
//!     ├── _manifests/revisions/<alg>/<hex>/link          manifestRevisionLinkPathSpec: a revision
//!     ├── _manifests/tags/<tag>/current/link             manifestTagCurrentPathSpec: the tag's revision
//!     ├── _manifests/tags/<tag>/index/<alg>/<hex>/link   manifestTagIndexEntryLinkPathSpec: history
//!     └── _uploads/<id>/...                              uploadDataPathSpec etc.: not imported
//! ```
//!
//! A link file holds a digest, `<alg>:<hex>` (see `layerLinkPathSpec`'s comment); for layers
//! and revisions it is the digest its path names. A directory is a repository when it holds
//! `_manifests` (Distribution's catalog walk, `handleRepository`) or `_layers`; names starting
//! with `_` are never descended into. Tag index entries are the revisions a tag pointed to
//! before: kura keeps no tag history, so they are not read (the revisions themselves are
//! imported from `revisions/`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Repository names nest at most this deep (a name is at most 255 characters anyway).
const MAX_DEPTH: usize = 128;

/// A Distribution store's `docker/registry/v2` tree.
#[derive(Debug, Clone)]
pub struct Layout {
    v2: PathBuf,
}

/// One link file: where it is, and the digest it holds (that its path names).
#[derive(Debug, Clone)]
pub struct Link {
    pub path: PathBuf,
    /// The digest the file holds, or why it cannot be used.
    pub target: Result<Digest, String>,
}

/// A tag and its `current/link`.
#[derive(Debug, Clone)]
pub struct TagLink {
    pub tag: String,
    pub path: PathBuf,
    pub target: Result<Digest, String>,
}

impl Layout {
    /// The store whose `rootdirectory` is `root`; an error unless it holds `docker/registry/v2`.
    pub fn open(root: &Path) -> io::Result<Layout> {
        let v2 = root.join("docker").join("registry").join("v2");
        if !v2.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not a Distribution rootdirectory (no docker/registry/v2 in it)",
                    root.display()
                ),
            ));
        }
        Ok(Layout { v2 })
    }

    /// `blobDataPathSpec`: `blobs/<alg>/<first two hex digits>/<hex>/data`.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.v2
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }

    /// `repositoriesRootPathSpec`: `repositories/`.
    pub fn repositories_dir(&self) -> PathBuf {
        self.v2.join("repositories")
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.repositories_dir().join(repo)
    }

    /// Every repository, in byte order of its name.
    pub fn repositories(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let top = self.v2.join("repositories");
        if top.is_dir() {
            walk(&top, "", 0, &mut out)?;
        }
        out.sort();
        Ok(out)
    }

    /// `layerLinkPathSpec`: `_layers/<alg>/<hex>/link` of `repo`.
    pub fn layer_links(&self, repo: &str) -> io::Result<Vec<Link>> {
        digest_links(&self.repo_dir(repo).join("_layers"))
    }

    /// `manifestRevisionLinkPathSpec`: `_manifests/revisions/<alg>/<hex>/link` of `repo`.
    pub fn revision_links(&self, repo: &str) -> io::Result<Vec<Link>> {
        digest_links(&self.repo_dir(repo).join("_manifests").join("revisions"))
    }

    /// `manifestTagCurrentPathSpec`: `_manifests/tags/<tag>/current/link` of every tag of `repo`.
    pub fn tags(&self, repo: &str) -> io::Result<Vec<TagLink>> {
        let dir = self.repo_dir(repo).join("_manifests").join("tags");
        let mut out = Vec::new();
        for tag in sorted_dirs(&dir)? {
            let path = dir.join(&tag).join("current").join("link");
            let target = read_link(&path);
            out.push(TagLink { tag, path, target });
        }
        Ok(out)
    }

    /// Upload sessions in progress under `_uploads/` of `repo` (not imported).
    pub fn upload_count(&self, repo: &str) -> io::Result<usize> {
        Ok(sorted_dirs(&self.repo_dir(repo).join("_uploads"))?.len())
    }
}

/// Collects the repositories under `dir` (named `prefix...`).
fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{} nests deeper than {MAX_DEPTH} directories",
            dir.display()
        )));
    }
    let mut is_repo = false;
    for name in sorted_dirs(dir)? {
        if name == "_manifests" || name == "_layers" {
            is_repo = true;
        } else if !name.starts_with('_') {
            let child = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            walk(&dir.join(&name), &child, depth + 1, out)?;
        }
    }
    if is_repo && !prefix.is_empty() {
        out.push(prefix.to_string());
    }
    Ok(())
}

/// The names of the directories in `dir` (not following symbolic links), sorted; none when
/// `dir` does not exist.
fn sorted_dirs(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// The `<alg>/<hex>/link` files under `dir`.
fn digest_links(dir: &Path) -> io::Result<Vec<Link>> {
    let mut out = Vec::new();
    for alg in sorted_dirs(dir)? {
        for hex in sorted_dirs(&dir.join(&alg))? {
            let path = dir.join(&alg).join(&hex).join("link");
            let named = format!("{alg}:{hex}");
            let target = match named.parse::<Digest>() {
                Err(e) => Err(format!(
                    "the path names no digest kura supports: {}",
                    e.message
                )),
                Ok(want) => read_link(&path).and_then(|got| {
                    if got == want {
                        Ok(got)
                    } else {
                        Err(format!(
                            "the link holds {got}, not the {want} its path names"
                        ))
                    }
                }),
            };
            out.push(Link { path, target });
        }
    }
    Ok(out)
}

/// The digest a link file holds.
fn read_link(path: &Path) -> Result<Digest, String> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("no link file".into()),
        Err(e) => return Err(format!("unreadable link: {e}")),
    };
    let text = String::from_utf8_lossy(&text);
    text.trim()
        .parse::<Digest>()
        .map_err(|e| format!("the link holds no digest ({})", e.message))
}
