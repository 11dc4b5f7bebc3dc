//! The metadata rules on both backends: every test runs once on redb and once on a real
//! PostgreSQL (`tests/common/pg.rs`), through the same `Meta` API the registry uses, and must
//! see the same results: counting rules, grace, usage, listings and their byte order,
//! notification order, rollback and concurrent writers.

mod common;

use std::sync::Arc;

use kura::meta::blobs::{self, BlobRow};
use kura::meta::{
    ManifestRecord, Meta, UploadRecord, deferred, manifests, notifications, now_secs, referrers,
    repos, stats, tags, uploads, usage,
};

/// A store on one backend, with what keeps it alive.
struct Store {
    meta: Meta,
    _dir: Option<tempfile::TempDir>,
    _db: Option<common::pg::TestDb>,
}

fn redb() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("meta.redb")).unwrap();
    Store {
        meta,
        _dir: Some(dir),
        _db: None,
    }
}

fn postgres() -> Store {
    let db = common::pg::TestDb::new();
    let meta = Meta::open_postgres(&db.url, 8).unwrap();
    Store {
        meta,
        _dir: None,
        _db: Some(db),
    }
}

/// Runs each property on both backends: `<name>::on_redb` and `<name>::on_postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn on_redb() {
                super::$name(&super::redb().meta);
            }
            #[test]
            fn on_postgres() {
                super::$name(&super::postgres().meta);
            }
        }
    )*};
}

both!(
    reference_counts_follow_revisions_and_never_go_negative,
    the_last_reference_going_restarts_the_grace_period,
    removing_a_blob_removes_its_links_and_its_bytes,
    a_shared_layer_counts_once_for_its_namespace_and_usage_verifies,
    tag_listings_are_paged_in_byte_order_with_a_more_flag,
    repository_prefix_scans_stop_at_the_prefix,
    notifications_keep_commit_order_per_endpoint,
    referrers_and_uploads_round_trip_and_page,
    deferred_references_are_counted_when_the_blob_row_appears,
    a_failed_transaction_leaves_nothing_behind,
    concurrent_writers_lose_no_reference,
    a_manifest_lookup_tells_an_unknown_repository_from_an_unknown_reference,
);

fn rec(size: u64, blobs: &[&str]) -> ManifestRecord {
    ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size,
        created: now_secs(),
        artifact_type: None,
        annotations: None,
        subject: None,
        blobs: blobs.iter().map(|b| b.to_string()).collect(),
        manifests: Vec::new(),
        touched: 0,
    }
}

fn row(m: &Meta, d: &str) -> Option<BlobRow> {
    m.read(|t| blobs::get(t, d)).unwrap()
}

fn reference_counts_follow_revisions_and_never_go_negative(m: &Meta) {
    m.write(|t| {
        blobs::touch(t, "sha256:l1", 100)?;
        blobs::add_ref(t, "sha256:l1", 1)?;
        blobs::add_ref(t, "sha256:l1", 2)
    })
    .unwrap();
    assert_eq!(row(m, "sha256:l1").unwrap().refs, 3);
    m.write(|t| blobs::add_ref(t, "sha256:l1", -3)).unwrap();
    assert_eq!(row(m, "sha256:l1").unwrap().refs, 0);
    let err = m.write(|t| blobs::add_ref(t, "sha256:l1", -1)).unwrap_err();
    assert!(err.to_string().contains("negative"), "{err}");
    let err = m
        .write(|t| blobs::add_ref(t, "sha256:none", 1))
        .unwrap_err();
    assert!(err.to_string().contains("no blob row"), "{err}");
    assert_eq!(
        row(m, "sha256:l1").unwrap().refs,
        0,
        "the failed writes changed nothing"
    );
}

fn the_last_reference_going_restarts_the_grace_period(m: &Meta) {
    m.write(|t| {
        blobs::put(
            t,
            "sha256:g",
            BlobRow {
                size: 5,
                refs: 1,
                touched: 1,
            },
        )
    })
    .unwrap();
    let before = now_secs();
    m.write(|t| blobs::add_ref(t, "sha256:g", -1)).unwrap();
    let r = row(m, "sha256:g").unwrap();
    assert!(r.touched >= before, "{r:?}");
    // A sighting of an unreferenced blob whose grace started long ago leases it ahead; then
    // a sighting is covered and needs no write.
    m.write(|t| {
        blobs::put(
            t,
            "sha256:s",
            BlobRow {
                size: 5,
                refs: 0,
                touched: 1,
            },
        )
    })
    .unwrap();
    let seen = m.write(|t| blobs::sight(t, "sha256:s")).unwrap().unwrap();
    assert!(seen.touched >= before + blobs::SIGHTING_LEASE);
    assert!(blobs::sighting_covered(&seen, now_secs()));
    assert_eq!(m.write(|t| blobs::sight(t, "sha256:gone")).unwrap(), None);
}

