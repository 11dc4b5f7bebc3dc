//! kill -9 the real `kura` binary while pushes are in flight, restart it, and check that every
//! acknowledged push is intact and that the store is consistent.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, image_manifest};
use kura::digest::Digest;
use kura::registry::Registry;
use redb::ReadableTable;

/// Starts `kura serve` on an ephemeral port; returns the child and its base URL.
fn spawn_kura(root: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "2", "--root"])
        .arg(root)
        .env("KURA_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kura");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("listening line")
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected first line {line:?}"
    );
    (child, url)
}

/// A push acknowledged with 201: the tag, manifest bytes and layer contents' digests.
#[derive(Clone)]
struct Acked {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<Digest>,
}

async fn push_one(base: &str, repo: &str, tag: &str, seed: u64) -> Result<Acked, String> {
    let c = client();
    let size = 50_000 + (seed * 7919 % 1_500_000) as usize;
    let layer: Vec<u8> = (0..size)
        .map(|i| ((i as u64).wrapping_mul(seed | 1) >> 3) as u8)
        .collect();
    let ld = Digest::sha256_of(&layer);
    let err = |e: reqwest::Error| e.to_string();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .map_err(err)?;
    if r.status() != 202 {
        return Err(format!("start {}", r.status()));
    }
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let half = size / 2;
    let r = c
        .patch(&loc)
        .header("Content-Range", format!("0-{}", half - 1))
        .body(layer[..half].to_vec())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 202 {
        return Err(format!("patch {}", r.status()));
    }
    let r = c
        .put(format!("{loc}?digest={ld}"))
        .body(layer[half..].to_vec())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 201 {
        return Err(format!("put {}", r.status()));
    }
    let cfg = format!("{{\"seed\":{seed}}}");
    let cd = Digest::sha256_of(cfg.as_bytes());
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={cd}"))
        .body(cfg.clone())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 201 {
        return Err(format!("config {}", r.status()));
    }
    let manifest = image_manifest(
        &(cd.clone(), cfg.len()),
        &[(ld.clone(), size)],
        serde_json::json!({}),
    );
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .map_err(err)?;
    if r.status() != 201 {
        return Err(format!("manifest {}", r.status()));
    }
    Ok(Acked {
        repo: repo.into(),
        tag: tag.into(),
        manifest,
        blobs: vec![cd, ld],
    })
}

/// Checks the store's invariants by reading it directly (no server may hold it).
fn assert_store_consistent(root: &Path) {
    let reg = Registry::open(root).expect("store opens after kill -9");
    let (blob_rows, links, manifests) = reg
        .meta()
        .read(|t| {
            let mut blobs = HashMap::new();
            for e in t.blobs.iter()? {
                let (k, v) = e?;
                blobs.insert(k.value().to_string(), v.value());
            }
            let mut links = Vec::new();
            for e in t.repo_blobs.iter()? {
                let (k, _) = e?;
                let (r, d) = k.value();
                links.push((r.to_string(), d.to_string()));
            }
            let mut ms = Vec::new();
            for e in t.manifests.iter()? {
                let (k, v) = e?;
                let (r, d) = k.value();
                let rec: kura::meta::ManifestRecord = serde_json::from_slice(v.value()).unwrap();
                ms.push((r.to_string(), d.to_string(), rec));
            }
            Ok((blobs, links, ms))
        })
        .unwrap();
    // Every recorded blob has its file, with the right content.
    for (d, (size, _, _)) in &blob_rows {
        let digest: Digest = d.parse().unwrap();
        let data =
            std::fs::read(reg.store().blob_path(&digest)).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(data.len() as u64, *size, "{d}");
        assert_eq!(
            Digest::of(digest.algorithm(), &data),
            digest,
            "content of {d}"
        );
    }
    for (_, d) in &links {
        assert!(blob_rows.contains_key(d), "link to unrecorded blob {d}");
    }
    // Reference counts equal what the manifest revisions imply.
    let mut expected: HashMap<String, u64> = HashMap::new();
    for (_, d, rec) in &manifests {
        *expected.entry(d.clone()).or_default() += 1;
        for r in rec.blobs.iter().chain(&rec.manifests) {
            assert!(
                blob_rows.contains_key(r),
                "manifest {d} references unrecorded {r}"
            );
            *expected.entry(r.clone()).or_default() += 1;
        }
    }
    for (d, (_, refs, _)) in &blob_rows {
        assert_eq!(
            *refs,
            expected.get(d).copied().unwrap_or(0),
            "refcount of {d}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_consistency_kill_9_during_pushes_loses_no_acknowledged_push() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    for round in 0..3u64 {
        let (mut child, base) = spawn_kura(dir.path());
        let deadline = Instant::now() + Duration::from_millis(600 + round * 250);
        let mut workers = Vec::new();
        for w in 0..4u64 {
            let (base, acked) = (base.clone(), acked.clone());
            workers.push(tokio::spawn(async move {
                for i in 0..200u64 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let seed = round * 1_000_000 + w * 1000 + i;
                    match push_one(
                        &base,
                        &format!("crash/w{w}"),
                        &format!("r{round}-{i}"),
                        seed,
                    )
                    .await
                    {
                        Ok(a) => acked.lock().unwrap().push(a),
                        Err(_) => break,
                    }
                }
            }));
        }
        tokio::time::sleep_until(deadline.into()).await;
        child.kill().expect("kill -9");
        child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
        assert_store_consistent(dir.path());
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "some pushes must have been acknowledged");
    // Every acknowledged push is served, byte for byte, after a final restart.
    let (mut child, base) = spawn_kura(dir.path());
    let c = client();
    for a in &acked {
        let r = c
            .get(format!("{base}/v2/{}/manifests/{}", a.repo, a.tag))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}:{}", a.repo, a.tag);
        assert_eq!(r.bytes().await.unwrap().as_ref(), a.manifest.as_slice());
        for d in &a.blobs {
            let r = c
                .get(format!("{base}/v2/{}/blobs/{d}", a.repo))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(&Digest::sha256_of(&r.bytes().await.unwrap()), d);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
