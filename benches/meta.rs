//! Metadata latency at scale on both backends: a 100-repository catalog page of 100k
//! repositories, a 100-tag page of 10k tags, a tag resolution and a manifest push, on redb and
//! on PostgreSQL (cluster mode), next to PostgreSQL's own round trip (a prepared `SELECT 1`
//! by tokio-postgres alone), so the figures read as multiples of the engine's.
//!
//! PostgreSQL: the server named by `KURA_TEST_PG_URL`, else a private one started here with
//! `tests/tools/pg-up.sh` (stopped at the end). Each run uses a fresh database.

#[path = "load_support/pg.rs"]
mod pg;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kura::config::{MetadataConfig, MetadataKind, StorageConfig};
use kura::digest::Digest;
use kura::meta::{blobs, repos, tags};
use kura::names::{Reference, RepoName};
use kura::registry::Registry;
use serde_json::json;

const REPOS: usize = 100_000;
const TAGS: usize = 10_000;

fn manifest(config: &Digest) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 2},
            "layers": []
        }))
        .unwrap(),
    )
}

/// A registry with REPOS repositories and one repository of TAGS tags.
fn fill(rt: &tokio::runtime::Runtime, reg: &Registry) -> Bytes {
    let repo = RepoName::parse("bench/scale").unwrap();
    let cfg = Bytes::from_static(b"{}");
    let cd = Digest::sha256_of(&cfg);
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(cfg.clone())]);
    rt.block_on(reg.put_blob(&repo, &cd, stream)).unwrap();
    let body = manifest(&cd);
    rt.block_on(reg.put_manifest(
        &repo,
        &Reference::parse("seed").unwrap(),
        None,
        body.clone(),
    ))
    .unwrap();
    let md = Digest::sha256_of(&body).to_string();
    for chunk in (0..TAGS).collect::<Vec<_>>().chunks(2_000) {
        reg.meta()
            .write(|t| {
                for i in chunk {
                    tags::set(t, "bench/scale", &format!("t{i:05}"), &md)?;
                }
                Ok(())
            })
            .unwrap();
    }
    for chunk in (0..REPOS).collect::<Vec<_>>().chunks(5_000) {
        reg.meta()
            .write(|t| {
                for i in chunk {
                    repos::ensure(t, &format!("bench/r{i:06}"))?;
                }
                blobs::touch_existing(t, &md)
            })
            .unwrap();
    }
    body
}

fn at_scale(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = pg::Server::start();
    let pg_url = server.database();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let backends = [
        ("redb", MetadataConfig::default()),
        (
            "postgres",
            MetadataConfig {
                kind: MetadataKind::Postgres,
                url: pg_url.clone(),
                ..MetadataConfig::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("metadata_at_scale");
    g.sample_size(30);
    // PostgreSQL's own floor: one round trip of a prepared `SELECT 1` by tokio-postgres (the
    // client kura uses), awaited on a runtime of its own that also drives the connection.
    let floor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (raw, conn) = floor
        .block_on(tokio_postgres::connect(&pg_url, tokio_postgres::NoTls))
        .unwrap();
    floor.spawn(conn);
    let one = floor.block_on(raw.prepare("SELECT 1")).unwrap();
    g.bench_function("postgres_select_1_round_trip", |b| {
        b.iter(|| floor.block_on(raw.query_one(&one, &[])).unwrap())
    });
    for ((name, metadata), dir) in backends.iter().zip(&dirs) {
        let reg =
            Registry::open_configured(dir.path(), &StorageConfig::default(), metadata).unwrap();
        let body = fill(&rt, &reg);
        let repo = RepoName::parse("bench/scale").unwrap();
        g.bench_function(BenchmarkId::new("repository_lookup", name), |b| {
            b.iter(|| {
                reg.meta()
                    .read(|t| repos::exists(t, "bench/r050000"))
                    .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("catalog_page_100_of_100k", name), |b| {
            b.iter(|| reg.catalog(Some("bench/r050000"), 100).unwrap())
        });
        g.bench_function(BenchmarkId::new("list_100_of_10k_tags", name), |b| {
            b.iter(|| reg.list_tags(&repo, Some("t05000"), 100).unwrap())
        });
        let tag = Reference::parse("t05000").unwrap();
        g.bench_function(BenchmarkId::new("resolve_tag", name), |b| {
            b.iter(|| rt.block_on(reg.get_manifest(&repo, &tag, false)).unwrap())
        });
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("push_manifest_new_tag", name), |b| {
            b.iter(|| {
                n += 1;
                let tag = Reference::parse(&format!("n{n}")).unwrap();
                rt.block_on(reg.put_manifest(&repo, &tag, None, body.clone()))
                    .unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, at_scale);
criterion_main!(benches);
