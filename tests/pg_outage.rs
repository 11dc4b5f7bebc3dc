//! PostgreSQL stopped under a running node: requests that need metadata get a prompt 503
//! `UNAVAILABLE` naming the database (not a wait for the pool's 30 s checkout timeout and a
//! 500), `/readyz` fails meanwhile, and once PostgreSQL is back the same requests succeed
//! without restarting kura.

mod common;

use std::time::{Duration, Instant};

use common::cluster;
use common::pg_private::PrivatePg;
use common::s3::data;
use kura::config::StorageConfig;
use kura::digest::Digest;

/// In the URL kura is given; the server trusts loopback and ignores it. No answer shows it.
const PASSWORD: &str = "pw-never-shown-7q";
/// A behavioural bound: far below the pool's 30 s checkout timeout, far above a refused
/// connect and the pool's 100 ms look at whether the database is reachable.
const PROMPT: Duration = Duration::from_secs(10);

/// What a request got, and how long it took.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    message: String,
    retry_after: Option<String>,
    took: Duration,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    fetch(req).await.0
}

/// The answer to `req` and its body.
async fn fetch(req: reqwest::RequestBuilder) -> (Answer, Vec<u8>) {
    let start = Instant::now();
    let r = req
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("an answer");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("Retry-After")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = r.bytes().await.unwrap().to_vec();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let err = &body["errors"][0];
    let a = Answer {
        status,
        code: err["code"].as_str().unwrap_or_default().to_string(),
        message: err["message"].as_str().unwrap_or_default().to_string(),
        retry_after,
        took: start.elapsed(),
    };
    (a, bytes)
}

/// Pushes an image tagged `t<i>` (config, layer, manifest): its manifest and layer, or the
/// answer of the first request that failed.
async fn push(base: &str, i: usize) -> Result<(Vec<u8>, Vec<u8>), Answer> {
    let http = common::client();
    let config = format!("{{\"i\":{i}}}").into_bytes();
    let layer = data(3000 + i, i as u64);
    for b in [&config, &layer] {
        let d = Digest::sha256_of(b);
        let url = format!("{base}/v2/outage/app/blobs/uploads/?digest={d}");
        let a = send(http.post(url).body(b.clone())).await;
        if a.status != 201 {
            return Err(a);
        }
    }
    let manifest = common::image_manifest(
        &(Digest::sha256_of(&config), config.len()),
        &[(Digest::sha256_of(&layer), layer.len())],
        serde_json::json!({}),
    );
    let put = http
        .put(format!("{base}/v2/outage/app/manifests/t{i}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone());
    match send(put).await {
        a if a.status == 201 => Ok((manifest, layer)),
        a => Err(a),
    }
}

/// Pulls `t<i>`: the manifest's answer, then the layer's, each with its bytes.
async fn pull(base: &str, i: usize, layer: &[u8]) -> Vec<(Answer, Vec<u8>)> {
    let http = common::client();
    let d = Digest::sha256_of(layer);
    let mut out = Vec::new();
    for path in [
        format!("/v2/outage/app/manifests/t{i}"),
        format!("/v2/outage/app/blobs/{d}"),
    ] {
        out.push(fetch(http.get(format!("{base}{path}"))).await);
    }
    out
}

fn assert_unavailable(what: &str, a: &Answer) {
    assert_eq!(a.status, 503, "{what}: {a:?}");
    assert_eq!(a.code, "UNAVAILABLE", "{what}: {a:?}");
    assert!(
        a.message.contains("metadata database") && a.message.contains("127.0.0.1"),
        "{what} names the metadata database: {a:?}"
    );
    assert!(!a.message.contains(PASSWORD), "{what} shows the password");
    let secs = a.retry_after.as_deref().and_then(|v| v.parse::<u64>().ok());
    assert!(secs.is_some_and(|s| s >= 1), "{what} Retry-After: {a:?}");
    assert!(a.took < PROMPT, "{what} took {:?}", a.took);
}

async fn readyz(base: &str) -> (u16, String) {
    let r = common::client()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn requests_get_a_prompt_503_while_postgres_is_down_and_succeed_once_it_is_back() {
    let pg = PrivatePg::start();
    // Blobs on the node's own disk: only the database goes away.
    let node = cluster::start_node(&StorageConfig::default(), &pg.url_with_password(PASSWORD));
    let rt = common::rt();
    rt.block_on(async {
        let base = node.base.as_str();
        let (m0, l0) = push(base, 0).await.expect("push before the outage");
        for (a, bytes) in pull(base, 0, &l0).await {
            assert_eq!(a.status, 200, "pull before the outage: {a:?}");
            assert!(bytes == m0 || bytes == l0);
        }

        pg.down();
        // Several rounds: the first meets the pool's dead connections, the later ones a pool
        // that has none and is reconnecting in the background.
        for round in 0..3 {
            let a = push(base, 1).await.expect_err("push while down fails");
            assert_unavailable(&format!("push (round {round})"), &a);
            for (a, _) in pull(base, 0, &l0).await {
                assert_unavailable(&format!("pull (round {round})"), &a);
            }
            let (status, why) = readyz(base).await;
            assert_eq!(status, 503, "/readyz while down: {why}");
            assert!(
                why.contains("metadata"),
                "/readyz names the database: {why}"
            );
            assert!(!why.contains(PASSWORD), "/readyz shows the password");
        }

        pg.up();
        let until = Instant::now() + Duration::from_secs(30);
        while readyz(base).await.0 != 200 {
            assert!(
                Instant::now() < until,
                "not ready 30 s after PostgreSQL restarted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (m1, l1) = push(base, 1).await.expect("push after the outage");
        for (i, m, l) in [(0, &m0, &l0), (1, &m1, &l1)] {
            let got = pull(base, i, l).await;
            for (a, _) in &got {
                assert_eq!(a.status, 200, "pull t{i} after the outage: {a:?}");
            }
            assert!(got[0].1 == *m && got[1].1 == *l, "t{i} served whole");
        }
    });
}
