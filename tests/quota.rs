//! Quotas (`[[policies.quota]]`): unique bytes counted exactly as blobs are linked and
//! unlinked, refused with 403 DENIED inside the transaction of the change, shown by
//! `kura usage`, `/admin/usage` and the metrics, verified by fsck, kept across restarts and
//! computed for stores made before them.

mod common;

use bytes::Bytes;
use common::{
    TestServer, client, error_code, gc, image_manifest, kura_cmd, opts, push_blob, push_image,
    put_manifest,
};
use kura::digest::Digest;
use kura::meta::usage;
use kura::names::{Reference, RepoName};
use kura::policy::Policies;
use kura::policy::quota::QuotaRule;
use kura::registry::{Registry, UsageReport};
use serde_json::json;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn ns_rule(prefix: &str, max: u64) -> QuotaRule {
    QuotaRule {
        namespace: Some(prefix.into()),
        max_bytes: max,
        ..QuotaRule::default()
    }
}

fn repo_rule(repo: &str, max: u64) -> QuotaRule {
    QuotaRule {
        repository: Some(repo.into()),
        max_bytes: max,
        ..QuotaRule::default()
    }
}

fn set_quotas(reg: &Registry, rules: Vec<QuotaRule>) {
    let cfg = kura::policy::PoliciesConfig {
        quota: rules,
        ..Default::default()
    };
    reg.set_policies(Policies::compile(&cfg).unwrap());
}

fn used(reg: &Registry, scope: &str) -> u64 {
    reg.meta().read(|t| usage::get(&t.usage, scope)).unwrap()
}

fn fsck_clean(reg: &Registry) {
    let report = kura::fsck::fsck(reg, false, false).unwrap();
    assert!(report.is_clean(), "{report}");
}

/// Pushes blob `data` to `repo` through the registry (no HTTP).
async fn blob(reg: &Registry, repo: &str, data: &[u8]) -> kura::error::Result<Digest> {
    let d = Digest::sha256_of(data);
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(data))]);
    reg.put_blob(&RepoName::parse(repo).unwrap(), &d, body)
        .await?;
    Ok(d)
}

