//! Crash harness: the real `kura` binary runs a load of pushes, deletes and online GC (every
//! 100 ms, 1 s grace) and is killed with SIGKILL at a random moment, at least 50 times. Each
//! round waits for an acknowledged delete before its random kill delay starts, so every round
//! exercises deletes. After each kill `kura fsck` must find the store clean; after each restart
//! every push acknowledged with 201 must be pullable byte for byte, every acknowledged delete
//! must stay deleted, and a push cut off by the kill must be either absent or whole (never
//! half-written). Only a transport error (no answer: the kill) excuses an operation; any
//! unexpected HTTP status fails the test. At the end the server is stopped and `kura gc
//! --grace 0s` runs offline: it must remove the blobs of every deleted push and nothing
//! acknowledged. The random schedule is printed; `KURA_CRASH_SEED=<n>` replays it. Servers
//! are killed on every exit path (`KillOnDrop`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    client, image_manifest, kura_cmd, short_online_grace_env, spawn_kura_guarded_env, storage_env,
};
use kura::config::StorageConfig;
use kura::digest::Digest;
use kura::store::BlobStore;

/// Every run makes exactly this many kill rounds (deterministic in what it exercises; a slow
/// machine takes longer rather than checking less).
const ROUNDS: u64 = 50;
/// Kill rounds on the S3 driver: each round's fsck rehashes every blob over HTTP, so a round
/// costs about three times one on the filesystem.
const S3_ROUNDS: u64 = 20;
/// A bound on the whole harness: no round starts after this (about 90 s on this machine).
const BUDGET: Duration = Duration::from_secs(300);
const WORKERS: u64 = 3;

/// xorshift64*, so a failing schedule can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// One image push: what it is made of, and whether its manifest PUT got a 201.
#[derive(Clone, Debug)]
struct Push {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    /// (digest, content) of the config and the layer.
    blobs: Vec<(Digest, Vec<u8>)>,
}

impl Push {
    fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }
}

#[derive(Default)]
struct Ledger {
    /// Acknowledged pushes not deleted since.
    kept: Vec<Push>,
    /// Acknowledged pushes whose manifest delete was then acknowledged.
    deleted: Vec<Push>,
    /// Pushes (or deletes) in flight when their round ended: the kill may have cut them.
    cut: Vec<Push>,
    /// Requests that got an answer.
    requests: u64,
    /// Answers no kill can explain (a 4xx/5xx from a bug): each fails the test.
    bugs: Vec<String>,
}

/// Why a worker stopped.
enum Stop {
    /// No answer: the server died under the request (the kill). Only this is excused.
    Cut,
    /// An HTTP answer other than the expected one: a bug.
    Bug(String),
}

/// `Stop::Bug` for an unexpected answer to `what`, with its body.
async fn bug(what: &str, p: &Push, r: reqwest::Response) -> Stop {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    Stop::Bug(format!("{what} of {}:{}: {status} {body}", p.repo, p.tag))
}

fn build(round: u64, worker: u64, i: u64) -> Push {
    let seed = (round << 32) | (worker << 16) | i;
    let size = 1_000 + (seed.wrapping_mul(7919) % 60_000) as usize;
    let layer: Vec<u8> = (0..size)
        .map(|j| ((j as u64).wrapping_mul(seed | 1) >> 5) as u8)
        .collect();
    let config = format!("{{\"round\":{round},\"worker\":{worker},\"i\":{i}}}").into_bytes();
    let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
    let manifest = image_manifest(
        &(cd.clone(), config.len()),
        &[(ld.clone(), layer.len())],
        serde_json::json!({}),
    );
    Push {
        repo: format!("crash/w{worker}"),
        tag: format!("r{round}-{i}"),
        manifest,
        blobs: vec![(cd, config), (ld, layer)],
    }
}

