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
        b.iter(|| reg.get_manifest(&repo, &tag, true).unwrap())
    });
    c.bench_function("tags_list_first_100", |b| {
        b.iter(|| reg.list_tags(&repo, None, 100).unwrap())
    });
}

criterion_group!(benches, blob_ingest, manifests);
criterion_main!(benches);
