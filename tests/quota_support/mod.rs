//! Shared helpers of the quota tests: rules, usage reads, pushes through the registry.
#![allow(dead_code)]

use bytes::Bytes;
use kura::digest::Digest;
use kura::meta::usage;
use kura::names::{Reference, RepoName};
use kura::policy::Policies;
use kura::policy::quota::QuotaRule;
use kura::registry::Registry;
use serde_json::json;

pub const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn ns_rule(prefix: &str, max: u64) -> QuotaRule {
    QuotaRule {
        namespace: Some(prefix.into()),
        max_bytes: max,
        ..QuotaRule::default()
    }
}

pub fn repo_rule(repo: &str, max: u64) -> QuotaRule {
    QuotaRule {
        repository: Some(repo.into()),
        max_bytes: max,
        ..QuotaRule::default()
    }
}

pub fn set_quotas(reg: &Registry, rules: Vec<QuotaRule>) {
    let cfg = kura::policy::PoliciesConfig {
        quota: rules,
        ..Default::default()
    };
    reg.set_policies(Policies::compile(&cfg).unwrap());
}

pub fn used(reg: &Registry, scope: &str) -> u64 {
    reg.meta().read(|t| usage::get(t, scope)).unwrap()
}

pub fn fsck_clean(reg: &Registry) {
    let report = kura::fsck::fsck(reg, false, false).unwrap();
    assert!(report.is_clean(), "{report}");
}

/// Pushes blob `data` to `repo` through the registry (no HTTP).
pub async fn blob(reg: &Registry, repo: &str, data: &[u8]) -> kura::error::Result<Digest> {
    let d = Digest::sha256_of(data);
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(data))]);
    reg.put_blob(&RepoName::parse(repo).unwrap(), &d, body)
        .await?;
    Ok(d)
}

/// Pushes an image (config + layers) to `repo:tag` through the registry; returns the manifest
/// size and the bytes pushed in all (config, layers, manifest).
pub async fn image(reg: &Registry, repo: &str, tag: &str, layers: &[&[u8]]) -> (u64, u64) {
    let config = format!("{{\"repo\":\"{repo}\",\"tag\":\"{tag}\"}}");
    let cd = blob(reg, repo, config.as_bytes()).await.unwrap();
    let mut ls = Vec::new();
    for l in layers {
        ls.push((blob(reg, repo, l).await.unwrap(), l.len()));
    }
    let body = crate::common::image_manifest(&(cd, config.len()), &ls, json!({}));
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

/// `n` pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
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
