//! Soak: pushers, deleters, revivers and pullers against a live server for 30 s while the
//! collector runs in a tight loop with a 2 s grace period. Revivers re-push images right after
//! they were deleted as a client would: `HEAD` each blob and skip it when present, else mount it
//! from the image's old repository, else upload it, then `PUT` the manifest, which must land.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kura::digest::Digest;
use kura::gc::{GcOptions, collect};

const SOAK: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(2);

/// One pushed image: its repository, tag, manifest digest and every blob it names.
#[derive(Clone)]
struct Image {
    repo: String,
    tag: String,
    manifest: Digest,
    blobs: Vec<Digest>,
    seed: u64,
}

fn layer(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 ^ seed).wrapping_mul(0x9E37_79B9) >> 7) as u8)
        .collect()
}

/// The blobs of image `seed`: its config, the shared base layer and its unique layer.
fn image_blobs(seed: u64) -> [Vec<u8>; 3] {
    [
        format!("{{\"seed\":{seed}}}").into_bytes(),
        layer(42, 64 * 1024),
        layer(seed, 16 * 1024 + (seed % 4096) as usize),
    ]
}

/// Pushes a config, a shared base layer (skipped when HEAD finds it) and a unique layer.
async fn push(base: &str, repo: &str, tag: &str, seed: u64) -> Result<Image, String> {
    let c = client();
    let [cfg, shared, unique] = image_blobs(seed);
    let mut descs = Vec::new();
    for (data, check_first) in [(&cfg, false), (&shared, true), (&unique, false)] {
        let d = Digest::sha256_of(data);
        if check_first {
            let r = c
                .head(format!("{base}/v2/{repo}/blobs/{d}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() == 200 {
                descs.push((d, data.len()));
                continue;
            }
        }
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(data.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 201 {
            return Err(format!("blob upload {}", r.status()));
        }
        descs.push((d, data.len()));
    }
    let body = image_manifest(&descs[0], &descs[1..], serde_json::json!({}));
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!(
            "manifest {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    Ok(Image {
        repo: repo.into(),
        tag: tag.into(),
        manifest: Digest::sha256_of(&body),
        blobs: descs.into_iter().map(|(d, _)| d).collect(),
        seed,
    })
}

/// How each blob of a revived image got there.
#[derive(Default)]
struct Revivals {
    images: AtomicU64,
    skipped: AtomicU64,
    mounted: AtomicU64,
    uploaded: AtomicU64,
}

/// Re-pushes deleted image `img` into `repo` as a client would: `HEAD` (skip when present),
/// else mount from the image's repository, else upload; then `PUT` the same manifest.
async fn revive(base: &str, repo: &str, img: &Image, n: &Revivals) -> Result<Image, String> {
    let c = client();
    let err = |e: reqwest::Error| e.to_string();
    let mut descs = Vec::new();
    for data in image_blobs(img.seed) {
        let d = Digest::sha256_of(&data);
        descs.push((d.clone(), data.len()));
        let r = c
            .head(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .map_err(err)?;
        if r.status() == 200 {
            n.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let r = c
            .post(format!(
                "{base}/v2/{repo}/blobs/uploads/?mount={d}&from={}",
                img.repo
            ))
            .send()
            .await
            .map_err(err)?;
        if r.status() == 201 {
            n.mounted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
            .body(data)
            .send()
            .await
            .map_err(err)?;
        if r.status() != 201 {
            return Err(format!("blob upload {}", r.status()));
        }
        n.uploaded.fetch_add(1, Ordering::Relaxed);
    }
    let body = image_manifest(&descs[0], &descs[1..], serde_json::json!({}));
    let tag = format!("r{}", img.seed);
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.clone())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 201 {
        return Err(format!(
            "revived manifest {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    n.images.fetch_add(1, Ordering::Relaxed);
    Ok(Image {
        repo: repo.into(),
        tag,
        manifest: Digest::sha256_of(&body),
        blobs: descs.into_iter().map(|(d, _)| d).collect(),
        seed: img.seed,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_soak_pushes_deletes_and_pulls_never_fail_while_collecting() {
    gc_soak_pushes_deletes_and_pulls_never_fail_while_collecting_with(TestServer::start().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_soak_pushes_deletes_and_pulls_never_fail_while_collecting_on_s3() {
    gc_soak_pushes_deletes_and_pulls_never_fail_while_collecting_with(
        TestServer::start_on(&common::s3::s3_config(
            "gc_soak_pushes_deletes_and_pulls_never_f",
        ))
        .await,
    )
    .await;
}

async fn gc_soak_pushes_deletes_and_pulls_never_fail_while_collecting_with(s: TestServer) {
    let stop = Arc::new(AtomicBool::new(false));
    let keepers: Arc<Mutex<Vec<Image>>> = Arc::default();
    let victims: Arc<Mutex<Vec<Image>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<Image>>> = Arc::default();
    let (pushes, pulls, gc_runs) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let deadline = Instant::now() + SOAK;

    // The collector, in a tight loop.
    let gc = {
        let (reg, stop, runs) = (s.registry.clone(), stop.clone(), gc_runs.clone());
        tokio::task::spawn_blocking(move || {
            let opts = GcOptions {
                grace: GRACE,
                delete_untagged: true,
                upload_max_age: Duration::from_secs(60),
                ..GcOptions::default()
            };
            while !stop.load(Ordering::Relaxed) {
                collect(&reg, &opts).expect("gc run");
                runs.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut tasks = Vec::new();
    // Pushers: even pushes are kept, odd ones become victims.
    for p in 0..4u64 {
        let (base, keepers, victims, pushes) = (
            s.base.clone(),
            keepers.clone(),
            victims.clone(),
            pushes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline && i < 100_000 {
                let repo = format!("soak/p{p}");
                let img = push(&base, &repo, &format!("t{i}"), p * 1_000_000 + i)
                    .await
                    .expect("push must not fail");
                pushes.fetch_add(1, Ordering::Relaxed);
                if i.is_multiple_of(2) {
                    keepers.lock().unwrap().push(img)
                } else {
                    victims.lock().unwrap().push(img)
                }
                i += 1;
            }
        }));
    }
    // Deleters: delete victims by digest; every other deleted image is handed to a reviver.
    let to_revive: Arc<Mutex<Vec<Image>>> = Arc::default();
    let revivals = Arc::new(Revivals::default());
    for _ in 0..2 {
        let (base, victims, deleted, to_revive) = (
            s.base.clone(),
            victims.clone(),
            deleted.clone(),
            to_revive.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut handed = 0u64;
            while Instant::now() < deadline {
                let next = victims.lock().unwrap().pop();
                let Some(img) = next else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let r = client()
                    .delete(format!("{base}/v2/{}/manifests/{}", img.repo, img.manifest))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                handed += 1;
                if handed.is_multiple_of(2) {
                    to_revive.lock().unwrap().push(img.clone());
                }
                deleted.lock().unwrap().push(img);
            }
        }));
    }
    // Revivers: re-push just-deleted images (HEAD-then-skip, mount, upload) into one repository;
    // each must land, and is then kept.
    for _ in 0..2 {
        let (base, to_revive, keepers, revivals) = (
            s.base.clone(),
            to_revive.clone(),
            keepers.clone(),
            revivals.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let next = to_revive.lock().unwrap().pop();
                let Some(img) = next else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let back = revive(&base, "soak/revived", &img, &revivals)
                    .await
                    .expect("a revived push must not fail");
                keepers.lock().unwrap().push(back);
            }
        }));
    }
    // Pullers: every blob of a kept image must always be served with the right content.
    for k in 0..2u64 {
        let (base, keepers, pulls) = (s.base.clone(), keepers.clone(), pulls.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = k;
            while Instant::now() < deadline {
                let pick = {
                    let ks = keepers.lock().unwrap();
                    if ks.is_empty() {
                        None
                    } else {
                        Some(ks[(n as usize * 7919) % ks.len()].clone())
                    }
                };
                n += 1;
                let Some(img) = pick else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let c = client();
                let r = c
                    .get(format!("{base}/v2/{}/manifests/{}", img.repo, img.tag))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "kept manifest {}:{}", img.repo, img.tag);
                for d in &img.blobs {
                    let r = c
                        .get(format!("{base}/v2/{}/blobs/{d}", img.repo))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status(),
                        200,
                        "referenced blob {d} of {}:{}",
                        img.repo,
                        img.tag
                    );
                    assert_eq!(&Digest::sha256_of(&r.bytes().await.unwrap()), d);
                }
                pulls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    gc.await.unwrap();

    // After the grace period, one more collection: what only deleted images used is gone,
    // everything kept images use is there.
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let reg = s.registry.clone();
    let report = tokio::task::spawn_blocking(move || {
        collect(
            &reg,
            &GcOptions {
                grace: GRACE,
                delete_untagged: true,
                ..GcOptions::default()
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    let kept: BTreeSet<Digest> = keepers
        .lock()
        .unwrap()
        .iter()
        .flat_map(|i| i.blobs.iter().cloned().chain([i.manifest.clone()]))
        .collect();
    let deleted = deleted.lock().unwrap().clone();
    let mut freed = 0;
    for img in &deleted {
        for d in img.blobs.iter().chain([&img.manifest]) {
            if !kept.contains(d) {
                assert!(
                    s.registry.store().stat(d).unwrap().is_none(),
                    "{d} only used by deleted images survived"
                );
                freed += 1;
            }
        }
    }
    for d in &kept {
        assert!(
            s.registry.store().stat(d).unwrap().is_some(),
            "{d} is used by a kept image"
        );
    }
    let fsck = kura::fsck::fsck(&s.registry, false, false).unwrap();
    assert!(fsck.errors.is_empty(), "{fsck}");
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak: {} pushes, {} pulls, {} deleted images, {} revived ({} blobs skipped after HEAD, {} mounted, {} uploaded), {} gc runs, {freed} blobs freed; final run: {report}",
        r(&pushes),
        r(&pulls),
        deleted.len(),
        r(&revivals.images),
        r(&revivals.skipped),
        r(&revivals.mounted),
        r(&revivals.uploaded),
        r(&gc_runs)
    );
    assert!(r(&pushes) > 0 && !deleted.is_empty() && r(&gc_runs) > 1);
    assert!(
        r(&revivals.images) > 0 && r(&revivals.skipped) > 0 && r(&revivals.mounted) > 0,
        "the soak must exercise revivals with HEAD-then-skip and mounts"
    );
}
