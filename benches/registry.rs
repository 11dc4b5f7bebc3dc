//! Criterion benchmarks of the registry's core operations, without HTTP: blob ingest (stream,
//! hash, fsync, rename, one metadata commit), manifest push and pull, tag listing.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kura::digest::Digest;
use kura::names::{Reference, RepoName};
use kura::registry::Registry;
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn chunks(data: &Bytes) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    let parts: Vec<_> = (0..data.len())
        .step_by(256 * 1024)
        .map(|i| Ok(data.slice(i..(i + 256 * 1024).min(data.len()))))
        .collect();
    futures_util::stream::iter(parts)
}

fn blob_ingest(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let repo = RepoName::parse("bench/blobs").unwrap();
    let mut g = c.benchmark_group("blob_ingest");
    g.sample_size(10);
    for size in [64 * 1024usize, 16 * 1024 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let mut n = 0u64;
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                n += 1;
                let mut data = vec![0u8; size];
                data[..8].copy_from_slice(&n.to_le_bytes());
                let data = Bytes::from(data);
                let d = Digest::sha256_of(&data);
                rt.block_on(reg.put_blob(&repo, &d, chunks(&data))).unwrap();
            })
        });
    }
    g.finish();
}

fn manifests(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let repo = RepoName::parse("bench/manifests").unwrap();
    let cfg = Bytes::from_static(b"{}");
    let cd = Digest::sha256_of(&cfg);
    rt.block_on(reg.put_blob(&repo, &cd, chunks(&cfg))).unwrap();
    let body = |i: u64| {
        Bytes::from(
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": 2},
                "layers": [], "annotations": {"i": i.to_string()}
            }))
            .unwrap(),
        )
    };
    let mut i = 0u64;
    c.bench_function("manifest_put_tagged", |b| {
        b.iter(|| {
            i += 1;
            let tag = Reference::parse(&format!("t{i}")).unwrap();
            rt.block_on(reg.put_manifest(&repo, &tag, None, body(i)))
                .unwrap();
        })
    });
    let tag = Reference::parse("t1").unwrap();
    c.bench_function("manifest_get_by_tag", |b| {
        b.iter(|| rt.block_on(reg.get_manifest(&repo, &tag, true)).unwrap())
    });
    c.bench_function("tags_list_first_100", |b| {
        b.iter(|| reg.list_tags(&repo, None, 100).unwrap())
    });
}

fn hashing(c: &mut Criterion) {
    let data = vec![0x5au8; 64 * 1024 * 1024];
    let mut g = c.benchmark_group("digest_64MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    for alg in kura::digest::Algorithm::ALL {
        g.bench_function(alg.as_str(), |b| b.iter(|| Digest::of(alg, &data)));
    }
    g.finish();
}

fn manifest_with_refs(n: usize) -> Vec<u8> {
    let layers: Vec<_> = (0..n)
        .map(|i| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": Digest::sha256_of(format!("layer{i}").as_bytes()).to_string(), "size": 1000 + i}))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(b"config").to_string(), "size": 6},
        "layers": layers, "annotations": {"org.opencontainers.image.created": "2026-11-24T00:00:00Z"}
    }))
    .unwrap()
}

fn parsing(c: &mut Criterion) {
    let body = manifest_with_refs(10);
    c.bench_function("manifest_parse_validate_10_layers", |b| {
        b.iter(|| {
            kura::manifest::parse(Some("application/vnd.oci.image.manifest.v1+json"), &body)
                .unwrap()
        })
    });
}

/// Metadata operations at scale: a manifest with 10 references, tag resolution, a 100-tag page
/// of 10k tags, a 100-repository catalog page of 100k.
fn metadata_at_scale(c: &mut Criterion) {
    use kura::meta::{blobs, repos, tags};
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let repo = RepoName::parse("bench/scale").unwrap();
    let refs: Vec<Bytes> = std::iter::once(Bytes::from_static(b"config"))
        .chain((0..10).map(|i| Bytes::from(format!("layer{i}"))))
        .collect();
    for r in &refs {
        rt.block_on(reg.put_blob(&repo, &Digest::sha256_of(r), chunks(r)))
            .unwrap();
    }
    let body = Bytes::from(manifest_with_refs(10));
    let md = Digest::sha256_of(&body).to_string();
    rt.block_on(reg.put_manifest(
        &repo,
        &Reference::parse("seed").unwrap(),
        None,
        body.clone(),
    ))
    .unwrap();
    reg.meta()
        .write(|t| {
            for i in 0..10_000 {
                tags::set(t, "bench/scale", &format!("t{i:05}"), &md)?;
            }
            Ok(())
        })
        .unwrap();
    for chunk in (0..100_000).collect::<Vec<_>>().chunks(20_000) {
        reg.meta()
            .write(|t| {
                for i in chunk {
                    repos::ensure(t, &format!("bench/r{i:06}"))?;
                }
                blobs::touch(t, &md, body.len() as u64)
            })
            .unwrap();
    }
    let mut n = 0u64;
    c.bench_function("put_manifest_10_references_new_tag", |b| {
        b.iter(|| {
            n += 1;
            let tag = Reference::parse(&format!("n{n}")).unwrap();
            rt.block_on(reg.put_manifest(&repo, &tag, None, body.clone()))
                .unwrap();
        })
    });
    let tag = Reference::parse("t05000").unwrap();
    c.bench_function("resolve_tag_head", |b| {
        b.iter(|| rt.block_on(reg.get_manifest(&repo, &tag, false)).unwrap())
    });
    c.bench_function("list_100_of_10k_tags", |b| {
        b.iter(|| reg.list_tags(&repo, Some("t05000"), 100).unwrap())
    });
    c.bench_function("catalog_page_100_of_100k", |b| {
        b.iter(|| reg.catalog(Some("bench/r050000"), 100).unwrap())
    });
}

criterion_group!(
    benches,
    hashing,
    parsing,
    blob_ingest,
    manifests,
    metadata_at_scale
);
criterion_main!(benches);
