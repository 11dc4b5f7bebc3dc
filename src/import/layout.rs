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
//! and revisions it is the digest its path names. A directory without its `link` is what a
//! delete leaves (Distribution removes the link file): skipped, as Distribution does. A directory is a repository when it holds
//! `_manifests` (Distribution's catalog walk, `handleRepository`) or `_layers`; names starting
//! with `_` are never descended into. Tag index entries are the revisions a tag pointed to
//! before: kura keeps no tag history, so they are not read (the revisions themselves are
//! imported from `revisions/`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::plan::ProblemKind;
use crate::digest::{Algorithm, Digest};
use crate::store::S3Store;

/// Repository names nest at most this deep (a name is at most 255 characters anyway).
const MAX_DEPTH: usize = 128;

/// `pathMapper`'s root and version: every path below is relative to it.
const V2: &str = "docker/registry/v2";

/// A Distribution store's `docker/registry/v2` tree, in a directory (the filesystem driver's
/// `rootdirectory`) or a bucket (the s3 driver's; the bucket store's prefix).
#[derive(Clone)]
pub struct Layout {
    tree: Tree,
}

#[derive(Clone)]
enum Tree {
    Dir(PathBuf),
    Bucket(S3Store),
}

/// Where a blob's bytes are read from.
pub enum BlobSource {
    File(PathBuf),
    Object(S3Store, object_store::path::Path),
}

/// One link file: where it is, and the digest it holds (that its path names).
#[derive(Debug, Clone)]
pub struct Link {
    pub path: String,
    /// The digest the file holds, or what is wrong with it and why.
    pub target: Result<Digest, (ProblemKind, String)>,
}

/// A tag and its `current/link`.
#[derive(Debug, Clone)]
pub struct TagLink {
    pub tag: String,
    pub path: String,
    pub target: Result<Digest, String>,
}

