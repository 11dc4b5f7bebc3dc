//! Upload sessions cannot exhaust the process: idle sessions hold no file descriptor, open
//! sessions are capped per client and in total (429 `TOOMANYREQUESTS` beyond), closing a
//! session frees its slot, and sessions that survive a restart keep theirs. Resuming a
//! session after a restart rehashes its file without holding any registry-wide lock.

mod common;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use futures_util::StreamExt;
use kura::digest::Digest;

/// The real `kura serve` with its descriptor limit lowered; killed on drop.
struct Kura {
    child: Child,
    url: String,
}

impl Drop for Kura {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const NOFILE: libc::rlim_t = 128;

fn spawn_limited(root: &Path, env: &[(&str, &str)]) -> Kura {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kura"));
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--workers", "2", "--root"])
        .arg(root)
        .env("KURA_LOG", "error")
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn kura");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap_or("").to_string();
    let k = Kura { child, url };
    assert!(
        k.url.starts_with("http://127.0.0.1:"),
        "first line {line:?}"
    );
    k
}

/// A client whose connections come from `ip` (any 127/8 address is loopback on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<IpAddr>().ok())
        .build()
        .unwrap()
}

/// Opens `n` sessions of `repo`, 16 at a time; returns their locations (all must be 202).
async fn open_sessions(c: &reqwest::Client, base: &str, repo: &str, n: usize) -> Vec<String> {
    let url = format!("{base}/v2/{repo}/blobs/uploads/");
    futures_util::stream::iter(0..n)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let r = c.post(&url).send().await.expect("POST");
                let status = r.status();
                let body = r
                    .headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_string());
                assert_eq!(status, 202, "POST {url}: {:?}", body);
                body.unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn post_status(c: &reqwest::Client, base: &str, repo: &str) -> (u16, String) {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap_or_default())
}

