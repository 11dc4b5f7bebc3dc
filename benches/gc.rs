//! Garbage collection at scale: a store of 100k blobs and 20k manifests. Measures a full
//! collection pass, collecting 20k unreferenced blobs, and push latency with the collector
//! idle, scanning in a loop with nothing to delete, and really deleting: a loop that adds
//! `GARBAGE_PER_RUN` expired unreferenced blobs (files and rows) and collects them with a
//! one-minute grace (the pushes' own blobs are inside it), so every run removes rows in
//! batches and unlinks files while the pushes are timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kura::digest::Digest;
use kura::gc::{GcOptions, collect};
use kura::meta::blobs::{self, BlobRow};
use kura::meta::{ManifestRecord, manifests, repos, tags};
use kura::names::{Reference, RepoName};
use kura::registry::Registry;

const MANIFESTS: u64 = 20_000;
const LAYERS_PER_MANIFEST: u64 = 4;
const UNREFERENCED: u64 = 20_000;
const GARBAGE_PER_RUN: u64 = 5_000;

fn digest_of(kind: &str, i: u64) -> Digest {
    Digest::sha256_of(format!("{kind}-{i}").as_bytes())
}

/// Writes `digests` as blob files (their content is what they hash) with old, unreferenced rows.
fn add_loose_blobs(reg: &Registry, kind: &str, range: std::ops::Range<u64>) {
    let ds: Vec<Digest> = range.clone().map(|i| digest_of(kind, i)).collect();
    for (i, d) in range.zip(&ds) {
        std::fs::write(
            reg.store().fs().unwrap().blob_path(d),
            format!("{kind}-{i}"),
        )
        .unwrap();
    }
    reg.meta()
        .write(|t| {
            for d in &ds {
                blobs::put(
                    t,
                    &d.to_string(),
                    BlobRow {
                        size: 8,
                        refs: 0,
                        touched: 0,
                    },
                )?;
                blobs::link(t, "bench/loose", &d.to_string())?;
            }
            repos::ensure(t, "bench/loose")
        })
        .unwrap();
}

/// 100k blobs (80k referenced by 20k tagged manifests in 100 repositories, 20k loose).
fn populate(reg: &Registry) {
    add_loose_blobs(reg, "layer", 0..MANIFESTS * LAYERS_PER_MANIFEST);
    for chunk in (0..MANIFESTS).collect::<Vec<_>>().chunks(2000) {
        reg.meta()
            .write(|t| {
                for &m in chunk {
                    let repo = format!("bench/r{}", m % 100);
                    let layers: Vec<String> = (0..LAYERS_PER_MANIFEST)
                        .map(|l| digest_of("layer", m * LAYERS_PER_MANIFEST + l).to_string())
                        .collect();
                    let md = digest_of("manifest", m).to_string();
                    let rec = ManifestRecord {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        size: 500,
                        artifact_type: None,
                        annotations: None,
                        subject: None,
                        blobs: layers.clone(),
                        manifests: vec![],
                        created: 0,
                        touched: 0,
                    };
                    repos::ensure(t, &repo)?;
                    blobs::put(
                        t,
                        &md,
                        BlobRow {
                            size: 500,
                            refs: 1,
                            touched: 0,
                        },
                    )?;
                    for l in &layers {
                        blobs::add_ref(t, l, 1)?;
                    }
                    manifests::insert(t, &repo, &md, &rec)?;
                    tags::set(t, &repo, &format!("t{m}"), &md)?;
                }
                Ok(())
            })
            .unwrap();
    }
    for m in 0..MANIFESTS {
        let d = digest_of("manifest", m);
        std::fs::write(
            reg.store().fs().unwrap().blob_path(&d),
            format!("manifest-{m}"),
        )
        .unwrap();
    }
    add_loose_blobs(reg, "loose", 0..UNREFERENCED);
}

fn chunks(data: Bytes) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    futures_util::stream::iter([Ok(data)])
}

fn push_one(rt: &tokio::runtime::Runtime, reg: &Registry, n: u64) {
    let repo = RepoName::parse("bench/push").unwrap();
    let mut layer = vec![7u8; 64 * 1024];
    layer[..8].copy_from_slice(&n.to_le_bytes());
    let layer = Bytes::from(layer);
    let ld = Digest::sha256_of(&layer);
    let cfg = Bytes::from(format!("{{\"n\":{n}}}"));
    let cd = Digest::sha256_of(&cfg);
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": layer.len()}]});
    rt.block_on(async {
        reg.put_blob(&repo, &ld, chunks(layer)).await.unwrap();
        reg.put_blob(&repo, &cd, chunks(cfg)).await.unwrap();
        let tag = Reference::parse(&format!("n{n}")).unwrap();
        reg.put_manifest(
            &repo,
            &tag,
            None,
            Bytes::from(serde_json::to_vec(&m).unwrap()),
        )
        .await
        .unwrap();
    });
}

fn gc_at_scale(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    populate(&reg);
    let keep_all = GcOptions {
        grace: Duration::from_secs(365 * 24 * 3600),
        ..GcOptions::default()
    };
    let mut g = c.benchmark_group("gc_100k_blobs_20k_manifests");
    g.sample_size(10);
    g.bench_function("full_pass_nothing_to_collect", |b| {
        b.iter(|| collect(&reg, &keep_all).unwrap())
    });
    let collect_now = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    let mut round = 0u64;
    g.bench_function("collect_20k_unreferenced_blobs", |b| {
        b.iter_batched(
            || {
                round += 1;
                add_loose_blobs(&reg, &format!("garbage{round}"), 0..UNREFERENCED);
            },
            |_| {
                let r = collect(&reg, &collect_now).unwrap();
                assert!(r.blobs_removed >= UNREFERENCED);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("push_latency_64k_layer_and_manifest");
    g.sample_size(30);
    let mut n = 0u64;
    g.bench_function("gc_idle", |b| {
        b.iter(|| {
            n += 1;
            push_one(&rt, &reg, n)
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let gc_loop = {
        let (reg, stop, opts) = (reg.clone(), stop.clone(), keep_all.clone());
        std::thread::spawn(move || {
            let mut runs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                collect(&reg, &opts).unwrap();
                runs += 1;
            }
            runs
        })
    };
    g.bench_function("gc_scanning_nothing_to_delete", |b| {
        b.iter(|| {
            n += 1;
            push_one(&rt, &reg, n)
        })
    });
    stop.store(true, Ordering::Relaxed);
    let runs = gc_loop.join().unwrap();
    println!(
        "collector completed {runs} full passes (nothing to delete) while pushes were measured"
    );

    let deleting = GcOptions {
        grace: Duration::from_secs(60),
        ..GcOptions::default()
    };
    stop.store(false, Ordering::Relaxed);
    let gc_loop = {
        let (reg, stop) = (reg.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut runs, mut removed) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                runs += 1;
                add_loose_blobs(&reg, &format!("busy{runs}"), 0..GARBAGE_PER_RUN);
                let r = collect(&reg, &deleting).unwrap();
                assert!(r.blobs_removed >= GARBAGE_PER_RUN, "{r}");
                removed += r.blobs_removed;
            }
            (runs, removed)
        })
    };
    g.bench_function("gc_deleting_expired_blobs", |b| {
        b.iter(|| {
            n += 1;
            push_one(&rt, &reg, n)
        })
    });
    stop.store(true, Ordering::Relaxed);
    let (runs, removed) = gc_loop.join().unwrap();
    println!(
        "collector completed {runs} runs removing {removed} blobs (rows and files) while pushes were measured"
    );
    g.finish();
}

criterion_group!(benches, gc_at_scale);
criterion_main!(benches);
