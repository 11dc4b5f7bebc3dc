-- kura's metadata schema 1 on PostgreSQL (cluster mode, issue 13).
--
-- One table per redb table of src/meta/tables.rs, with the same name and meaning
-- (ARCHITECTURE.md, "Tables"), holding what redb holds as real columns:
-- * keys are text COLLATE "C": comparisons, ORDER BY and range conditions follow byte order,
--   as redb's &str keys do, and a btree on them serves prefix scans (`LIKE 'p%'`, `>= p`);
-- * u64 values are bigint, never negative (CHECK): kura's counts and unix times fit;
-- * JSON records (manifests, uploads, notifications) are bytea holding the same bytes redb
--   stores (serde_json of the records of src/meta/records.rs): both backends share one
--   encoding;
-- * a composite redb key is the primary key over its columns, in the same order.
-- redb's `meta` table (`schema_version`) has no counterpart: `schema_migrations`, written by
-- src/meta/pg/migrate.rs, records every version applied.
--
-- Every range scan of src/meta/*.rs is on a prefix of a primary key (a repository's tags,
-- manifests and links; a subject's referrers; a digest's links and deferred references; an
-- endpoint's queued events; the `quota_namespace:` settings), so the primary keys serve them.
-- The two secondary indexes below serve the lookups no key prefix does.

-- repository name → when it was created (unix s). `_catalog` pages through it in name order.
CREATE TABLE repositories (
    name    text COLLATE "C" PRIMARY KEY,
    created bigint NOT NULL CHECK (created >= 0)
);

-- One row per blob file, manifests included: its size, its reference count (the manifest
-- revisions naming it as config, layer or index child, plus the revisions of it) and
-- `touched`, the start of the collector's grace period (unix s; a client sighting may set it
-- up to a lease ahead).
CREATE TABLE blobs (
    digest  text COLLATE "C" PRIMARY KEY,
    size    bigint NOT NULL CHECK (size >= 0),
    refs    bigint NOT NULL CHECK (refs >= 0),
    touched bigint NOT NULL CHECK (touched >= 0)
);
-- The collector's candidates (src/gc/blobs.rs scans every row for these): unreferenced
-- rows, by the start of their grace period.
CREATE INDEX blobs_unreferenced ON blobs (touched) WHERE refs = 0;

-- (repository, digest) → when linked (unix s): the blobs a repository may serve (uploads,
-- mounts). A blob DELETE removes the link.
CREATE TABLE repo_blobs (
    repo      text COLLATE "C",
    digest    text COLLATE "C",
    linked_at bigint NOT NULL CHECK (linked_at >= 0),
    PRIMARY KEY (repo, digest)
);

-- (digest, repository): the reverse of repo_blobs, so removing a blob finds every link to it
-- by digest (redb schema v2).
CREATE TABLE blob_links (
    digest text COLLATE "C",
    repo   text COLLATE "C",
    PRIMARY KEY (digest, repo)
);

-- (repository, manifest digest) → JSON ManifestRecord: the manifest revisions (media type,
-- size, artifactType, annotations, subject, referenced blobs and child manifests).
CREATE TABLE manifests (
    repo   text COLLATE "C",
    digest text COLLATE "C",
    record bytea NOT NULL,
    PRIMARY KEY (repo, digest)
);

-- (repository, tag) → manifest digest. `tags/list` pages through a repository in byte order.
CREATE TABLE tags (
    repo   text COLLATE "C",
    tag    text COLLATE "C",
    digest text COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, tag)
);
-- The tags of a repository pointing at one digest (meta/tags.rs `pointing_at`: a manifest
-- deleted by digest takes its tags along; redb scans the repository's tags for it).
CREATE INDEX tags_by_digest ON tags (repo, digest);

-- (repository, subject digest, referrer manifest digest): the index behind
-- GET /v2/<name>/referrers/<digest>.
CREATE TABLE referrers (
    repo     text COLLATE "C",
    subject  text COLLATE "C",
    referrer text COLLATE "C",
    PRIMARY KEY (repo, subject, referrer)
);

-- upload UUID → JSON UploadRecord: the open upload sessions (repository, offset, times, the
-- client that opened it, and on S3 where its bytes are).
CREATE TABLE uploads (
    id     text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);

-- (endpoint, sequence) → JSON event: webhook events not yet delivered, in order per endpoint
-- (redb schema v3); under `replication:<target>`, the manifest pushes and deletes not yet
-- replicated. A new event takes the endpoint's last sequence + 1.
CREATE TABLE notifications (
    endpoint text COLLATE "C",
    seq      bigint CHECK (seq > 0),
    event    bytea NOT NULL,
    PRIMARY KEY (endpoint, seq)
);

-- counter name → value: store totals kept in the transactions that change them (redb schema
-- v4). `blob_bytes`: the sum of blobs.size.
CREATE TABLE stats (
    name  text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL CHECK (value >= 0)
);

-- name → value: facts about the store itself (redb schema v5): `blob_store`, where the
-- blobs of this metadata live (JSON StoreIdentity, no credentials); `quota_namespace:<prefix>`
-- rows name the namespaces whose usage is tracked.
CREATE TABLE settings (
    name  text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

-- (digest, repository, manifest digest): a reference a cached (mirrored) revision makes to
-- content not stored yet (redb schema v6); counted when the content's blobs row is created,
-- dropped with the revision.
CREATE TABLE deferred_refs (
    digest   text COLLATE "C",
    repo     text COLLATE "C",
    manifest text COLLATE "C",
    PRIMARY KEY (digest, repo, manifest)
);

-- (repository, tag) → when the cached tag was last confirmed upstream (unix s; redb schema
-- v6): revalidated after the mirror's tag_ttl.
CREATE TABLE mirror_tags (
    repo text COLLATE "C",
    tag  text COLLATE "C",
    at   bigint NOT NULL CHECK (at >= 0),
    PRIMARY KEY (repo, tag)
);

-- (repository, digest) → when a client last pulled the cached manifest or blob (unix s;
-- redb schema v6), written in batches: the order a mirror over its budget evicts in.
CREATE TABLE mirror_pulls (
    repo   text COLLATE "C",
    digest text COLLATE "C",
    at     bigint NOT NULL CHECK (at >= 0),
    PRIMARY KEY (repo, digest)
);

-- quota scope (`repo:<name>` or `ns:<prefix>`) → the unique bytes it holds (redb schema v7).
CREATE TABLE usage (
    scope text COLLATE "C" PRIMARY KEY,
    bytes bigint NOT NULL CHECK (bytes >= 0)
);

-- (quota scope, digest) → how many links and revisions of the digest the scope's
-- repositories have, and the size it counts toward the scope while that is above zero
-- (redb schema v7; meta/usage.rs).
CREATE TABLE scope_blobs (
    scope    text COLLATE "C",
    digest   text COLLATE "C",
    holdings bigint NOT NULL CHECK (holdings >= 0),
    size     bigint NOT NULL CHECK (size >= 0),
    PRIMARY KEY (scope, digest)
);

-- (repository, tag) → when the tag was last pulled (unix s; redb schema v7; retention's
-- not_pulled_for), written in batches, never per pull; removed with the tag.
CREATE TABLE tag_pulls (
    repo text COLLATE "C",
    tag  text COLLATE "C",
    at   bigint NOT NULL CHECK (at >= 0),
    PRIMARY KEY (repo, tag)
);

-- (repository, tag) → when the tag was last pushed (unix s; redb schema v7; retention's
-- keep_last order, and the start of not_pulled_for for a tag never pulled); removed with
-- the tag.
CREATE TABLE tag_pushes (
    repo text COLLATE "C",
    tag  text COLLATE "C",
    at   bigint NOT NULL CHECK (at >= 0),
    PRIMARY KEY (repo, tag)
);
