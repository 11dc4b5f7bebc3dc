//! A mirrored repository is read-only however the write is spelled: the API answers 403
//! `DENIED` to uploads, manifest PUTs and DELETEs (also when containerd's `?ns=` names the
//! repository), and the web UI refuses its delete forms the same way. Nothing cached changes.

mod common;

use common::mirror::pair;
use common::{client, error_code, push_image};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn writes_to_a_mirrored_repository_are_denied_through_the_api_and_the_ui() {
    let p = pair(0).await;
    let (body, md) = push_image(&p.upstream, "library/app", "v1", &[b"layer"]).await;
    let c = client();
    let url = |path: &str| p.mirror.url(path);
    // Cache the tag first, so a delete would have something to remove.
    let r = c
        .get(url("/v2/up/library/app/manifests/v1"))
        .header("Accept", OCI)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let writes = [
        ("POST", "/v2/up/library/app/blobs/uploads/".to_string()),
        ("POST", "/v2/library/app/blobs/uploads/?ns=up".to_string()),
        (
            "POST",
            // containerd names the upstream by host:port; `%73` is `s`.
            format!("/v2/library/app/blobs/uploads/?n%73={}", p.upstream.addr),
        ),
        ("PUT", "/v2/up/library/app/manifests/v2".to_string()),
        ("PUT", "/v2/library/app/manifests/v2?ns=up".to_string()),
        ("DELETE", "/v2/up/library/app/manifests/v1".to_string()),
        ("DELETE", format!("/v2/up/library/app/manifests/{md}")),
        ("DELETE", "/v2/library/app/manifests/v1?ns=up".to_string()),
    ];
    for (method, path) in writes {
        let r = c
            .request(method.parse().unwrap(), url(&path))
            .header("Content-Type", OCI)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        assert_eq!(error_code(r).await, "DENIED", "{method} {path}");
    }
    // The web UI: the confirmation page and the form post are refused (with a valid CSRF
    // token, taken from a confirmation page of a repository outside the mirror).
    let r = c
        .get(url("/ui/delete-tag?name=up/library/app&tag=v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    push_image(&p.mirror, "team/own", "t", &[b"own"]).await;
    let r = c
        .get(url("/ui/delete-tag?name=team/own&tag=t"))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = r.text().await.unwrap();
    let csrf = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#)
        .unwrap()
        .captures(&page)
        .expect("a CSRF token on the confirmation page")[1]
        .to_string();
    let r = c
        .post(url("/ui/delete-tag"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&name=up%2Flibrary%2Fapp&tag=v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("read-only mirror"));
    let tags: serde_json::Value = c
        .get(url("/v2/up/library/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}