/// A chunked push (POST, PATCH, PUT) of a layer, a monolithic config and a manifest.
async fn chunked_push(c: &reqwest::Client, base: &str, repo: &str) {
    let layer = vec![7u8; 300_000];
    let ld = Digest::sha256_of(&layer);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(&loc)
        .header("Content-Range", "0-199999")
        .body(layer[..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .put(format!("{loc}?digest={ld}"))
        .body(layer[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let config = br#"{"architecture":"amd64"}"#;
    let cd = Digest::sha256_of(config);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={cd}"))
        .body(config.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m = image_manifest(
        &(cd, config.len()),
        &[(ld, layer.len())],
        serde_json::json!({}),
    );
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/v1"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), m.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sessions_under_a_low_descriptor_limit_leave_pushes_working_and_hit_the_caps()
{
    const PER_CLIENT: usize = 1500;
    const TOTAL: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("KURA_LIMITS__MAX_UPLOAD_SESSIONS", "2000"),
        ("KURA_LIMITS__MAX_UPLOAD_SESSIONS_PER_CLIENT", "1500"),
    ];
    let kura = spawn_limited(dir.path(), &env);
    let a = client_from("127.0.0.1");
    let b = client_from("127.0.0.2");

    // Far more idle sessions than descriptors.
    let mine = open_sessions(&a, &kura.url, "flood/a", PER_CLIENT).await;
    let (s, body) = post_status(&a, &kura.url, "flood/a").await;
    assert_eq!(s, 429, "client A beyond its cap: {body}");
    assert!(body.contains("TOOMANYREQUESTS"), "{body}");

    // Another client still pushes, chunked, and its finished session frees its slot.
    chunked_push(&b, &kura.url, "team/app").await;
    let theirs = open_sessions(&b, &kura.url, "flood/b", TOTAL - PER_CLIENT).await;
    let (s, body) = post_status(&b, &kura.url, "flood/b").await;
    assert_eq!(s, 429, "total cap: {body}");

    // Idle sessions still work one request at a time (each opens its file and closes it).
    let r = a
        .patch(&mine[0])
        .header("Content-Range", "0-2")
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Cancelling frees a slot, for that client and in total.
    let r = a.delete(&mine[1]).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (s, body) = post_status(&a, &kura.url, "flood/a").await;
    assert_eq!(s, 202, "a cancelled session's slot is free again: {body}");
    let (s, _) = post_status(&b, &kura.url, "flood/b").await;
    assert_eq!(s, 429);

    // After a restart, the surviving sessions still hold their slots.
    let old = kura.url.clone();
    drop(kura);
    let kura = spawn_limited(dir.path(), &env);
    let theirs0 = theirs[0].replace(&old, &kura.url);
    let (s, body) = post_status(&a, &kura.url, "flood/a").await;
    assert_eq!(s, 429, "recovered sessions count: {body}");
    // ...and each can be resumed and finished, which frees its slot.
    let data = b"resumed".to_vec();
    let d = Digest::sha256_of(&data);
    let r = b
        .put(format!("{theirs0}?digest={d}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let (s, body) = post_status(&b, &kura.url, "flood/b").await;
    assert_eq!(s, 202, "a finished session's slot is free again: {body}");
    // Cancelling a recovered session frees its slot too.
    let r = a
        .delete(mine[2].replace(&old, &kura.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    chunked_push(&a, &kura.url, "team/other").await;
}

fn repo(name: &str) -> kura::names::RepoName {
    kura::names::RepoName::parse(name).unwrap()
}

fn body(
    data: &[u8],
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
    futures_util::stream::iter([Ok(bytes::Bytes::from(data.to_vec()))])
}

fn empty_body() -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
    futures_util::stream::iter(Vec::<Result<bytes::Bytes, std::io::Error>>::new())
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Feeds `data` into the FIFO `path` once the test says so, or after 30 s whatever happens
/// (so a test that would hang fails instead); `released` records whether it did. `new`
/// returns once a reader has opened the FIFO (the rehash has started).
struct Unblocker {
    go: std::sync::mpsc::Sender<()>,
    released: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Unblocker {
    fn new(path: std::path::PathBuf, data: Vec<u8>) -> Unblocker {
        use std::os::unix::fs::OpenOptionsExt;
        let (go, wait) = std::sync::mpsc::channel();
        let (opened, reader_present) = std::sync::mpsc::channel();
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = released.clone();
        let thread = std::thread::spawn(move || {
            // A non-blocking open for writing succeeds only once a reader has the FIFO open.
            let mut w = None;
            for _ in 0..6000 {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)
                {
                    Ok(f) => {
                        w = Some(f);
                        break;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
            let mut w = w.expect("nobody opened the FIFO to read it");
            opened.send(()).unwrap();
            let _ = wait.recv_timeout(std::time::Duration::from_secs(30));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            // The reader keeps its FIFO descriptor; whoever opens the path later finds a
            // regular file with the same content.
            let plain = path.with_extension("plain");
            std::fs::write(&plain, &data).unwrap();
            std::fs::rename(&plain, &path).unwrap();
            use std::io::Write;
            w.write_all(&data).unwrap();
        });
        reader_present
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the FIFO was opened for reading");
        Unblocker {
            go,
            released,
            thread: Some(thread),
        }
    }

    /// True once the FIFO was fed.
    fn released(&self) -> bool {
        self.released.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn release(mut self) {
        let _ = self.go.send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

/// A session resumed after a restart is rehashed from its file; while that runs (here: a
/// FIFO that yields nothing until released), requests on other sessions are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_session_does_not_block_other_sessions_while_it_rehashes() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo("resume");
    let (slow, other) = {
        let reg = kura::registry::Registry::open(dir.path()).unwrap();
        let slow = reg.start_upload(&r, "ip:a").await.unwrap();
        let other = reg.start_upload(&r, "ip:a").await.unwrap();
        reg.append(&r, &other, None, body(b"hello")).await.unwrap();
        (slow, other)
    };
    let reg = kura::registry::Registry::open(dir.path()).unwrap();
    let fifo = dir.path().join("uploads").join(&slow);
    mkfifo(&fifo);
    let (reg2, r2, slow2) = (reg.clone(), r.clone(), slow.clone());
    let stuck = tokio::spawn(async move { reg2.upload_status(&r2, &slow2).await });
    let unblock = Unblocker::new(fifo, b"abc".to_vec());
    assert_eq!(reg.upload_status(&r, &other).await.unwrap(), 5);
    let started = reg.start_upload(&r, "ip:b").await.unwrap();
    assert_eq!(reg.upload_status(&r, &started).await.unwrap(), 0);
    assert!(
        !unblock.released(),
        "other sessions waited for the rehash of a resumed one"
    );
    unblock.release();
    assert_eq!(stuck.await.unwrap().unwrap(), 3);
}

/// Finishing an upload that must be rehashed from disk (a blake3 digest; the running hash is
/// sha256), here from a FIFO that yields nothing until released, takes the blob's digest lock
/// only after hashing: another push of the same blob completes while the rehash waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_an_upload_rehashes_before_taking_the_digest_lock() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo("relock");
    let data = b"the same layer, pushed twice".to_vec();
    let d = Digest::of(kura::digest::Algorithm::Blake3, &data);
    let reg = kura::registry::Registry::open(dir.path()).unwrap();
    let id = reg.start_upload(&r, "ip:a").await.unwrap();
    reg.append(&r, &id, None, body(&data)).await.unwrap();
    let fifo = dir.path().join("uploads").join(&id);
    mkfifo(&fifo);
    let (reg2, r2, id2, d2) = (reg.clone(), r.clone(), id.clone(), d.clone());
    let finishing =
        tokio::spawn(async move { reg2.finish_upload(&r2, &id2, &d2, None, empty_body()).await });
    let unblock = Unblocker::new(fifo, data.clone());
    reg.put_blob(&repo("relock/other"), &d, body(&data))
        .await
        .unwrap();
    assert!(
        !unblock.released(),
        "a push of the same blob waited for another upload's rehash"
    );
    unblock.release();
    finishing.await.unwrap().unwrap();
    assert_eq!(reg.blob_size(&r, &d).unwrap(), data.len() as u64);
}

/// Every way a session closes frees its slot: finishing, a digest mismatch, cancelling and
/// the collector's purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_session_closes_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let reg = kura::registry::Registry::open(dir.path()).unwrap();
    reg.set_session_limits(kura::registry::SessionLimits {
        total: 2,
        per_client: 1,
    });
    let r = repo("slots");
    let too_many = |e: kura::error::Error| assert_eq!(e.code.as_str(), "TOOMANYREQUESTS");

    let a = reg.start_upload(&r, "ip:a").await.unwrap();
    too_many(reg.start_upload(&r, "ip:a").await.unwrap_err());
    let b = reg.start_upload(&r, "ip:b").await.unwrap();
    too_many(reg.start_upload(&r, "ip:c").await.unwrap_err());
    assert_eq!(reg.session_count(), 2);

    // Finished.
    let d = Digest::sha256_of(b"x");
    reg.finish_upload(&r, &a, &d, None, body(b"x"))
        .await
        .unwrap();
    let a = reg.start_upload(&r, "ip:a").await.unwrap();
    // Digest mismatch.
    assert!(
        reg.finish_upload(&r, &a, &d, None, body(b"y"))
            .await
            .is_err()
    );
    let a = reg.start_upload(&r, "ip:a").await.unwrap();
    // Cancelled.
    reg.cancel_upload(&r, &b).await.unwrap();
    let _b = reg.start_upload(&r, "ip:b").await.unwrap();
    too_many(reg.start_upload(&r, "ip:c").await.unwrap_err());
    // Purged by the collector.
    let opts = kura::gc::GcOptions {
        upload_max_age: std::time::Duration::ZERO,
        ..Default::default()
    };
    kura::gc::collect(&reg, &opts).unwrap();
    assert_eq!(reg.session_count(), 0);
    assert!(reg.upload_status(&r, &a).await.is_err());
    reg.start_upload(&r, "ip:a").await.unwrap();
    reg.start_upload(&r, "ip:c").await.unwrap();
}

/// A session a request is streaming into is in use, however long ago its record last moved:
/// the collector's purge of idle sessions passes over it, and the upload finishes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_does_not_purge_a_session_a_request_is_streaming_into() {
    let dir = tempfile::tempdir().unwrap();
    let reg = kura::registry::Registry::open(dir.path()).unwrap();
    let r = repo("streaming");
    let id = reg.start_upload(&r, "ip:a").await.unwrap();
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (first, second) = (data[..1000].to_vec(), data[1000..].to_vec());
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let (sent, first_sent) = tokio::sync::oneshot::channel::<()>();
    let stalled = futures_util::stream::once(async move {
        let _ = sent.send(());
        Ok::<_, std::io::Error>(bytes::Bytes::from(first))
    })
    .chain(futures_util::stream::once(async move {
        let _ = wait.await;
        Ok(bytes::Bytes::from(second))
    }));
    let patch = tokio::spawn({
        let (reg, r, id) = (reg.clone(), r.clone(), id.clone());
        async move { reg.append(&r, &id, None, Box::pin(stalled)).await }
    });
    first_sent.await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Every session counts as idle by age.
    let opts = kura::gc::GcOptions {
        upload_max_age: std::time::Duration::ZERO,
        ..Default::default()
    };
    let report = tokio::task::spawn_blocking({
        let reg = reg.clone();
        move || kura::gc::collect(&reg, &opts).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        report.uploads_purged, 0,
        "purged a session in use: {:?}",
        report.items
    );

    go.send(()).unwrap();
    assert_eq!(patch.await.unwrap().unwrap(), data.len() as u64);
    let d = Digest::sha256_of(&data);
    reg.finish_upload(&r, &id, &d, None, empty_body())
        .await
        .unwrap();
    assert_eq!(reg.stat_blob(&r, &d).await.unwrap(), data.len() as u64);
}
