//! Support for the rate-limit tests: `kura serve` with a `[policies.rate_limit]` section (and
//! maybe `[auth]`), requests with `X-Forwarded-For`, 429 bodies and metric samples.
#![allow(dead_code)]

use std::path::Path;

use crate::auth_support::{RULES, USERS, http, write_users};
use crate::common;
use serde_json::Value;

/// Starts `kura serve` with `policies` (the body of `[policies.rate_limit]` and below) and,
/// when `auth` is set, an `[auth]` section (the test users and rules) with `auth` added to it.
pub fn serve(
    dir: &Path,
    policies: &str,
    auth: Option<&str>,
) -> (common::KillOnDrop, String, std::path::PathBuf) {
    let config = dir.join("kura.toml");
    write_config(&config, dir, policies, auth);
    let (kura, base) =
        common::spawn_kura_guarded(&dir.join("root"), &["--config", config.to_str().unwrap()]);
    (kura, base, config)
}

pub fn write_config(config: &Path, dir: &Path, policies: &str, auth: Option<&str>) {
    let mut text = format!("[policies.rate_limit]\n{policies}\n");
    if let Some(extra) = auth {
        let htpasswd = dir.join("htpasswd");
        write_users(&htpasswd, USERS);
        let rules = RULES.replace("[groups]", "[auth.groups]");
        let rules = rules.replace("[[rules]]", "[[auth.rules]]");
        text = format!(
            "[auth]\nhtpasswd = {:?}\n{extra}\n{rules}\n{text}",
            htpasswd.display().to_string()
        );
    }
    std::fs::write(config, text).unwrap();
}

/// `GET path` with an optional `X-Forwarded-For` and Authorization.
pub async fn get(
    base: &str,
    path: &str,
    xff: Option<&str>,
    auth: Option<&str>,
) -> reqwest::Response {
    let mut req = http()
        .get(format!("{base}{path}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json");
    if let Some(x) = xff {
        req = req.header("X-Forwarded-For", x);
    }
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

pub const MANIFEST: &str = "/v2/team/app/manifests/v1";

pub async fn pull(base: &str, xff: Option<&str>, auth: Option<&str>) -> u16 {
    get(base, MANIFEST, xff, auth).await.status().as_u16()
}

/// The error code and Retry-After of a 429, after checking its status.
pub async fn refusal(r: reqwest::Response) -> (String, u64, Value) {
    assert_eq!(r.status(), 429);
    let retry = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After in whole seconds");
    let body: Value = r.json().await.unwrap();
    let code = body["errors"][0]["code"].as_str().unwrap().to_string();
    (code, retry, body["errors"][0].clone())
}

/// The value of the sample `series` (name and labels) in the metrics `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

pub async fn metrics(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