/// Pushes `p`: the layer chunked (two PATCHes and the closing PUT) or in one POST, the config
/// in one POST, then the manifest by tag. `Ok` only on a 201 for the manifest.
async fn push(
    c: &reqwest::Client,
    base: &str,
    p: &Push,
    chunked: bool,
    requests: &mut u64,
) -> Result<(), Stop> {
    let err = |_: reqwest::Error| Stop::Cut;
    for (n, (d, data)) in p.blobs.iter().enumerate() {
        if chunked && n == 1 {
            let r = c
                .post(format!("{base}/v2/{}/blobs/uploads/", p.repo))
                .send()
                .await
                .map_err(err)?;
            *requests += 1;
            if r.status() != 202 {
                return Err(bug("start", p, r).await);
            }
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            let half = data.len() / 2;
            let r = c
                .patch(&loc)
                .header("Content-Range", format!("0-{}", half - 1))
                .body(data[..half].to_vec())
                .send()
                .await
                .map_err(err)?;
            *requests += 1;
            if r.status() != 202 {
                return Err(bug("patch", p, r).await);
            }
            let r = c
                .put(format!("{loc}?digest={d}"))
                .header("Content-Range", format!("{half}-{}", data.len() - 1))
                .body(data[half..].to_vec())
                .send()
                .await
                .map_err(err)?;
            *requests += 1;
            if r.status() != 201 {
                return Err(bug("put", p, r).await);
            }
        } else {
            let r = c
                .post(format!("{base}/v2/{}/blobs/uploads/?digest={d}", p.repo))
                .body(data.clone())
                .send()
                .await
                .map_err(err)?;
            *requests += 1;
            if r.status() != 201 {
                return Err(bug("blob", p, r).await);
            }
        }
    }
    let r = c
        .put(format!("{base}/v2/{}/manifests/{}", p.repo, p.tag))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(p.manifest.clone())
        .send()
        .await
        .map_err(err)?;
    *requests += 1;
    if r.status() != 201 {
        return Err(bug("manifest", p, r).await);
    }
    Ok(())
}

async fn delete(c: &reqwest::Client, base: &str, p: &Push, requests: &mut u64) -> Result<(), Stop> {
    let r = c
        .delete(format!("{base}/v2/{}/manifests/{}", p.repo, p.digest()))
        .send()
        .await
        .map_err(|_| Stop::Cut)?;
    *requests += 1;
    match r.status().as_u16() {
        202 => Ok(()),
        _ => Err(bug("delete", p, r).await),
    }
}

/// One worker's round: push, and delete every other push again, until the server dies.
async fn work(base: String, round: u64, worker: u64, ledger: Arc<Mutex<Ledger>>) {
    let c = client();
    let mut requests = 0;
    let record = |p: Push, stop: Stop| {
        let mut l = ledger.lock().unwrap();
        match stop {
            Stop::Cut => l.cut.push(p),
            Stop::Bug(why) => l.bugs.push(why),
        }
    };
    for i in 0..1000 {
        let p = build(round, worker, i);
        let chunked = i % 2 == 0;
        if let Err(stop) = push(&c, &base, &p, chunked, &mut requests).await {
            record(p, stop);
            break;
        }
        if i % 2 == 1 {
            match delete(&c, &base, &p, &mut requests).await {
                Ok(()) => ledger.lock().unwrap().deleted.push(p),
                Err(stop) => {
                    record(p, stop);
                    break;
                }
            }
        } else {
            ledger.lock().unwrap().kept.push(p);
        }
    }
    ledger.lock().unwrap().requests += requests;
}

/// Checks one push against a live server: `whole` requires it to be served byte for byte;
/// otherwise it must be absent or whole. Returns the number of requests made.
async fn check(c: &reqwest::Client, base: &str, p: &Push, whole: bool) -> u64 {
    let r = c
        .get(format!("{base}/v2/{}/manifests/{}", p.repo, p.tag))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if !whole && status == 404 {
        return 1;
    }
    assert_eq!(status, 200, "{}:{} (acknowledged: {whole})", p.repo, p.tag);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.as_ref(), p.manifest.as_slice(), "{}:{}", p.repo, p.tag);
    for (d, data) in &p.blobs {
        let r = c
            .get(format!("{base}/v2/{}/blobs/{d}", p.repo))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d} of {}:{}", p.repo, p.tag);
        let got = r.bytes().await.unwrap();
        assert_eq!(&Digest::sha256_of(&got), d);
        assert_eq!(got.len(), data.len());
    }
    1 + p.blobs.len() as u64
}