impl Layout {
    /// The store whose `rootdirectory` is `root`; an error unless it holds `docker/registry/v2`.
    pub fn open(root: &Path) -> io::Result<Layout> {
        let v2 = root.join(V2);
        if !v2.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not a Distribution rootdirectory (no {V2} in it)",
                    root.display()
                ),
            ));
        }
        Ok(Layout {
            tree: Tree::Dir(v2),
        })
    }

    /// The store in the bucket `store` names, its prefix being the s3 driver's
    /// `rootdirectory`; an error unless objects are under `docker/registry/v2/repositories`.
    pub fn open_bucket(store: S3Store) -> io::Result<Layout> {
        let layout = Layout {
            tree: Tree::Bucket(store.clone()),
        };
        if layout.dirs("repositories")?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} holds no Distribution store (nothing under {V2}/repositories/)",
                    store.describe()
                ),
            ));
        }
        Ok(layout)
    }

    /// `rel` (under `docker/registry/v2`) for messages.
    pub fn show(&self, rel: &str) -> String {
        match &self.tree {
            Tree::Dir(v2) => v2.join(rel).display().to_string(),
            Tree::Bucket(s) => format!("{}/{V2}/{rel}", s.describe()),
        }
    }

    fn key(s: &S3Store, rel: &str) -> object_store::path::Path {
        s.key(&format!("{V2}/{rel}"))
    }

    /// The names of the directories (key prefixes) in `rel`, sorted; none when it is absent.
    fn dirs(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut out = match &self.tree {
            Tree::Dir(v2) => dir_names(&v2.join(rel))?,
            Tree::Bucket(s) => {
                let (s3, key) = (s.s3(), Self::key(s, rel));
                s.run(async move {
                    use object_store::ObjectStore;
                    let listed = s3
                        .list_with_delimiter(Some(&key))
                        .await
                        .map_err(crate::store::s3::io_err)?;
                    Ok(listed
                        .common_prefixes
                        .iter()
                        .filter_map(|p| p.filename().map(str::to_string))
                        .collect())
                })?
            }
        };
        out.sort();
        Ok(out)
    }

    /// The content of file `rel`; `None` when it does not exist.
    fn read(&self, rel: &str) -> io::Result<Option<Vec<u8>>> {
        match &self.tree {
            Tree::Dir(v2) => match fs::read(v2.join(rel)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Tree::Bucket(s) => {
                let (s3, key) = (s.s3(), Self::key(s, rel));
                s.run(async move { crate::store::s3::get_all(&s3, &key).await })
                    .map(|b| b.map(|b| b.to_vec()))
            }
        }
    }

    /// `blobDataPathSpec`: `blobs/<alg>/<first two hex digits>/<hex>/data`.
    fn blob_rel(d: &Digest) -> String {
        let (alg, hex) = (d.algorithm().as_str(), d.hex());
        format!("blobs/{alg}/{}/{hex}/data", &hex[..2])
    }

    /// Where blob `d` is, for messages.
    pub fn blob_where(&self, d: &Digest) -> String {
        self.show(&Self::blob_rel(d))
    }

    /// The size of blob `d`, `None` when the store lacks it.
    pub fn blob_size(&self, d: &Digest) -> io::Result<Option<u64>> {
        match &self.tree {
            Tree::Dir(v2) => match fs::metadata(v2.join(Self::blob_rel(d))) {
                Ok(m) if m.is_file() => Ok(Some(m.len())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Tree::Bucket(s) => {
                let (s3, key) = (s.s3(), Self::key(s, &Self::blob_rel(d)));
                s.run(async move {
                    use object_store::ObjectStoreExt;
                    match s3.head(&key).await {
                        Ok(m) => Ok(Some(m.size)),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(crate::store::s3::io_err(e)),
                    }
                })
            }
        }
    }

    /// The bytes of (small) blob `d`, `None` when the store lacks it.
    pub fn read_blob(&self, d: &Digest) -> io::Result<Option<Vec<u8>>> {
        self.read(&Self::blob_rel(d))
    }

    /// Where to read blob `d` from.
    pub fn blob_source(&self, d: &Digest) -> BlobSource {
        match &self.tree {
            Tree::Dir(v2) => BlobSource::File(v2.join(Self::blob_rel(d))),
            Tree::Bucket(s) => BlobSource::Object(s.clone(), Self::key(s, &Self::blob_rel(d))),
        }
    }

    /// Every repository, in byte order of its name.
    pub fn repositories(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk("repositories", "", 0, &mut out)?;
        out.sort();
        Ok(out)
    }

    /// `repositoriesRootPathSpec` + `<name>`, for messages.
    pub fn repository_where(&self, repo: &str) -> String {
        self.show(&format!("repositories/{repo}"))
    }

    /// `layerLinkPathSpec`: `_layers/<alg>/<hex>/link` of `repo`.
    pub fn layer_links(&self, repo: &str) -> io::Result<Vec<Link>> {
        self.digest_links(&format!("repositories/{repo}/_layers"))
    }

    /// `manifestRevisionLinkPathSpec`: `_manifests/revisions/<alg>/<hex>/link` of `repo`.
    pub fn revision_links(&self, repo: &str) -> io::Result<Vec<Link>> {
        self.digest_links(&format!("repositories/{repo}/_manifests/revisions"))
    }

    /// `manifestTagCurrentPathSpec`: `_manifests/tags/<tag>/current/link` of every tag of `repo`.
    pub fn tags(&self, repo: &str) -> io::Result<Vec<TagLink>> {
        let dir = format!("repositories/{repo}/_manifests/tags");
        let mut out = Vec::new();
        for tag in self.dirs(&dir)? {
            let rel = format!("{dir}/{tag}/current/link");
            let Some(target) = self.read_link(&rel)? else {
                continue;
            };
            out.push(TagLink {
                tag,
                path: self.show(&rel),
                target,
            });
        }
        Ok(out)
    }

    /// Upload sessions in progress under `_uploads/` of `repo` (not imported).
    pub fn upload_count(&self, repo: &str) -> io::Result<usize> {
        Ok(self.dirs(&format!("repositories/{repo}/_uploads"))?.len())
    }

    /// Collects the repositories under `rel` (named `prefix...`).
    fn walk(&self, rel: &str, prefix: &str, depth: usize, out: &mut Vec<String>) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{} nests deeper than {MAX_DEPTH} directories",
                self.show(rel)
            )));
        }
        let mut is_repo = false;
        for name in self.dirs(rel)? {
            if name == "_manifests" || name == "_layers" {
                is_repo = true;
            } else if !name.starts_with('_') {
                let child = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                self.walk(&format!("{rel}/{name}"), &child, depth + 1, out)?;
            }
        }
        if is_repo && !prefix.is_empty() {
            out.push(prefix.to_string());
        }
        Ok(())
    }

    /// The `<alg>/<hex>/link` files under `rel`.
    fn digest_links(&self, rel: &str) -> io::Result<Vec<Link>> {
        let mut out = Vec::new();
        for alg in self.dirs(rel)? {
            for hex in self.dirs(&format!("{rel}/{alg}"))? {
                let link = format!("{rel}/{alg}/{hex}/link");
                let Some(held) = self.read_link(&link)? else {
                    continue;
                };
                let known = Algorithm::ALL.iter().any(|a| a.as_str() == alg);
                let target = match format!("{alg}:{hex}").parse::<Digest>() {
                    Err(_) if !known => Err((
                        ProblemKind::Unsupported,
                        format!("kura stores no {alg} digests"),
                    )),
                    Err(e) => Err((
                        ProblemKind::BadLink,
                        format!("the path names no digest: {}", e.message),
                    )),
                    Ok(want) => match held {
                        Ok(got) if got == want => Ok(got),
                        Ok(got) => Err((
                            ProblemKind::BadLink,
                            format!("the link holds {got}, not the {want} its path names"),
                        )),
                        Err(why) => Err((ProblemKind::BadLink, why)),
                    },
                };
                out.push(Link {
                    path: self.show(&link),
                    target,
                });
            }
        }
        Ok(out)
    }

    /// The digest link file `rel` holds, or why it holds none; `None` when there is no link
    /// file: a deleted revision, layer link or tag (Distribution's deletes remove the `link`
    /// and may leave its directory).
    fn read_link(&self, rel: &str) -> io::Result<Option<Result<Digest, String>>> {
        let Some(text) = self.read(rel)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&text);
        Ok(Some(text.trim().parse::<Digest>().map_err(|e| {
            format!("the link holds no digest ({})", e.message)
        })))
    }
}

/// The names of the directories in `dir` (not following symbolic links); none when `dir`
/// does not exist.
fn dir_names(dir: &Path) -> io::Result<Vec<String>> {
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
    Ok(out)
}
