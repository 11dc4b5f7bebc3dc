//! The metadata boundary: the row operations every backend (redb, PostgreSQL) provides, one
//! trait pair per concern. The rules built on them (reference counting, grace periods, usage,
//! notification order) live once, in the concern modules beside this one, so every backend
//! obeys the same rules; a backend only stores and finds rows.
//!
//! Keys and orders are those of `tables.rs`: strings compared bytewise. A `page` returns up to
//! `n` rows after `after` (exclusive) in key order, within the given leading key.
//!
//! A transaction (`WriteTx`) sees its own writes and is isolated from every other: the
//! backend runs it as if alone (redb has one writer; PostgreSQL runs it SERIALIZABLE and
//! re-runs it on a conflict).

use super::blobs::BlobRow;
use crate::error::Result;

/// Store-wide row counts (`/metrics`, the operations page).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub repositories: u64,
    pub manifests: u64,
    pub blobs: u64,
    pub notifications: u64,
}

pub trait ReposRead {
    /// The creation time of `repo`.
    fn repo(&self, repo: &str) -> Result<Option<u64>>;
    /// Up to `n` repository names starting with `prefix` after `after`, in order.
    fn repos_page(&self, prefix: &str, after: Option<&str>, n: usize) -> Result<Vec<String>>;
    fn counts(&self) -> Result<Counts>;
}
pub trait ReposWrite {
    fn put_repo(&mut self, repo: &str, created: u64) -> Result<()>;
    fn remove_repo(&mut self, repo: &str) -> Result<bool>;
}

pub trait BlobsRead {
    fn blob(&self, digest: &str) -> Result<Option<BlobRow>>;
    /// Up to `n` blob rows after digest `after`, in order.
    fn blobs_page(&self, after: Option<&str>, n: usize) -> Result<Vec<(String, BlobRow)>>;
    /// When `repo` was linked to `digest` (it may serve it).
    fn link(&self, repo: &str, digest: &str) -> Result<Option<u64>>;
    /// Every repository linking `digest`.
    fn links_of(&self, digest: &str) -> Result<Vec<String>>;
    /// Up to `n` links (repository, digest) after `after`, in order, of repositories starting
    /// with `prefix`.
    fn links_page(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String)>>;
    /// The (repository, digest) links found in only one of the link table and its reverse
    /// index (a backend whose index the engine keeps has none).
    fn asymmetric_links(&self) -> Result<Vec<(String, String)>>;
}
pub trait BlobsWrite {
    /// Writes the row of `digest`; returns the row it replaced.
    fn put_blob(&mut self, digest: &str, row: BlobRow) -> Result<Option<BlobRow>>;
    fn remove_blob(&mut self, digest: &str) -> Result<Option<BlobRow>>;
    /// Links `repo` to `digest` at `at`; true when the link is new.
    fn put_link(&mut self, repo: &str, digest: &str, at: u64) -> Result<bool>;
    /// True when there was a link.
    fn remove_link(&mut self, repo: &str, digest: &str) -> Result<bool>;
}

/// What a manifest request finds in one repository (`ManifestsRead::manifest_lookup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLookup {
    /// Whether the repository exists.
    pub repo: bool,
    /// The digest the reference names: the one given, or the tag's (none for an unknown tag).
    pub digest: Option<String>,
    /// That revision's JSON record, if the repository has it.
    pub record: Option<Vec<u8>>,
}

