//! Listing endpoints: tags (`/v2/<name>/tags/list`), `/v2/_catalog` and referrers.

mod common;

use common::*;
use kura::digest::Digest;
use serde_json::{Value, json};

async fn get_json(url: String) -> (reqwest::header::HeaderMap, Value) {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    (h, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_sorted_and_paginated_with_link() {
    let s = TestServer::start().await;
    let (body, _) = push_image(&s, "tags", "b", &[b"x"]).await;
    for t in ["d", "a", "c", "e"] {
        let r = put_manifest(
            &s,
            "tags",
            t,
            "application/vnd.oci.image.manifest.v1+json",
            &body,
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let (h, v) = get_json(s.url("/v2/tags/tags/list")).await;
    assert_eq!(
        v,
        json!({"name": "tags", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(!h.contains_key("link"));

    let (h, v) = get_json(s.url("/v2/tags/tags/list?n=2")).await;
    assert_eq!(v["tags"], json!(["a", "b"]));
    assert_eq!(h["link"], "</v2/tags/tags/list?n=2&last=b>; rel=\"next\"");
    let (h, v) = get_json(s.url("/v2/tags/tags/list?n=2&last=b")).await;
    assert_eq!(v["tags"], json!(["c", "d"]));
    assert!(h.contains_key("link"));
    let (h, v) = get_json(s.url("/v2/tags/tags/list?n=2&last=d")).await;
    assert_eq!(v["tags"], json!(["e"]));
    assert!(!h.contains_key("link"));
    let (_, v) = get_json(s.url("/v2/tags/tags/list?last=c")).await;
    assert_eq!(v["tags"], json!(["d", "e"]));
    let (h, v) = get_json(s.url("/v2/tags/tags/list?n=0")).await;
    assert_eq!(v["tags"], json!([]));
    assert!(!h.contains_key("link"));

    let r = client()
        .get(s.url("/v2/nosuch/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    let r = client()
        .get(s.url("/v2/tags/tags/list?n=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_repositories_from_metadata_with_pagination() {
    let s = TestServer::start().await;
    for repo in ["zeta", "alpha/one", "alpha/two", "mid"] {
        push_blob(&s, repo, repo.as_bytes()).await;
    }
    let (_, v) = get_json(s.url("/v2/_catalog")).await;
    assert_eq!(
        v,
        json!({"repositories": ["alpha/one", "alpha/two", "mid", "zeta"]})
    );
    let (h, v) = get_json(s.url("/v2/_catalog?n=3")).await;
    assert_eq!(v["repositories"], json!(["alpha/one", "alpha/two", "mid"]));
    assert_eq!(h["link"], "</v2/_catalog?n=3&last=mid>; rel=\"next\"");
    let (h, v) = get_json(s.url("/v2/_catalog?n=3&last=mid")).await;
    assert_eq!(v["repositories"], json!(["zeta"]));
    assert!(!h.contains_key("link"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_list_descriptors_with_artifact_type_and_filter() {
    let s = TestServer::start().await;
    let (_, subject) = push_image(&s, "app", "v1", &[b"app layer"]).await;
    let cfg = push_blob(&s, "app", b"{}").await;
    let empty_cfg = Digest::sha256_of(b"{}");
    assert_eq!(cfg, empty_cfg);
    let subj = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 1});
    let sbom = image_manifest(
        &(cfg.clone(), 2),
        &[],
        json!({"artifactType": "application/vnd.example.sbom", "subject": subj, "annotations": {"org.example.kind": "sbom"}}),
    );
    let sig = image_manifest(&(cfg.clone(), 2), &[], json!({"subject": subj}));
    for body in [&sbom, &sig] {
        let d = Digest::sha256_of(body);
        let r = put_manifest(
            &s,
            "app",
            &d.to_string(),
            "application/vnd.oci.image.manifest.v1+json",
            body,
        )
        .await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["oci-subject"], subject.to_string().as_str());
    }
    let (h, v) = get_json(s.url(&format!("/v2/app/referrers/{subject}"))).await;
    assert_eq!(h["content-type"], "application/vnd.oci.image.index.v1+json");
    assert!(!h.contains_key("oci-filters-applied"));
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    let ms = v["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    let sbom_d = Digest::sha256_of(&sbom).to_string();
    let sbom_desc = ms.iter().find(|m| m["digest"] == sbom_d.as_str()).unwrap();
    assert_eq!(sbom_desc["artifactType"], "application/vnd.example.sbom");
    assert_eq!(sbom_desc["size"], sbom.len());
    assert_eq!(
        sbom_desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(sbom_desc["annotations"]["org.example.kind"], "sbom");
    let sig_desc = ms.iter().find(|m| m["digest"] != sbom_d.as_str()).unwrap();
    // Without artifactType, an image manifest's config media type is used (spec, "Listing Referrers").
    assert_eq!(
        sig_desc["artifactType"],
        "application/vnd.oci.image.config.v1+json"
    );

    let (h, v) = get_json(s.url(&format!(
        "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom"
    )))
    .await;
    assert_eq!(h["oci-filters-applied"], "artifactType");
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], sbom_d.as_str());

    // Unknown subject: an empty index, not 404.
    let (_, v) =
        get_json(s.url(&format!("/v2/app/referrers/{}", Digest::sha256_of(b"none")))).await;
    assert_eq!(v["manifests"], json!([]));
    let r = client()
        .get(s.url("/v2/app/referrers/sha256:bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");

    // Deleting a referrer removes it from the list.
    let r = client()
        .delete(s.url(&format!("/v2/app/manifests/{sbom_d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, v) = get_json(s.url(&format!("/v2/app/referrers/{subject}"))).await;
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
}

/// Referrers are paginated like tags (distribution spec v1.1.1, "Listing Referrers": "A `Link`
/// header MUST be included in the response when the descriptor list cannot be returned in a
/// single manifest"): `n` bounds a page, `Link: rel="next"` (keeping `artifactType`) leads
/// through every referrer exactly once, in digest order, and the last page has no `Link`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_are_paginated_with_link() {
    let s = TestServer::start().await;
    let (_, subject) = push_image(&s, "app", "v1", &[b"app layer"]).await;
    let cfg = push_blob(&s, "app", b"{}").await;
    let subj = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 1});
    let mut sboms = Vec::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 { "sbom" } else { "sig" };
        let body = image_manifest(
            &(cfg.clone(), 2),
            &[],
            json!({"artifactType": format!("application/vnd.example.{kind}"), "subject": subj, "annotations": {"i": i.to_string()}}),
        );
        let d = Digest::sha256_of(&body);
        let r = put_manifest(
            &s,
            "app",
            &d.to_string(),
            "application/vnd.oci.image.manifest.v1+json",
            &body,
        )
        .await;
        assert_eq!(r.status(), 201);
        if kind == "sbom" {
            sboms.push(d.to_string());
        }
    }
    sboms.sort();
    for (filter, want) in [
        ("", 7usize),
        ("&artifactType=application/vnd.example.sbom", 4),
    ] {
        let mut url = s.url(&format!("/v2/app/referrers/{subject}?n=3{filter}"));
        let mut seen = Vec::new();
        for page in 0.. {
            assert!(page < 10, "pagination does not end");
            let (h, v) = get_json(url.clone()).await;
            let ms = v["manifests"].as_array().unwrap();
            assert!(ms.len() <= 3);
            assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
            seen.extend(ms.iter().map(|m| m["digest"].as_str().unwrap().to_string()));
            let Some(link) = h.get("link") else { break };
            let link = link.to_str().unwrap();
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            assert!(!filter.is_empty() || !link.contains("artifactType"));
            if !filter.is_empty() {
                assert!(
                    link.contains("artifactType=application%2Fvnd.example.sbom"),
                    "{link}"
                );
                assert_eq!(h["oci-filters-applied"], "artifactType");
            }
            url = s.url(&link[1..link.find('>').unwrap()]);
        }
        assert_eq!(seen.len(), want, "{filter}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen, "in order, no duplicates");
        if !filter.is_empty() {
            assert_eq!(seen, sboms);
        }
    }
    // A page that holds everything has no Link.
    let (h, v) = get_json(s.url(&format!("/v2/app/referrers/{subject}"))).await;
    assert_eq!(v["manifests"].as_array().unwrap().len(), 7);
    assert!(!h.contains_key("link"));
}

/// The catalog of a caller with few grants reads only the rows under the literal prefixes of
/// those grants (the visibility check runs once per row read), and pages through them exactly
/// as a filter over the whole table would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_catalog_reads_only_the_granted_prefixes_and_paginates_like_a_full_filter() {
    let dir = tempfile::tempdir().unwrap();
    let reg = kura::registry::Registry::open(dir.path()).unwrap();
    let mut names: Vec<String> = (0..3000).map(|i| format!("other/r{i:05}")).collect();
    names.extend(
        [
            "team/a", "team/b", "team/c/d", "teamx/z", "solo", "solo2", "a", "zz",
        ]
        .map(String::from),
    );
    reg.meta()
        .write(|t| {
            for n in &names {
                kura::meta::repos::ensure(t, n)?;
            }
            Ok(())
        })
        .unwrap();
    let prefixes = vec!["solo".to_string(), "team/".to_string()];
    let allows = |n: &str| n == "solo" || n.starts_with("team/");
    let reads = std::sync::atomic::AtomicUsize::new(0);
    let page = reg
        .catalog_within(&prefixes, None, 100, |n| {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            allows(n)
        })
        .unwrap();
    assert_eq!(
        page.items,
        ["solo", "solo2", "team/a", "team/b", "team/c/d"]
            .map(String::from)
            .iter()
            .filter(|n| allows(n))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(!page.more);
    let reads = reads.into_inner();
    assert!(
        reads <= 5,
        "{reads} rows checked for 4 visible repositories"
    );

    let mut visible: Vec<String> = names.iter().filter(|n| allows(n)).cloned().collect();
    visible.sort();
    let lasts = [
        None,
        Some(""),
        Some("a"),
        Some("solo"),
        Some("solo1"),
        Some("team/"),
        Some("team/a"),
        Some("team/c/d"),
        Some("zzz"),
    ];
    for last in lasts {
        for n in 0..6 {
            let page = reg.catalog_within(&prefixes, last, n, allows).unwrap();
            let rest: Vec<String> = visible
                .iter()
                .filter(|v| last.is_none_or(|l| v.as_str() > l))
                .cloned()
                .collect();
            let want: Vec<String> = rest.iter().take(n).cloned().collect();
            assert_eq!(page.items, want, "last={last:?} n={n}");
            assert_eq!(page.more, rest.len() > n, "last={last:?} n={n}");
        }
    }
}