fn removing_a_blob_removes_its_links_and_its_bytes(m: &Meta) {
    m.write(|t| {
        blobs::touch(t, "sha256:a", 1000)?;
        blobs::touch(t, "sha256:b", 24)?;
        repos::ensure(t, "x")?;
        repos::ensure(t, "y")?;
        blobs::link(t, "x", "sha256:a")?;
        blobs::link(t, "y", "sha256:a")
    })
    .unwrap();
    let (bytes, links) = m
        .read(|t| {
            Ok((
                stats::get(t, stats::BLOB_BYTES)?,
                blobs::links_of(t, "sha256:a")?,
            ))
        })
        .unwrap();
    assert_eq!(
        (bytes, links),
        (1024, vec!["x".to_string(), "y".to_string()])
    );
    let removed = m.write(|t| blobs::remove(t, "sha256:a")).unwrap().unwrap();
    assert_eq!(removed.size, 1000);
    m.read(|t| {
        assert_eq!(stats::get(t, stats::BLOB_BYTES)?, 24);
        assert!(!blobs::is_linked(t, "x", "sha256:a")?);
        assert!(blobs::links_of(t, "sha256:a")?.is_empty());
        assert_eq!(usage::get(t, "repo:x")?, 0);
        assert!(t.asymmetric_links()?.is_empty());
        Ok(())
    })
    .unwrap();
}

fn a_shared_layer_counts_once_for_its_namespace_and_usage_verifies(m: &Meta) {
    m.write(|t| {
        usage::track_namespace(t, "team/")?;
        blobs::touch(t, "sha256:shared", 700)?;
        blobs::touch(t, "sha256:own", 50)?;
        blobs::link(t, "team/a", "sha256:shared")?;
        blobs::link(t, "team/b", "sha256:shared")?;
        blobs::link(t, "team/b", "sha256:own")?;
        blobs::link(t, "teamx", "sha256:own")?;
        manifests::insert(t, "team/a", "sha256:m1", &rec(30, &["sha256:shared"]))
    })
    .unwrap();
    m.read(|t| {
        assert_eq!(usage::get(t, "ns:team/")?, 700 + 50 + 30);
        assert_eq!(usage::get(t, "repo:team/a")?, 730);
        assert_eq!(usage::get(t, "repo:team/b")?, 750);
        assert_eq!(usage::get(t, "repo:teamx")?, 50);
        assert_eq!(usage::verify(t)?, Vec::<String>::new());
        Ok(())
    })
    .unwrap();
    m.write(|t| {
        blobs::unlink(t, "team/a", "sha256:shared")?;
        manifests::remove(t, "team/a", "sha256:m1").map(|_| ())
    })
    .unwrap();
    m.read(|t| {
        assert_eq!(
            usage::get(t, "ns:team/")?,
            750,
            "team/b still holds the layer"
        );
        assert_eq!(usage::get(t, "repo:team/a")?, 0);
        assert_eq!(usage::verify(t)?, Vec::<String>::new());
        Ok(())
    })
    .unwrap();
    assert!(m.write(|t| usage::untrack_namespace(t, "team/")).unwrap());
    assert_eq!(m.read(|t| usage::get(t, "ns:team/")).unwrap(), 0);
}

