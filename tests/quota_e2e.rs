//! Quotas seen from outside: `/metrics`, `kura usage` (offline and through the server), the
//! mirror's cache (counted, never refused) and skopeo refused with the quota's message.

mod common;
mod quota_support;

use common::{TestServer, client, kura_cmd, push_blob, push_image};
use kura::digest::Digest;
use kura::registry::UsageReport;
use quota_support::*;

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

/// `skopeo copy` of `src/app:v1` to `full/app:v1` on `s`.
async fn skopeo_copy_src_to_full(s: &TestServer) -> std::process::Output {
    let host = s.addr.to_string();
    tokio::task::spawn_blocking(move || {
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
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_into_a_full_namespace_is_refused_with_the_quota_message() {
    let s = TestServer::start().await;
    // Incompressible layers: skopeo compresses uncompressed layers on the way.
    let (l1, l2) = (noise(4000, 1), noise(3000, 2));
    push_image(&s, "src/app", "v1", &[&l1, &l2]).await;
    set_quotas(&s.registry, vec![ns_rule("full/", 5000)]);
    let out = skopeo_copy_src_to_full(&s).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quota of namespace full/"), "{err}");
    assert!(used(&s.registry, "ns:full/") <= 5000);
    // Within the quota, skopeo copies fine.
    set_quotas(&s.registry, vec![ns_rule("full/", 1 << 20)]);
    let out = skopeo_copy_src_to_full(&s).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fsck_clean(&s.registry);
}
