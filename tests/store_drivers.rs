//! One suite of blob store behaviour that every driver passes, through the `BlobStore` /
//! `Upload` boundary the registry uses (Distribution's `testsuites/` pattern): ingest, commit
//! and abort; partial and concurrent uploads of one digest; restarts and rollbacks mid-upload;
//! ranges at the edges; missing objects; listing; deletes.
//!
//! `drivers!` runs each test on the filesystem driver and on the S3 driver against a real
//! Ceph RGW (tests/common/s3.rs). Uploads are 2 parts and a bit (5 MiB parts), so the S3
//! driver's multipart path and its tail are exercised.

mod common;

use std::path::PathBuf;

use common::s3::data;
use futures_util::StreamExt;
use kura::config::{MIN_PART_SIZE, StorageConfig};
use kura::digest::Digest;
use kura::store::{BlobStore, CommitError, Upload, UploadState};

const PART: usize = MIN_PART_SIZE as usize;
const BIG: usize = 2 * PART + 12_345;

#[derive(Clone, Copy, Debug)]
enum Driver {
    Fs,
    S3,
}

/// A store of one driver, and what it takes to open it again (a restart).
struct Harness {
    store: BlobStore,
    root: PathBuf,
    cfg: StorageConfig,
    _dir: tempfile::TempDir,
    /// The S3 prefix, deleted when the test ends.
    _scratch: Option<common::s3::Scratch>,
}

impl Harness {
    fn new(driver: Driver, test: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let cfg = match driver {
            Driver::Fs => StorageConfig::default(),
            Driver::S3 => common::s3::s3_config(test),
        };
        let root = dir.path().to_path_buf();
        Harness {
            store: BlobStore::open(&root, &cfg).unwrap(),
            root,
            _scratch: matches!(driver, Driver::S3).then(|| common::s3::Scratch(cfg.prefix.clone())),
            cfg,
            _dir: dir,
        }
    }

    /// The same store as a new process would open it.
    fn reopen(&self) -> BlobStore {
        BlobStore::open(&self.root, &self.cfg).unwrap()
    }

    fn uploads(&self) -> Vec<String> {
        let mut ids = Vec::new();
        self.store
            .list_uploads(&mut |l| {
                ids.push(l.name);
                Ok(())
            })
            .unwrap();
        ids.sort();
        ids
    }

    fn blobs(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.store
            .list_blobs(&mut |l| {
                out.push((l.name, l.size));
                Ok(())
            })
            .unwrap();
        out.sort();
        out
    }
}

fn id(n: u32) -> String {
    uuid::Uuid::from_u128(0x6b75_7261_0000_0000_0000_0000_0000_0000 + n as u128).to_string()
}

/// One request's appends, ended as the registry ends one.
async fn request(u: &mut Upload, bytes: &[u8]) {
    for c in bytes.chunks(256 * 1024 + 7) {
        u.push(c).await.unwrap();
    }
    u.flush().await.unwrap();
    assert!(
        !u.is_open(),
        "an idle session holds no buffers or descriptors"
    );
}

/// Verifies and publishes `u` as `d` (the blob has no row yet).
fn commit(store: &BlobStore, u: Upload, d: &Digest) -> u64 {
    let v = u.verify(store, d).unwrap();
    v.publish(store, false).unwrap()
}

async fn read(store: &BlobStore, d: &Digest, start: u64, len: u64) -> Option<Vec<u8>> {
    let mut body = store.read_range(d, start, len).await.unwrap()?;
    let mut out = Vec::new();
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    Some(out)
}

macro_rules! drivers {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Driver::Fs).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Driver::S3).await
                }
            )*
        }
    };
}

drivers!(
    an_upload_in_several_requests_commits_under_its_digest,
    an_aborted_upload_leaves_nothing,
    a_digest_mismatch_publishes_nothing_and_removes_the_upload,
    partial_and_concurrent_uploads_of_one_digest_publish_one_blob,
    an_upload_resumes_after_a_restart,
    a_failed_request_is_rolled_back,
    a_request_cut_off_mid_stream_is_completed_by_the_next,
    ranges_at_the_edges_are_exact,
    missing_objects_are_none,
    listing_and_deleting_blobs,
);