/// Pushes an image (config + layers) to `repo:tag` through the registry; returns the manifest
/// size and the bytes pushed in all (config, layers, manifest).
async fn image(reg: &Registry, repo: &str, tag: &str, layers: &[&[u8]]) -> (u64, u64) {
    let config = format!("{{\"repo\":\"{repo}\",\"tag\":\"{tag}\"}}");
    let cd = blob(reg, repo, config.as_bytes()).await.unwrap();
    let mut ls = Vec::new();
    for l in layers {
        ls.push((blob(reg, repo, l).await.unwrap(), l.len()));
    }
    let body = image_manifest(&(cd, config.len()), &ls, json!({}));
    let n = body.len() as u64;
    reg.put_manifest(
        &RepoName::parse(repo).unwrap(),
        &Reference::parse(tag).unwrap(),
        Some(OCI),
        Bytes::from(body),
    )
    .await
    .unwrap();
    let total = config.len() as u64 + layers.iter().map(|l| l.len() as u64).sum::<u64>() + n;
    (n, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_shared_by_two_repositories_counts_once_for_their_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    set_quotas(&reg, vec![ns_rule("team/", 1 << 30)]);
    let shared = vec![7u8; 5000];
    let (_, a) = image(&reg, "team/a", "v1", &[&shared]).await;
    let (_, b) = image(&reg, "team/b", "v1", &[&shared, b"only in b"]).await;
    assert_eq!(used(&reg, "repo:team/a"), a);
    assert_eq!(used(&reg, "repo:team/b"), b);
    assert_eq!(
        used(&reg, "ns:team/"),
        a + b - 5000,
        "the shared layer counts once"
    );
    // A second tag of the same content adds nothing; another repository outside adds nothing.
    let before = used(&reg, "ns:team/");
    image(&reg, "team/a", "v2", &[&shared]).await;
    let (_, other) = image(&reg, "other/c", "v1", &[&shared]).await;
    assert!(
        used(&reg, "ns:team/") > before,
        "v2 has its own config and manifest"
    );
    assert_eq!(used(&reg, "repo:other/c"), other);
    fsck_clean(&reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_quota_refuses_an_upload_with_403_denied_naming_it() {
    let s = TestServer::start().await;
    set_quotas(&s.registry, vec![repo_rule("small/app", 3000)]);
    push_blob(&s, "small/app", &[1u8; 2000]).await;
    let big = vec![2u8; 2000];
    let d = Digest::sha256_of(&big);
    let r = client()
        .post(s.url(&format!("/v2/small/app/blobs/uploads/?digest={d}")))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    assert_eq!(
        v["errors"][0]["message"],
        "quota of repository small/app (3000 B) exceeded: 2000 B used, this push needs 2000 B"
    );
    // Nothing of the refused blob is served, and usage did not move.
    let head = client()
        .head(s.url(&format!("/v2/small/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    assert_eq!(used(&s.registry, "repo:small/app"), 2000);
    // A chunked upload is refused at its commit too, and its session ends.
    let r = client()
        .post(s.url("/v2/small/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = if loc.starts_with("http") {
        format!("{loc}{sep}digest={d}")
    } else {
        s.url(&format!("{loc}{sep}digest={d}"))
    };
    let r = client().put(put).body(big).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    assert_eq!(s.registry.session_count(), 0);
    // Another repository is not limited.
    push_blob(&s, "small/other", &[2u8; 2000]).await;
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_quota_refuses_a_manifest_push_that_needs_more_than_is_left() {
    let s = TestServer::start().await;
    let layer = vec![3u8; 1000];
    let config = b"{\"config\":1}".to_vec();
    let body = image_manifest(
        &(Digest::sha256_of(&config), config.len()),
        &[(Digest::sha256_of(&layer), layer.len())],
        json!({}),
    );
    // Room for the config and the layer, 10 bytes short for the manifest.
    let limit = (config.len() + layer.len() + body.len() - 10) as u64;
    set_quotas(&s.registry, vec![ns_rule("team/", limit)]);
    push_blob(&s, "team/app", &config).await;
    push_blob(&s, "team/app", &layer).await;
    let r = put_manifest(&s, "team/app", "v1", OCI, &body).await;
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("quota of namespace team/ (") && msg.contains("this push needs"),
        "{msg}"
    );
    let r = client()
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the refused manifest is not stored");
    // Deleting is always allowed and frees room: drop the layer, and the manifest still cannot
    // be pushed (it names it), but a smaller image fits.
    let r = client()
        .delete(s.url(&format!("/v2/team/app/blobs/{}", Digest::sha256_of(&layer))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(used(&s.registry, "ns:team/"), config.len() as u64);
    push_image(&s, "team/app", "small", &[b"tiny"]).await;
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_and_collecting_frees_usage() {
    let s = TestServer::start().await;
    set_quotas(&s.registry, vec![ns_rule("gc/", 1 << 20)]);
    let (_, m) = push_image(&s, "gc/app", "v1", &[&[4u8; 3000]]).await;
    push_blob(&s, "gc/app", &[5u8; 700]).await;
    assert!(used(&s.registry, "ns:gc/") > 3700);
    let r = client()
        .delete(s.url(&format!("/v2/gc/app/manifests/{m}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Without the manifest, only the links remain; the collector removes the unreferenced
    // blobs with their links once the grace period (0 s, whole seconds) has passed.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let report = gc(&s, opts(0)).await;
    assert!(report.blobs_removed >= 3, "{report:?}");
    assert_eq!(used(&s.registry, "ns:gc/"), 0);
    assert_eq!(used(&s.registry, "repo:gc/app"), 0);
    let rows = s.registry.meta().read(|t| usage::all(&t.usage)).unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_counts_toward_the_target_and_its_quota() {
    let s = TestServer::start().await;
    let layer = vec![6u8; 4000];
    let d = push_blob(&s, "src/app", &layer).await;
    set_quotas(&s.registry, vec![ns_rule("dst/", 5000)]);
    let mount = |to: &'static str| {
        client()
            .post(s.url(&format!("/v2/{to}/blobs/uploads/?mount={d}&from=src/app")))
            .send()
    };
    assert_eq!(mount("dst/a").await.unwrap().status(), 201);
    assert_eq!(used(&s.registry, "repo:dst/a"), 4000);
    // Mounted into a second repository of the namespace: the namespace holds it already.
    assert_eq!(mount("dst/b").await.unwrap().status(), 201);
    assert_eq!(used(&s.registry, "ns:dst/"), 4000);
    let other = push_blob(&s, "src/app", &[7u8; 2000]).await;
    let r = client()
        .post(s.url(&format!(
            "/v2/dst/a/blobs/uploads/?mount={other}&from=src/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    assert_eq!(used(&s.registry, "ns:dst/"), 4000);
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_pushes_that_together_exceed_a_quota_one_fails() {
    const ROUNDS: usize = 25;
    let s = TestServer::start().await;
    let rules = (0..ROUNDS)
        .map(|i| ns_rule(&format!("race{i}/"), 1500))
        .collect();
    set_quotas(&s.registry, rules);
    for i in 0..ROUNDS {
        let push = |repo: String, fill: u8| {
            let data = vec![fill; 1000];
            let d = Digest::sha256_of(&data);
            client()
                .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
                .body(data)
                .send()
        };
        let (a, b) = tokio::join!(
            push(format!("race{i}/a"), (2 * i) as u8),
            push(format!("race{i}/b"), (2 * i + 1) as u8)
        );
        let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        codes.sort();
        assert_eq!(codes, [201, 403], "round {i}");
        assert_eq!(used(&s.registry, &format!("ns:race{i}/")), 1000);
    }
    fsck_clean(&s.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let reg = Registry::open(dir.path()).unwrap();
        set_quotas(&reg, vec![ns_rule("keep/", 1 << 20)]);
        image(&reg, "keep/a", "v1", &[b"layer"]).await;
        reg.usage_report().unwrap()
    };
    let reg = Registry::open(dir.path()).unwrap();
    set_quotas(&reg, vec![ns_rule("keep/", 1 << 20)]);
    assert_eq!(reg.usage_report().unwrap(), before);
    assert!(before.namespaces[0].used_bytes > 0);
    fsck_clean(&reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_a_new_namespace_quota_computes_its_usage_and_removing_it_forgets_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let (_, a) = image(&reg, "late/a", "v1", &[b"shared layer"]).await;
    let (_, b) = image(&reg, "late/b", "v1", &[b"shared layer"]).await;
    assert_eq!(used(&reg, "ns:late/"), 0, "not tracked without a quota");
    set_quotas(&reg, vec![ns_rule("late/", 1 << 20)]);
    let want = a + b - "shared layer".len() as u64;
    assert_eq!(used(&reg, "ns:late/"), want);
    let report = reg.usage_report().unwrap();
    assert_eq!(report.namespaces[0].name, "late/");
    assert_eq!(report.namespaces[0].used_bytes, want);
    assert_eq!(report.namespaces[0].limit_bytes, Some(1 << 20));
    // Tracked from now on, as content changes.
    image(&reg, "late/c", "v1", &[b"another"]).await;
    fsck_clean(&reg);
    set_quotas(&reg, vec![]);
    let tracked = reg
        .meta()
        .read(|t| usage::tracked_namespaces(&t.settings))
        .unwrap();
    assert!(tracked.is_empty());
    assert_eq!(used(&reg, "ns:late/"), 0);
    assert!(reg.usage_report().unwrap().namespaces.is_empty());
    fsck_clean(&reg);
}

#[test]
fn a_v6_store_gets_the_usage_of_its_repositories_computed() {
    use kura::meta::Meta;
    use kura::meta::tables::{BLOBS, MANIFESTS, REPO_BLOBS};
    use kura::migrations::MIGRATIONS;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    drop(Meta::open_with(&path, &MIGRATIONS[..6]).unwrap());
    let (l, c, m) = (
        "sha256:".to_string() + &"1".repeat(64),
        "sha256:".to_string() + &"2".repeat(64),
        "sha256:".to_string() + &"3".repeat(64),
    );
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut blobs = txn.open_table(BLOBS).unwrap();
            blobs.insert(l.as_str(), (1000, 2, 5)).unwrap();
            blobs.insert(c.as_str(), (100, 2, 5)).unwrap();
            blobs.insert(m.as_str(), (10, 2, 5)).unwrap();
            let mut links = txn.open_table(REPO_BLOBS).unwrap();
            let mut revs = txn.open_table(MANIFESTS).unwrap();
            let rec = json!({"media_type": OCI, "size": 10, "blobs": [&c, &l], "manifests": [], "created": 1});
            for repo in ["t/a", "t/b"] {
                links.insert((repo, l.as_str()), 1).unwrap();
                links.insert((repo, c.as_str()), 1).unwrap();
                revs.insert(
                    (repo, m.as_str()),
                    serde_json::to_vec(&rec).unwrap().as_slice(),
                )
                .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let meta = Meta::open(&path).unwrap();
    let get = |scope: &str| meta.read(|t| usage::get(&t.usage, scope)).unwrap();
    assert_eq!(get("repo:t/a"), 1110);
    assert_eq!(get("repo:t/b"), 1110);
    let problems = meta.read(usage::verify).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_and_repairs_a_wrong_usage_row() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let (_, total) = image(&reg, "fix/a", "v1", &[b"layer"]).await;
    reg.meta()
        .write(|t| {
            t.usage.insert("repo:fix/a", 1)?;
            Ok(())
        })
        .unwrap();
    let report = kura::fsck::fsck(&reg, false, false).unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("usage of repo:fix/a is 1 bytes")),
        "{report}"
    );
    kura::fsck::fsck(&reg, true, false).unwrap();
    assert_eq!(used(&reg, "repo:fix/a"), total);
    fsck_clean(&reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_configured_quotas_only() {
    let s = TestServer::start().await;
    set_quotas(&s.registry, vec![ns_rule("m/", 9999)]);
    push_blob(&s, "m/a", &[1u8; 321]).await;
    push_blob(&s, "free/b", &[2u8; 5]).await;
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("kura_quota_used_bytes{scope=\"ns:m/\"} 321"),
        "{text}"
    );
    assert!(
        text.contains("kura_quota_limit_bytes{scope=\"ns:m/\"} 9999"),
        "{text}"
    );
    assert!(
        !text.contains("repo:free/b"),
        "per-repository series stay out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kura_usage_prints_usage_offline_and_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path()).await;
    set_quotas(&s.registry, vec![ns_rule("cli/", 1 << 20)]);
    push_blob(&s, "cli/a", &[1u8; 1234]).await;
    let url = s.base.clone();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || kura_cmd(&["usage", "--url", &url, "--json"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    let report: UsageReport = serde_json::from_str(&out).unwrap();
    assert_eq!(report.repositories[0].name, "cli/a");
    assert_eq!(report.repositories[0].used_bytes, 1234);
    assert_eq!(report.namespaces[0].limit_bytes, Some(1 << 20));
    // Offline, with the quotas from a config file: the same figures as a table.
    let root = dir.path().to_path_buf();
    drop(s);
    let cfg = root.join("kura.toml");
    std::fs::write(
        &cfg,
        format!(
            "root = {:?}\n[[policies.quota]]\nnamespace = \"cli/\"\nmax_bytes = \"1MiB\"\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        // The in-process server lets go of the store once its workers have stopped.
        for _ in 0..100 {
            let r = kura_cmd(&["usage", "--config", cfg.to_str().unwrap()]);
            if r.0 || !r.2.contains("in use") {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        kura_cmd(&["usage", "--config", cfg.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("cli/a") && out.contains("1234 B") && out.contains("1234"),
        "{out}"
    );
    assert!(out.contains("NAMESPACE") && out.contains("1 MiB"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_cached_content_counts_but_is_never_refused() {
    let p = common::mirror::pair(0).await;
    let layer = noise(3000, 3);
    let (_, md) = push_image(&p.upstream, "library/app", "v1", &[&layer]).await;
    set_quotas(&p.mirror.registry, vec![ns_rule("up/", 100)]);
    let get = |path: String| client().get(p.mirror.url(&path)).send();
    let r = get("/v2/up/library/app/manifests/v1".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    let l = Digest::sha256_of(&layer);
    let r = get(format!("/v2/up/library/app/blobs/{l}")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), layer);
    // Over the namespace's quota, and counted: the manifest and the layer.
    let reg = &p.mirror.registry;
    let want = 3000 + p.upstream.registry.stored_blob_size(&md).unwrap().unwrap();
    assert_eq!(used(reg, "ns:up/"), want);
    assert_eq!(used(reg, "repo:up/library/app"), want);
    fsck_clean(reg);
}

/// `n` pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_into_a_full_namespace_is_refused_with_the_quota_message() {
    let s = TestServer::start().await;
    // Incompressible layers: skopeo compresses uncompressed layers on the way.
    let (l1, l2) = (noise(4000, 1), noise(3000, 2));
    push_image(&s, "src/app", "v1", &[&l1, &l2]).await;
    set_quotas(&s.registry, vec![ns_rule("full/", 5000)]);
    let host = s.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("skopeo")
            .arg("--insecure-policy")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &format!("docker://{host}/src/app:v1"),
                &format!("docker://{host}/full/app:v1"),
            ])
            .output()
            .expect("run skopeo")
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quota of namespace full/"), "{err}");
    assert!(used(&s.registry, "ns:full/") <= 5000);
    // Within the quota, skopeo copies fine.
    set_quotas(&s.registry, vec![ns_rule("full/", 1 << 20)]);
    let host = s.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("skopeo")
            .arg("--insecure-policy")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &format!("docker://{host}/src/app:v1"),
                &format!("docker://{host}/full/app:v1"),
            ])
            .output()
            .expect("run skopeo")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fsck_clean(&s.registry);
}
