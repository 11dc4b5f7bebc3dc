//! What the mirror tests look at: the upstream requests the proxy answered, `/metrics`,
//! `kura fsck`, listings and OCI error bodies.

use std::time::Duration;

use super::POLL_LIMIT;
use crate::client_support::proxy::{Proxy, Seen};
use crate::common::{client, kura_cmd};
use kura::digest::Digest;

/// The upstream requests the proxy answered (authentication challenges and token requests
/// left out).
pub fn answered(p: &Proxy) -> Vec<Seen> {
    p.seen()
        .into_iter()
        .filter(|s| s.status != 401 && !s.target.starts_with("/auth/token"))
        .collect()
}

/// The answered upstream `GET`s of blob `d`.
pub fn blob_gets(p: &Proxy, d: &Digest) -> Vec<Seen> {
    let path = format!("/blobs/{d}");
    answered(p)
        .into_iter()
        .filter(|s| s.method == "GET" && s.target.split('?').next().unwrap().ends_with(&path))
        .collect()
}

/// The answered upstream requests (any method) for manifests of `repo`.
pub fn manifest_requests(p: &Proxy, repo: &str) -> Vec<Seen> {
    let path = format!("/v2/{repo}/manifests/");
    answered(p)
        .into_iter()
        .filter(|s| s.target.starts_with(&path))
        .collect()
}

/// `/metrics` of a kura, parsed.
pub async fn metrics(base: &str) -> prometheus_parse::Scrape {
    let r = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET /metrics");
    let text = r.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("metrics")
}

/// The sum of the samples of `name` carrying `labels`.
pub fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// One mirror metric, scraped now.
pub async fn metric(base: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&metrics(base).await, name, labels)
}

/// Polls `metric` until it reaches `at_least` (bounded by `POLL_LIMIT`); returns its value.
pub async fn wait_metric(base: &str, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    let start = std::time::Instant::now();
    loop {
        let v = metric(base, name, labels).await;
        if v >= at_least || start.elapsed() > POLL_LIMIT {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kura fsck --url <base>` must report a clean store.
pub async fn assert_fsck_clean(base: &str) {
    let base = base.to_string();
    let (ok, out, err) = tokio::task::spawn_blocking(move || kura_cmd(&["fsck", "--url", &base]))
        .await
        .unwrap();
    assert!(ok, "kura fsck failed:\n{out}\n{err}");
    assert!(out.contains("0 error(s)"), "fsck: {out}");
}

/// `_catalog` of a kura.
pub async fn catalog(base: &str) -> Vec<String> {
    let r = client()
        .get(format!("{base}/v2/_catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "_catalog");
    let v: serde_json::Value = r.json().await.unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// `tags/list` of `repo`.
pub async fn tags(base: &str, repo: &str) -> Vec<String> {
    let r = client()
        .get(format!("{base}/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "tags/list of {repo}");
    let v: serde_json::Value = r.json().await.unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// The OCI error body's first code and message.
pub async fn error_of(r: reqwest::Response) -> (String, String) {
    let text = r.text().await.unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body {text:?}: {e}"));
    (
        v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
        v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
    )
}