async fn an_upload_in_several_requests_commits_under_its_digest(driver: Driver) {
    let h = Harness::new(driver, "drv-commit");
    let bytes = data(BIG, 1);
    let d = Digest::sha256_of(&bytes);
    let mut u = h.store.create_upload(&id(1)).unwrap();
    for (from, to) in [(0, 1000), (1000, PART + 5), (PART + 5, BIG)] {
        request(&mut u, &bytes[from..to]).await;
        assert_eq!(u.len(), to as u64);
    }
    assert_eq!(h.store.stat(&d).unwrap(), None, "not visible before commit");
    assert_eq!(commit(&h.store, u, &d), BIG as u64);
    assert_eq!(h.store.stat(&d).unwrap(), Some(BIG as u64));
    assert_eq!(h.store.read_blob(&d).unwrap().unwrap(), bytes);
    assert_eq!(
        h.store.hash_blob(&d, &mut |_| {}).unwrap(),
        Some((d, BIG as u64))
    );
    assert!(h.uploads().is_empty(), "{:?}", h.uploads());
    // A small blob written whole (a manifest).
    let m = Digest::sha256_of(b"{\"manifest\":1}");
    h.store
        .put_verified(&m, b"{\"manifest\":1}", false)
        .unwrap();
    assert_eq!(h.store.read_blob(&m).unwrap().unwrap(), b"{\"manifest\":1}");
}

async fn an_aborted_upload_leaves_nothing(driver: Driver) {
    let h = Harness::new(driver, "drv-abort");
    let mut u = h.store.create_upload(&id(2)).unwrap();
    request(&mut u, &data(PART + 100, 2)).await;
    let (state, len) = (u.state(), u.len());
    drop(u);
    h.store.remove_upload(&id(2), Some(&state)).unwrap();
    assert!(h.uploads().is_empty(), "{:?}", h.uploads());
    assert!(
        h.store
            .resume_upload(&id(2), &state, len)
            .unwrap()
            .is_none()
    );
    assert!(h.blobs().is_empty());
}