pub trait ManifestsRead {
    /// The JSON record of revision `digest` of `repo`.
    fn manifest(&self, repo: &str, digest: &str) -> Result<Option<Vec<u8>>>;
    /// What a request for `tag` (or, without a tag, `digest`) of `repo` finds, all in one
    /// lookup: the hot path of every pull (on PostgreSQL one statement, one round trip).
    fn manifest_lookup(
        &self,
        repo: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<ManifestLookup>;
    /// Up to `n` revisions (repository, digest, record) after `after`, in order, of
    /// repositories starting with `prefix`.
    fn manifests_page(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, Vec<u8>)>>;
}
pub trait ManifestsWrite {
    /// Stores a record; true when the revision is new.
    fn put_manifest(&mut self, repo: &str, digest: &str, record: &[u8]) -> Result<bool>;
    fn remove_manifest(&mut self, repo: &str, digest: &str) -> Result<Option<Vec<u8>>>;
}

/// What is kept per tag beside its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagTime {
    /// Last pushed (`tag_pushes`).
    Pushed,
    /// Last pulled (`tag_pulls`).
    Pulled,
    /// Last confirmed upstream, for a mirror's cached tag (`mirror_tags`).
    Checked,
}

pub trait TagsRead {
    fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>>;
    /// Up to `n` (tag, digest) of `repo` after `after`, in order.
    fn tags_page(&self, repo: &str, after: Option<&str>, n: usize)
    -> Result<Vec<(String, String)>>;
    /// Up to `n` tag names of `repo` after `after`, in order (a `tags/list` page: no digests).
    fn tag_names_page(&self, repo: &str, after: Option<&str>, n: usize) -> Result<Vec<String>>;
    /// Up to `n` (repository, tag, digest) after `after`, in order, across repositories.
    fn all_tags_page(
        &self,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>>;
    fn tag_time(&self, kind: TagTime, repo: &str, tag: &str) -> Result<Option<u64>>;
}
pub trait TagsWrite {
    /// Points `tag` at `digest`; returns the digest it pointed to.
    fn put_tag(&mut self, repo: &str, tag: &str, digest: &str) -> Result<Option<String>>;
    fn remove_tag(&mut self, repo: &str, tag: &str) -> Result<Option<String>>;
    fn put_tag_time(&mut self, kind: TagTime, repo: &str, tag: &str, at: u64) -> Result<()>;
    fn remove_tag_time(&mut self, kind: TagTime, repo: &str, tag: &str) -> Result<()>;
}

pub trait ReferrersRead {
    /// Up to `n` referrers of `subject` in `repo` after `after`, in order.
    fn referrers_page(
        &self,
        repo: &str,
        subject: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>>;
    /// Up to `n` (repository, subject, referrer) after `after`, in order.
    fn all_referrers_page(
        &self,
        after: Option<(&str, &str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>>;
}
pub trait ReferrersWrite {
    fn put_referrer(&mut self, repo: &str, subject: &str, referrer: &str) -> Result<()>;
    fn remove_referrer(&mut self, repo: &str, subject: &str, referrer: &str) -> Result<()>;
}

pub trait UploadsRead {
    fn upload(&self, id: &str) -> Result<Option<Vec<u8>>>;
    /// Every open session (bounded by the session caps), in id order.
    fn uploads(&self) -> Result<Vec<(String, Vec<u8>)>>;
}
pub trait UploadsWrite {
    fn put_upload(&mut self, id: &str, record: &[u8]) -> Result<()>;
    fn remove_upload(&mut self, id: &str) -> Result<bool>;
}

pub trait NotificationsRead {
    /// Up to `n` queued (sequence, event) of `endpoint`, oldest first.
    fn notifications_page(&self, endpoint: &str, n: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// The highest sequence queued for `endpoint`.
    fn last_notification(&self, endpoint: &str) -> Result<Option<u64>>;
    /// How many events are queued for `endpoint`.
    fn notifications_queued(&self, endpoint: &str) -> Result<u64>;
}
pub trait NotificationsWrite {
    fn put_notification(&mut self, endpoint: &str, seq: u64, event: &[u8]) -> Result<()>;
    fn remove_notification(&mut self, endpoint: &str, seq: u64) -> Result<()>;
}

pub trait SettingsRead {
    fn setting(&self, name: &str) -> Result<Option<String>>;
    /// Every setting whose name starts with `prefix`, in order.
    fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// A store counter (0 when absent).
    fn stat(&self, name: &str) -> Result<u64>;
}
pub trait SettingsWrite {
    fn put_setting(&mut self, name: &str, value: &str) -> Result<()>;
    fn remove_setting(&mut self, name: &str) -> Result<bool>;
    fn put_stat(&mut self, name: &str, value: u64) -> Result<()>;
}

pub trait DeferredRead {
    /// The (repository, manifest) pairs whose references to `digest` wait for its row.
    fn deferred_of(&self, digest: &str) -> Result<Vec<(String, String)>>;
    /// Up to `n` (digest, repository, manifest) after `after`, in order.
    fn deferred_page(
        &self,
        after: Option<(&str, &str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, String)>>;
}
pub trait DeferredWrite {
    fn put_deferred(&mut self, digest: &str, repo: &str, manifest: &str) -> Result<()>;
    fn remove_deferred(&mut self, digest: &str, repo: &str, manifest: &str) -> Result<bool>;
}

pub trait MirrorRead {
    fn mirror_pull(&self, repo: &str, digest: &str) -> Result<Option<u64>>;
    /// Every (repository, digest, last pulled) of repositories starting with `prefix`.
    fn mirror_pulls_under(&self, prefix: &str) -> Result<Vec<(String, String, u64)>>;
}
pub trait MirrorWrite {
    fn put_mirror_pull(&mut self, repo: &str, digest: &str, at: u64) -> Result<()>;
    fn remove_mirror_pull(&mut self, repo: &str, digest: &str) -> Result<()>;
}

pub trait UsageRead {
    /// The unique bytes held by quota `scope`.
    fn usage(&self, scope: &str) -> Result<Option<u64>>;
    /// Every (scope, bytes), in order.
    fn usages(&self) -> Result<Vec<(String, u64)>>;
    /// The (holdings, size) of `digest` in `scope`.
    fn scope_blob(&self, scope: &str, digest: &str) -> Result<Option<(u64, u64)>>;
    /// Every (scope, digest, holdings, size) of `scope` (all scopes when `None`), in order.
    fn scope_blobs(&self, scope: Option<&str>) -> Result<Vec<(String, String, u64, u64)>>;
}
pub trait UsageWrite {
    fn put_usage(&mut self, scope: &str, bytes: u64) -> Result<()>;
    fn remove_usage(&mut self, scope: &str) -> Result<()>;
    fn put_scope_blob(&mut self, scope: &str, digest: &str, held: (u64, u64)) -> Result<()>;
    fn remove_scope_blob(&mut self, scope: &str, digest: &str) -> Result<()>;
    /// Removes every `usage` and `scope_blobs` row (before a rebuild).
    fn clear_usage(&mut self) -> Result<()>;
}

/// Everything a read needs: a snapshot of every table.
pub trait ReadTx:
    ReposRead
    + BlobsRead
    + ManifestsRead
    + TagsRead
    + ReferrersRead
    + UploadsRead
    + NotificationsRead
    + SettingsRead
    + DeferredRead
    + MirrorRead
    + UsageRead
{
}

impl<T> ReadTx for T where
    T: ReposRead
        + BlobsRead
        + ManifestsRead
        + TagsRead
        + ReferrersRead
        + UploadsRead
        + NotificationsRead
        + SettingsRead
        + DeferredRead
        + MirrorRead
        + UsageRead
        + ?Sized
{
}

/// Everything a change needs: one transaction over every table.
pub trait WriteTx:
    ReadTx
    + ReposWrite
    + BlobsWrite
    + ManifestsWrite
    + TagsWrite
    + ReferrersWrite
    + UploadsWrite
    + NotificationsWrite
    + SettingsWrite
    + DeferredWrite
    + MirrorWrite
    + UsageWrite
{
}

impl<T> WriteTx for T where
    T: ReadTx
        + ReposWrite
        + BlobsWrite
        + ManifestsWrite
        + TagsWrite
        + ReferrersWrite
        + UploadsWrite
        + NotificationsWrite
        + SettingsWrite
        + DeferredWrite
        + MirrorWrite
        + UsageWrite
        + ?Sized
{
}