/// An acknowledged delete stays deleted.
async fn check_deleted(c: &reqwest::Client, base: &str, p: &Push) {
    let r = c
        .get(format!("{base}/v2/{}/manifests/{}", p.repo, p.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "deleted {}:{} is back", p.repo, p.tag);
}

/// A blob of a cut push is absent or whole, never a prefix.
async fn check_blob_absent_or_whole(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    d: &Digest,
    data: &[u8],
) {
    let r = c
        .get(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .await
        .unwrap();
    match r.status().as_u16() {
        404 => {}
        200 => {
            let got = r.bytes().await.unwrap();
            assert_eq!(got.as_ref(), data, "half-written blob {d} is visible");
        }
        s => panic!("blob {d}: unexpected {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_harness_kill_9_at_random_moments_loses_no_acknowledged_write() {
    harness(None, ROUNDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_harness_kill_9_at_random_moments_loses_no_acknowledged_write_on_s3() {
    harness(Some(common::s3::s3_config("crash-harness")), S3_ROUNDS).await;
}

/// The harness on the filesystem driver, or on the object store `storage` names, for
/// exactly `rounds` kill rounds.
async fn harness(storage: Option<StorageConfig>, rounds: u64) {
    let seed = std::env::var("KURA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash harness seed {seed} (replay with KURA_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    // The grace must outlast one push (config, layers, then the manifest naming them); a
    // push over S3 takes several round trips more than one to the filesystem.
    let (grace, upload_age) = if storage.is_some() {
        ("5s", "6s")
    } else {
        ("1s", "2s")
    };
    let flags = [
        "--gc-interval",
        "100ms",
        "--gc-grace",
        grace,
        // A grace of seconds on a live store is below the default floor: allowed for this test.
        "--gc-min-online-grace",
        "0s",
        "--upload-max-age",
        upload_age,
    ];
    let storage_vars = storage.as_ref().map(storage_env).unwrap_or_default();
    let mut env = short_online_grace_env();
    env.extend(storage_vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // `kura gc` and `kura fsck` find the store through the config file (root and [storage]).
    let config_file = dir.path().join("kura.toml");
    let target = match &storage {
        None => vec!["--root".to_string(), root.clone()],
        Some(st) => {
            let file = format!(
                "root = {root:?}\n[storage]\n{}",
                toml::to_string(st).unwrap()
            );
            std::fs::write(&config_file, file).unwrap();
            vec![
                "--config".to_string(),
                config_file.to_str().unwrap().to_string(),
            ]
        }
    };
    let target: Vec<&str> = target.iter().map(String::as_str).collect();
    let cmd = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&target);
        kura_cmd(&all)
    };
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let c = client();
    let started = Instant::now();
    let (mut kills, mut fscks, mut checked, mut cut_seen, mut cut_present) = (0, 0, 0u64, 0, 0);
    let mut previous: (usize, usize) = (0, 0); // ledger lengths (kept, deleted) before the round
    let mut loads = Vec::new();
    // Time spent restarting, verifying, under load until the kill, and in fsck.
    let mut phases = [Duration::ZERO; 4];
    for round in 0..rounds {
        if started.elapsed() > BUDGET {
            break;
        }
        let t = Instant::now();
        let (mut child, base) = spawn_kura_guarded_env(dir.path(), &flags, &env);
        phases[0] += t.elapsed();
        let t = Instant::now();
        // The last round's outcome, on the restarted server.
        let (kept, deleted, cut) = {
            let mut l = ledger.lock().unwrap();
            let cut = std::mem::take(&mut l.cut);
            (
                l.kept[previous.0..].to_vec(),
                l.deleted[previous.1..].to_vec(),
                cut,
            )
        };
        for p in &kept {
            checked += check(&c, &base, p, true).await;
        }
        for p in &deleted {
            check_deleted(&c, &base, p).await;
            checked += 1;
        }
        for p in &cut {
            cut_seen += 1;
            // Cut during its delete (it was pushed) or during its push: absent or whole.
            let n = check(&c, &base, p, false).await;
            if n > 1 {
                cut_present += 1;
            } else {
                for (d, data) in &p.blobs {
                    check_blob_absent_or_whole(&c, &base, &p.repo, d, data).await;
                }
            }
            checked += n;
            // Keep checking it later only if it is there; a later GC may remove it otherwise.
            let mut l = ledger.lock().unwrap();
            if n > 1 {
                l.kept.push(p.clone());
            }
        }
        {
            let l = ledger.lock().unwrap();
            previous = (l.kept.len(), l.deleted.len());
        }
        phases[1] += t.elapsed();
        let t = Instant::now();
        // Load, then SIGKILL at a random moment.
        let load = Duration::from_millis(rng.range(30, 400));
        loads.push(load.as_millis() as u64);
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(work(base.clone(), round, w, ledger.clone())))
            .collect();
        // Every round has an acknowledged delete before the kill's random delay starts.
        let waited = Instant::now();
        loop {
            let done = {
                let l = ledger.lock().unwrap();
                l.deleted.len() > previous.1 || !l.bugs.is_empty()
            };
            if done {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "round {round}: no delete acknowledged within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(load).await;
        child.kill();
        kills += 1;
        for w in workers {
            tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .expect("worker ends once the server is gone")
                .unwrap();
        }
        let bugs = std::mem::take(&mut ledger.lock().unwrap().bugs);
        assert!(
            bugs.is_empty(),
            "round {round}: answers no kill explains (seed {seed}):\n{}",
            bugs.join("\n")
        );
        phases[2] += t.elapsed();
        let t = Instant::now();
        let (ok, out, err) = cmd(&["fsck", "--quiet"]);
        assert!(
            ok,
            "kura fsck after kill {kills} (round {round}):\n{out}\n{err}"
        );
        phases[3] += t.elapsed();
        fscks += 1;
    }
    assert!(
        kills >= rounds,
        "only {kills} of {rounds} kill rounds fit in {BUDGET:?} (machine far too slow?)"
    );
    // Every acknowledged push that was not deleted is served after a final restart.
    let (mut child, base) = spawn_kura_guarded_env(dir.path(), &flags, &env);
    let (kept, deleted, requests) = {
        let l = ledger.lock().unwrap();
        (l.kept.clone(), l.deleted.clone(), l.requests)
    };
    assert!(!kept.is_empty(), "no push was ever acknowledged");
    assert!(
        deleted.len() as u64 >= kills,
        "{} acknowledged deletes in {kills} rounds",
        deleted.len()
    );
    for p in &kept {
        checked += check(&c, &base, p, true).await;
    }
    // How many deleted layers the online collector had already removed (it races the load;
    // reported, not required: a layer deleted in the last rounds may still be in its grace).
    let mut collected_online = 0;
    for p in &deleted {
        check_deleted(&c, &base, p).await;
        checked += 1;
    }
    child.kill();
    let store = BlobStore::open(dir.path(), &storage.clone().unwrap_or_default()).unwrap();
    let stored = |d: &Digest| store.stat(d).unwrap().is_some();
    for p in &deleted {
        if !stored(&p.blobs[1].0) {
            collected_online += 1;
        }
    }
    // Offline, a zero grace is allowed: the collector must now remove every blob of every
    // deleted push, and nothing an acknowledged push needs.
    let (ok, out, err) = cmd(&["gc", "--grace", "0s"]);
    assert!(ok, "offline gc:\n{out}\n{err}");
    for p in &deleted {
        for (d, _) in &p.blobs {
            assert!(
                !stored(d),
                "blob {d} of deleted {}:{} survived an offline gc --grace 0s",
                p.repo,
                p.tag
            );
        }
    }
    let (ok, out, err) = cmd(&["fsck", "--quiet"]);
    assert!(ok, "fsck after the offline gc:\n{out}\n{err}");
    fscks += 1;
    let (_child, base) = spawn_kura_guarded_env(dir.path(), &flags, &env);
    for p in &kept {
        checked += check(&c, &base, p, true).await;
    }
    for p in &deleted {
        check_deleted(&c, &base, p).await;
        let (d, _) = &p.blobs[1];
        let r = c
            .head(format!("{base}/v2/{}/blobs/{d}", p.repo))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "collected layer {d} still served");
        checked += 2;
    }
    let collected = deleted.len();
    loads.sort_unstable();
    println!(
        "crash harness: {kills} kill -9 rounds in {:.1}s (load before each kill {}..{} ms, \
         median {} ms); {} acknowledged pushes kept and {} acknowledged deletes, all intact (the online GC had collected the layers of {collected_online}, the final offline GC \
         all {collected}); \
         {cut_seen} operations cut by a kill ({cut_present} of them present and whole, the rest \
         absent); {requests} load requests; {checked} verification requests; {fscks} clean fsck runs; \
         time in restarts {:.1}s, verification {:.1}s, load {:.1}s, fsck {:.1}s",
        started.elapsed().as_secs_f64(),
        loads[0],
        loads[loads.len() - 1],
        loads[loads.len() / 2],
        kept.len(),
        deleted.len(),
        phases[0].as_secs_f64(),
        phases[1].as_secs_f64(),
        phases[2].as_secs_f64(),
        phases[3].as_secs_f64(),
    );
}