async fn a_digest_mismatch_publishes_nothing_and_removes_the_upload(driver: Driver) {
    let h = Harness::new(driver, "drv-mismatch");
    let bytes = data(BIG, 3);
    let claimed = Digest::sha256_of(b"another blob");
    let mut u = h.store.create_upload(&id(3)).unwrap();
    request(&mut u, &bytes).await;
    match u.verify(&h.store, &claimed) {
        Err(CommitError::DigestMismatch { actual, .. }) => {
            assert_eq!(actual, Digest::sha256_of(&bytes))
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("verified the wrong digest"),
    }
    assert_eq!(h.store.stat(&claimed).unwrap(), None);
    assert!(h.uploads().is_empty(), "{:?}", h.uploads());
    assert!(h.blobs().is_empty());
}

async fn partial_and_concurrent_uploads_of_one_digest_publish_one_blob(driver: Driver) {
    let h = Harness::new(driver, "drv-concurrent");
    let bytes = std::sync::Arc::new(data(BIG, 4));
    let d = Digest::sha256_of(&bytes);
    // A partial upload of the same bytes, left unfinished.
    let mut partial = h.store.create_upload(&id(40)).unwrap();
    request(&mut partial, &bytes[..PART + 1]).await;
    // Two complete uploads of the same digest, streaming at the same time.
    let mut tasks = Vec::new();
    for n in [41, 42] {
        let (store, bytes) = (h.store.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let mut u = store.create_upload(&id(n)).unwrap();
            request(&mut u, &bytes[..PART / 2]).await;
            request(&mut u, &bytes[PART / 2..]).await;
            u
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    // Both verified before either is published (no lock is held while verifying).
    let verified: Vec<_> = done
        .into_iter()
        .map(|u| u.verify(&h.store, &d).unwrap())
        .collect();
    // Published in turn under the digest's lock: the second finds the first recorded.
    for (i, v) in verified.into_iter().enumerate() {
        assert_eq!(v.publish(&h.store, i > 0).unwrap(), BIG as u64);
    }
    assert_eq!(h.store.read_blob(&d).unwrap().unwrap(), *bytes);
    assert_eq!(h.blobs(), vec![(d.to_string(), BIG as u64)]);
    assert_eq!(
        h.uploads(),
        vec![id(40)],
        "only the partial session remains"
    );
    // The partial one still continues to the same digest.
    request(&mut partial, &bytes[PART + 1..]).await;
    let v = partial.verify(&h.store, &d).unwrap();
    v.publish(&h.store, true).unwrap();
    assert!(h.uploads().is_empty(), "{:?}", h.uploads());
    assert_eq!(h.store.read_blob(&d).unwrap().unwrap(), *bytes);
}

async fn an_upload_resumes_after_a_restart(driver: Driver) {
    let h = Harness::new(driver, "drv-restart");
    let bytes = data(BIG, 5);
    let d = Digest::sha256_of(&bytes);
    let cut = PART + 777;
    let mut u = h.store.create_upload(&id(5)).unwrap();
    request(&mut u, &bytes[..cut]).await;
    // What the session's row records, then the process stops.
    let (state, len): (UploadState, u64) = (u.state(), u.len());
    drop(u);
    let store = h.reopen();
    let mut u = store.resume_upload(&id(5), &state, len).unwrap().unwrap();
    assert_eq!(u.len(), cut as u64);
    request(&mut u, &bytes[cut..]).await;
    assert_eq!(commit(&store, u, &d), BIG as u64);
    assert_eq!(store.read_blob(&d).unwrap().unwrap(), bytes);
    assert!(h.uploads().is_empty(), "{:?}", h.uploads());
}

/// A request whose future is dropped mid-body (the server gave up on it) leaves blocks in
/// flight and no flush; the next request waits for them, and the upload
/// completes with every byte accepted, in order.
async fn a_request_cut_off_mid_stream_is_completed_by_the_next(driver: Driver) {
    let h = Harness::new(driver, "drv-cutoff");
    let bytes = data(BIG, 9);
    let d = Digest::sha256_of(&bytes);
    let mut u = h.store.create_upload(&id(9)).unwrap();
    let cut = PART + 3 * (1 << 20) + 5;
    for c in bytes[..cut].chunks(64 * 1024 + 3) {
        u.push(c).await.unwrap();
    }
    let cp = u.checkpoint().await.unwrap();
    assert_eq!(u.len(), cut as u64);
    drop(cp);
    request(&mut u, &bytes[cut..]).await;
    assert_eq!(commit(&h.store, u, &d), BIG as u64);
    assert_eq!(read(&h.store, &d, 0, BIG as u64).await.unwrap(), bytes);
}

async fn a_failed_request_is_rolled_back(driver: Driver) {
    let h = Harness::new(driver, "drv-rollback");
    let bytes = data(BIG, 6);
    let d = Digest::sha256_of(&bytes);
    let mut u = h.store.create_upload(&id(6)).unwrap();
    request(&mut u, &bytes[..1000]).await;
    let cp = u.checkpoint().await.unwrap();
    // More than two parts of other bytes, then the request fails.
    for c in data(2 * PART + 99, 66).chunks(1 << 20) {
        u.push(c).await.unwrap();
    }
    u.rollback(cp).await.unwrap();
    assert_eq!(u.len(), 1000);
    request(&mut u, &bytes[1000..]).await;
    commit(&h.store, u, &d);
    assert_eq!(h.store.read_blob(&d).unwrap().unwrap(), bytes);
}

async fn ranges_at_the_edges_are_exact(driver: Driver) {
    let h = Harness::new(driver, "drv-ranges");
    let bytes = data(BIG, 7);
    let d = Digest::sha256_of(&bytes);
    h.store.put_verified(&d, &bytes, false).unwrap();
    let (n, p) = (BIG as u64, PART as u64);
    for (start, len) in [(0, 1), (n - 1, 1), (0, n), (p - 1, 2), (p, p), (1, n - 2)] {
        let got = read(&h.store, &d, start, len).await.unwrap();
        assert!(
            got == bytes[start as usize..(start + len) as usize],
            "{start}+{len}: {} bytes",
            got.len()
        );
    }
    assert_eq!(read(&h.store, &d, 7, 0).await.unwrap(), Vec::<u8>::new());
}

async fn missing_objects_are_none(driver: Driver) {
    let h = Harness::new(driver, "drv-missing");
    let d = Digest::sha256_of(b"never stored");
    assert_eq!(h.store.stat(&d).unwrap(), None);
    assert_eq!(h.store.read_blob(&d).unwrap(), None);
    assert!(read(&h.store, &d, 0, 10).await.is_none());
    assert_eq!(h.store.hash_blob(&d, &mut |_| {}).unwrap(), None);
    h.store.remove_blob(&d).unwrap();
    h.store.remove_upload(&id(8), None).unwrap();
    let none = UploadState::default();
    assert!(h.store.resume_upload(&id(8), &none, 0).unwrap().is_none());
}

async fn listing_and_deleting_blobs(driver: Driver) {
    let h = Harness::new(driver, "drv-list");
    let blobs: Vec<(Digest, Vec<u8>)> = (0..4)
        .map(|i| {
            let b = data(100 + i, 90 + i as u64);
            (Digest::sha256_of(&b), b)
        })
        .collect();
    for (d, b) in &blobs {
        h.store.put_verified(d, b, false).unwrap();
    }
    let mut want: Vec<(String, u64)> = blobs
        .iter()
        .map(|(d, b)| (d.to_string(), b.len() as u64))
        .collect();
    want.sort();
    assert_eq!(h.blobs(), want);
    let mut u = h.store.create_upload(&id(9)).unwrap();
    request(&mut u, b"some bytes").await;
    assert_eq!(h.uploads(), vec![id(9)]);
    h.store.remove_blob(&blobs[0].0).unwrap();
    assert_eq!(h.blobs().len(), 3);
    let mut rest: Vec<Digest> = blobs[1..].iter().map(|(d, _)| d.clone()).collect();
    rest.push(Digest::sha256_of(b"not there"));
    h.store.remove_blobs(&rest).unwrap();
    assert!(h.blobs().is_empty());
    h.store.remove_upload(&id(9), Some(&u.state())).unwrap();
    assert!(h.uploads().is_empty());
}