fn tag_listings_are_paged_in_byte_order_with_a_more_flag(m: &Meta) {
    let names = ["v1", "V2", "a", "a.b", "a-b", "latest", "v10", "v2"];
    m.write(|t| {
        repos::ensure(t, "r")?;
        repos::ensure(t, "r/sub")?;
        tags::set(t, "r/sub", "other", "sha256:o")?;
        for n in names {
            tags::set(t, "r", n, "sha256:d")?;
        }
        Ok(())
    })
    .unwrap();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort(); // byte order: "V2" < "a" < "a-b" < "a.b" < ...
    let mut got = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let (page, more) = m.read(|t| tags::list(t, "r", last.as_deref(), 3)).unwrap();
        got.extend(page.clone());
        if !more {
            break;
        }
        last = page.last().cloned();
    }
    assert_eq!(got, want);
    let old = m.write(|t| tags::set(t, "r", "v1", "sha256:e")).unwrap();
    assert_eq!(old.as_deref(), Some("sha256:d"));
    m.read(|t| {
        assert_eq!(
            tags::pointing_at(t, "r", "sha256:e")?,
            vec!["v1".to_string()]
        );
        assert!(tags::pushed_at(t, "r", "v1")?.is_some());
        Ok(())
    })
    .unwrap();
    m.write(|t| tags::remove(t, "r", "v1")).unwrap();
    m.read(|t| {
        assert_eq!(tags::get(t, "r", "v1")?, None);
        assert_eq!(
            tags::pushed_at(t, "r", "v1")?,
            None,
            "its push time went with it"
        );
        assert_eq!(tags::all(t, "r/sub")?.len(), 1);
        Ok(())
    })
    .unwrap();
}

fn repository_prefix_scans_stop_at_the_prefix(m: &Meta) {
    let names = ["team", "team/a", "team/b", "team-x", "teamx", "tea", "zeta"];
    m.write(|t| {
        for n in names {
            repos::ensure(t, n)?;
        }
        Ok(())
    })
    .unwrap();
    let scan = |prefix: &str, last: Option<&str>| {
        let mut out = Vec::new();
        m.read(|t| {
            repos::scan_prefix(t, prefix, last, |n| {
                out.push(n.to_string());
                true
            })
        })
        .unwrap();
        out
    };
    assert_eq!(scan("team/", None), ["team/a", "team/b"]);
    assert_eq!(scan("team", Some("team/a")), ["team/b", "teamx"]);
    assert_eq!(
        scan("team", None),
        ["team", "team-x", "team/a", "team/b", "teamx"]
    );
    let (page, more) = m.read(|t| repos::list(t, Some("team/b"), 2)).unwrap();
    assert_eq!((page, more), (vec!["teamx".into(), "zeta".into()], false));
    let (page, more) = m.read(|t| repos::list(t, None, 2)).unwrap();
    assert_eq!((page, more), (vec!["tea".into(), "team".into()], true));
}

fn notifications_keep_commit_order_per_endpoint(m: &Meta) {
    m.write(|t| {
        for i in 0..5u8 {
            notifications::push(t, "hook", &[i])?;
        }
        notifications::push(t, "other", b"x")
    })
    .unwrap();
    let pending = m.read(|t| notifications::pending(t, "hook", 3)).unwrap();
    assert_eq!(pending, vec![(1, vec![0]), (2, vec![1]), (3, vec![2])]);
    m.write(|t| notifications::remove(t, "hook", &[1, 2, 3]))
        .unwrap();
    m.write(|t| notifications::push(t, "hook", b"late"))
        .unwrap();
    let pending = m.read(|t| notifications::pending(t, "hook", 10)).unwrap();
    let seqs: Vec<u64> = pending.iter().map(|p| p.0).collect();
    assert_eq!(seqs, [4, 5, 6], "a new event follows the last queued one");
    assert_eq!(m.read(|t| notifications::queued(t, "other")).unwrap(), 1);
    assert_eq!(m.read(|t| t.counts()).unwrap().notifications, 4);
}

fn referrers_and_uploads_round_trip_and_page(m: &Meta) {
    m.write(|t| {
        for d in ["sha256:r3", "sha256:r1", "sha256:r2"] {
            referrers::add(t, "app", "sha256:subject", d)?;
        }
        referrers::add(t, "app", "sha256:other", "sha256:r9")
    })
    .unwrap();
    let mut seen = Vec::new();
    m.read(|t| {
        referrers::scan(t, "app", "sha256:subject", Some("sha256:r1"), |d| {
            seen.push(d.to_string());
            Ok(true)
        })
    })
    .unwrap();
    assert_eq!(seen, ["sha256:r2", "sha256:r3"]);
    let up = UploadRecord {
        repo: "app".into(),
        offset: 42,
        started: 1,
        updated: 2,
        client: "ip:127.0.0.1".into(),
        state: Default::default(),
    };
    m.write(|t| uploads::put(t, "u-1", &up)).unwrap();
    let all = m.read(|t| uploads::all(t)).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.offset, 42);
    assert!(m.write(|t| uploads::remove(t, "u-1")).unwrap());
    assert!(!m.write(|t| uploads::remove(t, "u-1")).unwrap());
}

