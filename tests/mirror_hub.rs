//! Docker Hub as the upstream, by name: the mirror is configured with
//! `upstream = "http://registry-1.docker.io"` and reaches it through an HTTP proxy
//! (`HTTP_PROXY`, honoured by kura's HTTP client) that forwards to a local kura, so the Hub
//! rules are exercised without the Internet: single names get `library/`, Docker daemons ask a
//! whole-registry mirror for `library/<name>` without `?ns=`, containerd's `?ns=docker.io`
//! finds a Hub mirror whatever its name; and, as the Hub does, blob downloads redirected to a
//! CDN (followed, resumed, without the Hub credentials).

mod client_support;
mod common;
mod mirror_support;

use client_support::noise;
use client_support::proxy::{Options, Proxy, Seen};
use common::{KillOnDrop, spawn_kura_guarded};
use mirror_support::images::{Image, get_manifest_url, pull_exact};
use mirror_support::*;

const HUB: &str = "http://registry-1.docker.io";

/// A local "Docker Hub" holding `library/alpine:v1` and `someorg/tool:v1`, the HTTP proxy
/// that leads to it, and a mirror configured with `spec` that uses the proxy.
struct Hub {
    mirror: Mirror,
    proxy: Proxy,
    alpine: Image,
    tool: Image,
    _up: (KillOnDrop, tempfile::TempDir),
}

async fn hub(spec: MirrorSpec) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_kura_guarded(dir.path(), &[]);
    let alpine = Image::opaque("alpine", &[noise(30_000, 50)]);
    let tool = Image::opaque("tool", &[noise(30_000, 51)]);
    alpine.push(&base, "library/alpine", "v1", None).await;
    tool.push(&base, "someorg/tool", "v1", None).await;
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(addr, Options::default()).await;
    let via = format!("http://{}", proxy.host);
    let env = [
        ("HTTP_PROXY", via.as_str()),
        ("http_proxy", via.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let spec = MirrorSpec {
        upstream: HUB.into(),
        insecure: true,
        ..spec
    };
    let mirror = Mirror::try_start_env(&[spec], &env).expect("mirror starts");
    Hub {
        mirror,
        proxy,
        alpine,
        tool,
        _up: (child, dir),
    }
}

/// The paths of the answered upstream requests (the proxy sees absolute URLs).
fn paths(p: &Proxy) -> Vec<String> {
    answered(p)
        .iter()
        .map(|s: &Seen| {
            let t = s.target.strip_prefix(HUB).unwrap_or(&s.target);
            format!("{} {}", s.method, t.split('?').next().unwrap())
        })
        .collect()
}

fn named(name: &str, prefix: &str) -> MirrorSpec {
    MirrorSpec {
        name: name.into(),
        prefix: prefix.into(),
        ..MirrorSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_single_names_get_library_and_others_map_one_to_one() {
    let h = hub(named("docker.io", "docker.io/")).await;
    let m = &h.mirror.base;

    pull_exact(m, "docker.io/alpine", "v1", &h.alpine).await;
    let seen = paths(&h.proxy);
    assert!(
        seen.contains(&"GET /v2/library/alpine/manifests/v1".to_string()),
        "docker.io/alpine is the Hub's library/alpine: {seen:?}"
    );
    pull_exact(m, "docker.io/library/alpine", "v1", &h.alpine).await;
    pull_exact(m, "docker.io/someorg/tool", "v1", &h.tool).await;
    let seen = paths(&h.proxy);
    assert!(
        seen.contains(&"GET /v2/someorg/tool/manifests/v1".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|p| !p.contains("/v2/alpine/") && !p.contains("library/someorg")),
        "{seen:?}"
    );
    let before = seen.len();
    pull_exact(m, "docker.io/alpine", "v1", &h.alpine).await;
    assert_eq!(paths(&h.proxy).len(), before, "warm pull");
    assert_fsck_clean(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_daemon_requests_are_served_by_a_whole_registry_hub_mirror() {
    let h = hub(named("hub", "")).await;
    let m = &h.mirror.base;
    // What dockerd with "registry-mirrors" sends for `docker pull alpine:v1`: no prefix, no ns.
    pull_exact(m, "library/alpine", "v1", &h.alpine).await;
    pull_exact(m, "someorg/tool", "v1", &h.tool).await;
    let seen = paths(&h.proxy);
    assert!(
        seen.contains(&"GET /v2/library/alpine/manifests/v1".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"GET /v2/someorg/tool/manifests/v1".to_string()),
        "{seen:?}"
    );
    let listed = catalog(m).await;
    assert!(listed.contains(&"library/alpine".to_string()), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_ns_docker_io_finds_a_hub_mirror_whatever_its_name() {
    let h = hub(named("hub", "hub/")).await;
    let m = &h.mirror.base;
    let url = format!("{m}/v2/library/alpine/manifests/v1?ns=docker.io");
    let (status, digest, _) = get_manifest_url(&url).await;
    assert_eq!((status, digest), (200, h.alpine.digest.to_string()));
    let seen = paths(&h.proxy);
    assert!(
        seen.contains(&"GET /v2/library/alpine/manifests/v1".to_string()),
        "{seen:?}"
    );
    // Stored under the mirror's prefix.
    pull_exact(m, "hub/library/alpine", "v1", &h.alpine).await;
    assert!(catalog(m).await.contains(&"hub/library/alpine".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirects_to_a_cdn_are_followed_and_resumed_without_the_upstream_credentials() {
    // Docker Hub answers blob GETs with a 307 to its CDN: here a token-auth front (`front`)
    // hands blob downloads off to an open one (`cdn`) over the same content.
    let dir = tempfile::tempdir().unwrap();
    let (_up, base) = spawn_kura_guarded(dir.path(), &[]);
    let img = Image::opaque("cdn", &[noise(300_000, 52)]);
    img.push(&base, "library/alpine", "v1", None).await;
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let cut = Options {
        cut_first_blob_get_after: Some(100_000),
        ..Options::default()
    };
    let cdn = Proxy::start(addr, cut).await;
    let auth = client_support::proxy::Auth::Bearer {
        user: "hub-user".into(),
        pass: "hub-token".into(),
    };
    let front = Proxy::start(
        addr,
        Options {
            auth,
            hand_off_to: Some(format!("http://{}", cdn.host)),
            ..Options::default()
        },
    )
    .await;
    let mirror = Mirror::start(&[MirrorSpec {
        username: "hub-user".into(),
        password: "hub-token".into(),
        ..MirrorSpec::docker_io(&format!("http://{}", front.host))
    }]);

    pull_exact(&mirror.base, "docker.io/library/alpine", "v1", &img).await;
    let redirected: Vec<_> = front
        .seen()
        .into_iter()
        .filter(|s| s.status == 307)
        .collect();
    assert!(redirected.len() >= img.blobs.len(), "{redirected:#?}");
    let fetched = answered(&cdn);
    assert!(
        fetched.iter().any(|s| s.status == 206),
        "the cut download was resumed: {fetched:#?}"
    );
    assert!(
        fetched.iter().all(|s| s.authorization.is_none()),
        "credentials went to the CDN: {fetched:#?}"
    );
    assert_fsck_clean(&mirror.base).await;
}
