//! Every redb table of the metadata store. Keys are strings in their canonical form
//! (repository names, `algorithm:hex` digests, tags, upload UUIDs); ARCHITECTURE.md explains each.

use redb::TableDefinition;

/// `"schema_version"` → the store's schema version.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// repository name → creation time (unix seconds).
pub const REPOSITORIES: TableDefinition<&str, u64> = TableDefinition::new("repositories");
/// digest → (size, reference count, last touched). One row per blob file, manifests included.
/// "Touched" is when the blob was last uploaded, mounted or shown to a client while unreferenced;
/// the garbage collector's grace period counts from it.
pub const BLOBS: TableDefinition<&str, (u64, u64, u64)> = TableDefinition::new("blobs");
/// (repository, digest) → link time: the blobs a repository may serve.
pub const REPO_BLOBS: TableDefinition<(&str, &str), u64> = TableDefinition::new("repo_blobs");
/// (digest, repository) → (): the reverse of `REPO_BLOBS` (schema version 2), so removing a blob
/// finds every link to it without a scan.
pub const BLOB_LINKS: TableDefinition<(&str, &str), ()> = TableDefinition::new("blob_links");
/// (repository, manifest digest) → JSON `ManifestRecord`: the manifest revisions.
pub const MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
/// (repository, tag) → manifest digest.
pub const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
/// (repository, subject digest, referrer manifest digest) → (): the referrers index.
pub const REFERRERS: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("referrers");
/// upload UUID → JSON `UploadRecord`: the open upload sessions.
pub const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// (endpoint name, sequence) → JSON event: webhook notifications not yet delivered (v3).
pub const NOTIFICATIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("notifications");
/// counter name → value: store totals kept in the transactions that change them (v4), so
/// `/metrics` reads them instead of scanning. `"blob_bytes"`: the sum of `blobs` sizes. (Row
/// counts need no counter: redb keeps each table's length in its header.)
pub const STATS: TableDefinition<&str, u64> = TableDefinition::new("stats");
/// name → value: facts about the store itself (v5). `"blob_store"`: where the blobs of this
/// metadata live (JSON `StoreIdentity`), checked against the configuration at every open.
pub const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
/// (digest, repository, manifest digest) → (): references a cached (mirrored) manifest revision
/// makes to content not stored yet (v6). A mirror records an upstream manifest before its blobs
/// are fetched; such a reference is counted on the blob's row when that row is created
/// (`blobs::touch`), and dropped here instead of uncounted if the revision goes first.
pub const DEFERRED_REFS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("deferred_refs");
/// (repository, tag) → when the cached tag was last confirmed upstream (unix seconds; v6).
pub const MIRROR_TAGS: TableDefinition<(&str, &str), u64> = TableDefinition::new("mirror_tags");
/// (repository, digest) → when a client last pulled this cached manifest or blob (unix
/// seconds; v6): the order in which a mirror over its size budget evicts.
pub const MIRROR_PULLS: TableDefinition<(&str, &str), u64> = TableDefinition::new("mirror_pulls");
/// quota scope (`repo:<name>` or `ns:<prefix>`) → the unique bytes it holds (v7; quotas).
pub const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
/// (quota scope, digest) → (holdings, size) (v7; quotas): how many links and revisions of the
/// digest the scope's repositories have, and the size it counts; the size counts toward the
/// scope while the holdings are above zero (`meta/usage.rs`).
pub const SCOPE_BLOBS: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("scope_blobs");
/// (repository, tag) → when the tag was last pulled (unix seconds; v7; retention), written in
/// batches, not per pull.
pub const TAG_PULLS: TableDefinition<(&str, &str), u64> = TableDefinition::new("tag_pulls");
/// (repository, tag) → when the tag was last pushed (unix seconds; v7; retention's
/// `keep_last` order, and the start of `not_pulled_for` for a tag never pulled).
pub const TAG_PUSHES: TableDefinition<(&str, &str), u64> = TableDefinition::new("tag_pushes");