fn deferred_references_are_counted_when_the_blob_row_appears(m: &Meta) {
    m.write(|t| {
        deferred::defer(t, "sha256:later", "mirror/a", "sha256:m1")?;
        deferred::defer(t, "sha256:later", "mirror/b", "sha256:m2")?;
        deferred::defer(t, "sha256:dropped", "mirror/a", "sha256:m1")
    })
    .unwrap();
    assert!(
        m.write(|t| deferred::remove(t, "sha256:dropped", "mirror/a", "sha256:m1"))
            .unwrap()
    );
    m.write(|t| blobs::touch(t, "sha256:later", 9)).unwrap();
    assert_eq!(row(m, "sha256:later").unwrap().refs, 2);
    assert!(m.read(|t| deferred::everything(t)).unwrap().is_empty());
}

fn a_failed_transaction_leaves_nothing_behind(m: &Meta) {
    let err = m
        .write(|t| {
            repos::ensure(t, "doomed")?;
            blobs::touch(t, "sha256:doomed", 10)?;
            tags::set(t, "doomed", "t", "sha256:x")?;
            blobs::add_ref(t, "sha256:missing", 1)
        })
        .unwrap_err();
    assert!(err.to_string().contains("no blob row"), "{err}");
    m.read(|t| {
        assert!(!repos::exists(t, "doomed")?);
        assert_eq!(blobs::get(t, "sha256:doomed")?, None);
        assert_eq!(tags::get(t, "doomed", "t")?, None);
        assert_eq!(stats::get(t, stats::BLOB_BYTES)?, 0);
        Ok(())
    })
    .unwrap();
}

fn concurrent_writers_lose_no_reference(m: &Meta) {
    m.write(|t| blobs::touch(t, "sha256:hot", 1)).unwrap();
    let m = Arc::new(m);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let m = m.clone();
            s.spawn(move || {
                for _ in 0..25 {
                    m.write(|t| blobs::add_ref(t, "sha256:hot", 1)).unwrap();
                }
            });
        }
    });
    assert_eq!(row(&m, "sha256:hot").unwrap().refs, 100);
}

/// The pull's one lookup (`manifests::lookup`): an unknown repository, an unknown tag or
/// revision in a known one (also another repository's revision), and a tag or digest found.
fn a_manifest_lookup_tells_an_unknown_repository_from_an_unknown_reference(m: &Meta) {
    use kura::meta::manifests::Found;
    use kura::names::Reference;
    let d = format!("sha256:{}", "a".repeat(64));
    let other = format!("sha256:{}", "b".repeat(64));
    m.write(|t| {
        repos::ensure(t, "r")?;
        repos::ensure(t, "s")?;
        manifests::insert(t, "r", &d, &rec(7, &[]))?;
        manifests::insert(t, "s", &other, &rec(8, &[]))?;
        tags::set(t, "r", "v1", &d)?;
        // A tag whose revision row is gone (as mid-way through a delete elsewhere).
        tags::set(t, "r", "dangling", &other)
    })
    .unwrap();
    let find = |repo: &str, reference: &str| {
        let reference = Reference::parse(reference).unwrap();
        m.read(|t| manifests::lookup(t, repo, &reference)).unwrap()
    };
    let manifest = |f: Found| match f {
        Found::Manifest(digest, rec) => (digest.to_string(), rec.size),
        Found::NoRepository => panic!("no repository"),
        Found::NoManifest => panic!("no manifest"),
    };
    assert!(matches!(find("nope", "v1"), Found::NoRepository));
    assert!(matches!(find("nope", &d), Found::NoRepository));
    assert!(matches!(find("r", "v2"), Found::NoManifest));
    assert!(matches!(find("r", &other), Found::NoManifest));
    assert!(matches!(find("r", "dangling"), Found::NoManifest));
    assert!(matches!(find("s", "v1"), Found::NoManifest));
    assert_eq!(manifest(find("r", "v1")), (d.clone(), 7));
    assert_eq!(manifest(find("r", &d)), (d.clone(), 7));
    assert_eq!(manifest(find("s", &other)), (other.clone(), 8));
}
